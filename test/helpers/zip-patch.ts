// Test helper: change one entry's bytes inside a ZIP archive and, when
// asked, fix its CRC in both headers, so a test can show that vdsnap's own
// digests catch what a ZIP CRC would not.
import {crc32} from 'node:zlib'

const SIG_LOCAL = 0x04034b50
const SIG_CENTRAL = 0x02014b50

function find(buf: Buffer, sig: number, fixed: number, nameAt: number, name: string): number {
  const sigBytes = Buffer.alloc(4)
  sigBytes.writeUInt32LE(sig)
  for (let at = buf.indexOf(sigBytes); at >= 0; at = buf.indexOf(sigBytes, at + 1)) {
    const len = buf.readUInt16LE(at + nameAt)
    if (buf.toString('utf8', at + fixed, at + fixed + len) === name) return at
  }
  throw new Error(`entry ${name} not found`)
}

/** Where entry `name`'s data starts and how long it is (stored entries). */
export function entryData(buf: Buffer, name: string): {start: number; length: number} {
  const at = find(buf, SIG_LOCAL, 30, 26, name)
  const start = at + 30 + buf.readUInt16LE(at + 26) + buf.readUInt16LE(at + 28)
  return {start, length: buf.readUInt32LE(at + 22)}
}

/** Applies `mutate` to entry `name`'s data in place; `fixCrc` rewrites both CRCs to match. */
export function patchEntry(buf: Buffer, name: string, mutate: (data: Buffer) => void, fixCrc: boolean): void {
  const {start, length} = entryData(buf, name)
  const data = buf.subarray(start, start + length)
  mutate(data)
  if (!fixCrc) return
  const crc = crc32(data)
  buf.writeUInt32LE(crc, find(buf, SIG_LOCAL, 30, 26, name) + 14)
  buf.writeUInt32LE(crc, find(buf, SIG_CENTRAL, 46, 28, name) + 16)
}

/** Names of the entries, in archive order (from the local headers). */
export function entryNames(buf: Buffer): string[] {
  const names: string[] = []
  let at = 0
  while (at + 30 <= buf.length && buf.readUInt32LE(at) === SIG_LOCAL) {
    const nameLen = buf.readUInt16LE(at + 26)
    names.push(buf.toString('utf8', at + 30, at + 30 + nameLen))
    at += 30 + nameLen + buf.readUInt16LE(at + 28) + buf.readUInt32LE(at + 18)
  }
  return names
}
