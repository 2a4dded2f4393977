// ZIP structures (PKWARE APPNOTE 6.3.x, sections 4.3 and 4.5), encoded and
// decoded byte by byte. One codec per structure; every decoder checks the
// length before reading and refuses what this writer never produces in a
// way that could mislead (encrypted entries, other disks).
//
// ZIP64: a 32-bit field that cannot hold its value is set to 0xFFFFFFFF and
// the value moves to the ZIP64 extra field (id 0x0001). In a local header
// that extra field holds both sizes (uncompressed, then compressed); in a
// central header it holds only the fields that overflowed, in the order
// uncompressed size, compressed size, local header offset.
import {DataError} from '../errors.js'

// never change: these are the format's own constants
export const SIG_LOCAL = 0x04034b50
export const SIG_CENTRAL = 0x02014b50
export const SIG_DESCRIPTOR = 0x08074b50
export const SIG_EOCD = 0x06054b50
export const SIG_ZIP64_EOCD = 0x06064b50
export const SIG_ZIP64_LOCATOR = 0x07064b50
export const LOCAL_HEADER_SIZE = 30
export const CENTRAL_HEADER_SIZE = 46
export const EOCD_SIZE = 22
export const ZIP64_EOCD_SIZE = 56
export const ZIP64_LOCATOR_SIZE = 20
export const ZIP64_EXTRA_ID = 0x0001
export const FLAG_DESCRIPTOR = 1 << 3
export const FLAG_UTF8 = 1 << 11
export const METHOD_STORED = 0
export const METHOD_DEFLATE = 8
export const U32_MAX = 0xffffffff
const VERSION_ZIP64 = 45
const VERSION_DEFAULT = 20
/** Made by: Unix (3), spec version 4.5, so external attributes carry the mode. */
const MADE_BY = (3 << 8) | VERSION_ZIP64

export interface EntryFacts {
  name: string
  method: number
  flags: number
  crc: number
  compressedSize: number
  size: number
  /** MS-DOS date and time (date << 16 | time). */
  dosTime: number
}

export interface CentralFacts extends EntryFacts {
  localOffset: number
}

export function dosDateTime(d: Date): number {
  const year = Math.max(1980, d.getUTCFullYear())
  const date = ((year - 1980) << 9) | ((d.getUTCMonth() + 1) << 5) | d.getUTCDate()
  const time = (d.getUTCHours() << 11) | (d.getUTCMinutes() << 5) | Math.floor(d.getUTCSeconds() / 2)
  return ((date << 16) | time) >>> 0
}

function writeU64(buf: Buffer, v: number, off: number): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`ZIP field value ${v} out of range`)
  buf.writeBigUInt64LE(BigInt(v), off)
}

/** Reads a 64-bit field; values past 2^53 are refused rather than rounded. */
export function readU64(buf: Buffer, off: number, what: string): number {
  const v = buf.readBigUInt64LE(off)
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new DataError(`ZIP ${what} ${v} is too large`, {code: 'ARCHIVE_CORRUPT'})
  return Number(v)
}

/**
 * A local file header. `zip64` puts both sizes in a ZIP64 extra field (needed
 * when either passes 4 GiB, and for a data-descriptor entry that may: its
 * descriptor is then 64-bit).
 */
export function encodeLocalHeader(e: EntryFacts, zip64: boolean): Buffer {
  const name = Buffer.from(e.name, 'utf8')
  const extra = zip64 ? Buffer.alloc(20) : Buffer.alloc(0)
  if (zip64) {
    extra.writeUInt16LE(ZIP64_EXTRA_ID, 0)
    extra.writeUInt16LE(16, 2)
    writeU64(extra, e.size, 4)
    writeU64(extra, e.compressedSize, 12)
  }
  const h = Buffer.alloc(LOCAL_HEADER_SIZE)
  h.writeUInt32LE(SIG_LOCAL, 0)
  h.writeUInt16LE(zip64 ? VERSION_ZIP64 : VERSION_DEFAULT, 4)
  h.writeUInt16LE(e.flags | FLAG_UTF8, 6)
  h.writeUInt16LE(e.method, 8)
  h.writeUInt32LE(e.dosTime, 10)
  h.writeUInt32LE(e.crc >>> 0, 14)
  h.writeUInt32LE(zip64 ? U32_MAX : e.compressedSize, 18)
  h.writeUInt32LE(zip64 ? U32_MAX : e.size, 22)
  h.writeUInt16LE(name.length, 26)
  h.writeUInt16LE(extra.length, 28)
  return Buffer.concat([h, name, extra])
}

