// Test-only builders for VHDX states qemu cannot produce: a dirty log.
// Built from MS-VHDX: a log entry is a 64-byte header + 32-byte descriptors
// padded to 4 KiB, then one 4 KiB data sector per data descriptor; the
// entry's CRC-32C covers the whole entry with its checksum field zero.
// Headers are rewritten (both copies, new sequence numbers, new CRC) to name
// the log's GUID, which makes readers replay it.
import {randomUUID} from 'node:crypto'
import {crc32c} from '../../src/disk/crc32c.js'
import {encodeHeader, parseHeader, writeGuid, type VhdxHeader} from '../../src/disk/vhdx-structures.js'

export type LogWrite = {fileOffset: number; data: Buffer} | {fileOffset: number; zeroLength: number}

export function activeHeader(file: Buffer): VhdxHeader | undefined {
  const hs = [65536, 131072].flatMap((o) => {
    try {
      return parseHeader(file.subarray(o, o + 4096), 'test') ?? []
    } catch {
      return []
    }
  })
  return hs.length ? hs.reduce((a, b) => (b.sequence > a.sequence ? b : a)) : undefined
}

/** Rewrites both headers with `change` applied, bumping sequence numbers (no-op when both are invalid). */
export function rewriteHeaders(file: Buffer, change: (h: VhdxHeader) => VhdxHeader): void {
  const active = activeHeader(file)
  if (!active) return
  const h = change(active)
  encodeHeader({...h, sequence: h.sequence + 1}).copy(file, 65536)
  encodeHeader({...h, sequence: h.sequence + 2}).copy(file, 131072)
}

/** Encodes one log entry of `writes` (data writes are 4 KiB, aligned). */
export function logEntry(opts: {logGuid: string; sequence: number; tail: number; fileSize: number; writes: LogWrite[]}): Buffer {
  const descSectors = Math.ceil((64 + 32 * opts.writes.length) / 4096)
  const dataWrites = opts.writes.filter((w) => 'data' in w)
  const entry = Buffer.alloc((descSectors + dataWrites.length) * 4096)
  entry.write('loge', 0, 'latin1')
  entry.writeUInt32LE(entry.length, 8)
  entry.writeUInt32LE(opts.tail, 12)
  entry.writeBigUInt64LE(BigInt(opts.sequence), 16)
  entry.writeUInt32LE(opts.writes.length, 24)
  writeGuid(entry, 32, opts.logGuid)
  entry.writeBigUInt64LE(BigInt(opts.fileSize), 48)
  entry.writeBigUInt64LE(BigInt(opts.fileSize), 56)
  let sector = descSectors
  opts.writes.forEach((w, i) => {
    const d = 64 + i * 32
    entry.writeBigUInt64LE(BigInt(w.fileOffset), d + 16)
    entry.writeBigUInt64LE(BigInt(opts.sequence), d + 24)
    if ('zeroLength' in w) {
      entry.write('zero', d, 'latin1')
      entry.writeBigUInt64LE(BigInt(w.zeroLength), d + 8)
      return
    }
    entry.write('desc', d, 'latin1')
    w.data.copy(entry, d + 4, 4092, 4096) // trailing bytes
    w.data.copy(entry, d + 8, 0, 8) // leading bytes
    const s = sector++ * 4096
    entry.write('data', s, 'latin1')
    entry.writeUInt32LE(Math.floor(opts.sequence / 2 ** 32), s + 4)
    w.data.copy(entry, s + 8, 8, 4092)
    entry.writeUInt32LE(opts.sequence % 2 ** 32, s + 4092)
  })
  entry.writeUInt32LE(crc32c(entry), 4)
  return entry
}

/** Writes `entries` (each a list of writes) into the log as one sequence and marks the log dirty. */
export function dirtyLog(file: Buffer, entries: LogWrite[][], firstSequence = 1000): string {
  const logGuid = randomUUID()
  const h = activeHeader(file)!
  let pos = 0
  entries.forEach((writes, i) => {
    const e = logEntry({logGuid, sequence: firstSequence + i, tail: 0, fileSize: file.length, writes})
    e.copy(file, h.logOffset + pos)
    pos += e.length
  })
  rewriteHeaders(file, (x) => ({...x, logGuid}))
  return logGuid
}

/** Applies writes to a copy of the file the way a replay would. */
export function applyWrites(file: Buffer, entries: LogWrite[][]): Buffer {
  const out = Buffer.from(file)
  for (const w of entries.flat()) {
    if ('data' in w) w.data.copy(out, w.fileOffset)
    else out.fill(0, w.fileOffset, w.fileOffset + w.zeroLength)
  }
  return out
}