export function encodeDescriptor(crc: number, compressedSize: number, size: number, zip64: boolean): Buffer {
  const b = Buffer.alloc(zip64 ? 24 : 16)
  b.writeUInt32LE(SIG_DESCRIPTOR, 0)
  b.writeUInt32LE(crc >>> 0, 4)
  if (zip64) {
    writeU64(b, compressedSize, 8)
    writeU64(b, size, 16)
  } else {
    b.writeUInt32LE(compressedSize, 8)
    b.writeUInt32LE(size, 12)
  }
  return b
}

/** A central directory header; `forceZip64` keeps it in step with a local header that had the extra field. */
export function encodeCentralHeader(e: CentralFacts, forceZip64: boolean): Buffer {
  const name = Buffer.from(e.name, 'utf8')
  const bigSize = forceZip64 || e.size >= U32_MAX
  const bigCompressed = forceZip64 || e.compressedSize >= U32_MAX
  const bigOffset = e.localOffset >= U32_MAX
  const fields = [bigSize ? e.size : null, bigCompressed ? e.compressedSize : null, bigOffset ? e.localOffset : null].filter((v): v is number => v !== null)
  const extra = fields.length > 0 ? Buffer.alloc(4 + 8 * fields.length) : Buffer.alloc(0)
  if (fields.length > 0) {
    extra.writeUInt16LE(ZIP64_EXTRA_ID, 0)
    extra.writeUInt16LE(8 * fields.length, 2)
    fields.forEach((v, i) => writeU64(extra, v, 4 + 8 * i))
  }
  const version = fields.length > 0 ? VERSION_ZIP64 : VERSION_DEFAULT
  const h = Buffer.alloc(CENTRAL_HEADER_SIZE)
  h.writeUInt32LE(SIG_CENTRAL, 0)
  h.writeUInt16LE(MADE_BY, 4)
  h.writeUInt16LE(version, 6)
  h.writeUInt16LE(e.flags | FLAG_UTF8, 8)
  h.writeUInt16LE(e.method, 10)
  h.writeUInt32LE(e.dosTime, 12)
  h.writeUInt32LE(e.crc >>> 0, 16)
  h.writeUInt32LE(bigCompressed ? U32_MAX : e.compressedSize, 20)
  h.writeUInt32LE(bigSize ? U32_MAX : e.size, 24)
  h.writeUInt16LE(name.length, 28)
  h.writeUInt16LE(extra.length, 30)
  h.writeUInt16LE(0, 32) // comment length
  h.writeUInt16LE(0, 34) // disk number start
  h.writeUInt16LE(0, 36) // internal attributes
  h.writeUInt32LE((0o100644 << 16) >>> 0, 38) // regular file, rw-r--r--
  h.writeUInt32LE(bigOffset ? U32_MAX : e.localOffset, 42)
  return Buffer.concat([h, name, extra])
}

/**
 * The end of the archive: a ZIP64 end record and locator when any count or
 * offset overflows its classic field, then the classic end record (with
 * 0xFFFF / 0xFFFFFFFF in the fields that moved).
 */
export function encodeEnd(entries: number, cdOffset: number, cdSize: number, comment = ''): Buffer {
  const text = Buffer.from(comment, 'utf8')
  const zip64 = entries >= 0xffff || cdOffset >= U32_MAX || cdSize >= U32_MAX
  const parts: Buffer[] = []
  if (zip64) {
    const r = Buffer.alloc(ZIP64_EOCD_SIZE)
    r.writeUInt32LE(SIG_ZIP64_EOCD, 0)
    writeU64(r, ZIP64_EOCD_SIZE - 12, 4)
    r.writeUInt16LE(MADE_BY, 12)
    r.writeUInt16LE(VERSION_ZIP64, 14)
    r.writeUInt32LE(0, 16)
    r.writeUInt32LE(0, 20)
    writeU64(r, entries, 24)
    writeU64(r, entries, 32)
    writeU64(r, cdSize, 40)
    writeU64(r, cdOffset, 48)
    const l = Buffer.alloc(ZIP64_LOCATOR_SIZE)
    l.writeUInt32LE(SIG_ZIP64_LOCATOR, 0)
    l.writeUInt32LE(0, 4)
    writeU64(l, cdOffset + cdSize, 8)
    l.writeUInt32LE(1, 16)
    parts.push(r, l)
  }
  const e = Buffer.alloc(EOCD_SIZE)
  e.writeUInt32LE(SIG_EOCD, 0)
  e.writeUInt16LE(0, 4)
  e.writeUInt16LE(0, 6)
  e.writeUInt16LE(Math.min(entries, 0xffff), 8)
  e.writeUInt16LE(Math.min(entries, 0xffff), 10)
  e.writeUInt32LE(Math.min(cdSize, U32_MAX), 12)
  e.writeUInt32LE(Math.min(cdOffset, U32_MAX), 16)
  e.writeUInt16LE(text.length, 20)
  parts.push(e, text)
  return Buffer.concat(parts)
}

export interface LocalHeader extends EntryFacts {
  /** Bytes of the header, name and extra field. */
  headerLength: number
  zip64: boolean
}

/**
 * Decodes a local header from `buf` (which must hold at least the fixed
 * part; returns null when the name and extra field are not all there yet).
 */
export function decodeLocalHeader(buf: Buffer, where: string): LocalHeader | null {
  if (buf.length < LOCAL_HEADER_SIZE) return null
  if (buf.readUInt32LE(0) !== SIG_LOCAL) throw new DataError(`${where}: not a ZIP local file header (signature ${buf.readUInt32LE(0).toString(16)})`, {code: 'ARCHIVE_CORRUPT'})
  const flags = buf.readUInt16LE(6)
  if (flags & 1) throw new DataError(`${where}: the entry is ZIP-encrypted, which vdsnap never writes`, {code: 'ARCHIVE_CORRUPT'})
  const nameLen = buf.readUInt16LE(26)
  const extraLen = buf.readUInt16LE(28)
  const headerLength = LOCAL_HEADER_SIZE + nameLen + extraLen
  if (buf.length < headerLength) return null
  const name = buf.subarray(LOCAL_HEADER_SIZE, LOCAL_HEADER_SIZE + nameLen).toString('utf8')
  let compressedSize = buf.readUInt32LE(18)
  let size = buf.readUInt32LE(22)
  let zip64 = false
  const extra = buf.subarray(LOCAL_HEADER_SIZE + nameLen, headerLength)
  for (let p = 0; p + 4 <= extra.length; ) {
    const id = extra.readUInt16LE(p)
    const len = extra.readUInt16LE(p + 2)
    if (p + 4 + len > extra.length) throw new DataError(`${where}: entry ${name} has a truncated extra field`, {code: 'ARCHIVE_CORRUPT'})
    if (id === ZIP64_EXTRA_ID) {
      if (len < 16) throw new DataError(`${where}: entry ${name} has a short ZIP64 extra field`, {code: 'ARCHIVE_CORRUPT'})
      zip64 = true
      size = readU64(extra, p + 4, 'entry size')
      compressedSize = readU64(extra, p + 12, 'entry size')
    }
    p += 4 + len
  }
  return {name, flags, method: buf.readUInt16LE(8), dosTime: buf.readUInt32LE(10), crc: buf.readUInt32LE(14), compressedSize, size, headerLength, zip64}
}
