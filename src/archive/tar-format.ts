// POSIX pax tar structures (IEEE 1003.1-2001 "pax" interchange format, the
// ustar header plus 'x' extended headers) and the GNU sparse 1.0 map, as
// GNU tar reads them with -S. One 512-byte header codec, the pax record
// codec and the sparse map codec; every decoder checks lengths and refuses
// what it does not understand rather than guess.
//
// ustar header (offsets): name 0/100, mode 100/8, uid 108/8, gid 116/8,
// size 124/12, mtime 136/12, checksum 148/8, type 156/1, linkname 157/100,
// magic 257/6 "ustar\0", version 263/2 "00", uname 265/32, gname 297/32,
// devmajor 329/8, devminor 337/8, prefix 345/155. Numbers are octal ASCII.
import {DataError} from '../errors.js'

export const BLOCK = 512 // never change
const MAGIC = 'ustar\0'
export const TYPE_FILE = '0'
export const TYPE_PAX = 'x'
const MAX_OCTAL_SIZE = 8 ** 11 - 1

export interface TarHeader {
  name: string
  size: number
  mtime: number
  type: string
}

function octal(buf: Buffer, off: number, len: number, v: number): void {
  buf.write(v.toString(8).padStart(len - 1, '0') + '\0', off, len, 'ascii')
}

export function encodeHeader(h: TarHeader): Buffer {
  const b = Buffer.alloc(BLOCK)
  const name = Buffer.from(h.name, 'utf8')
  if (name.length > 100) throw new RangeError(`tar name ${h.name} longer than 100 bytes (use a pax path record)`)
  name.copy(b, 0)
  octal(b, 100, 8, 0o644)
  octal(b, 108, 8, 0)
  octal(b, 116, 8, 0)
  octal(b, 124, 12, Math.min(h.size, MAX_OCTAL_SIZE))
  octal(b, 136, 12, h.mtime)
  b.write(h.type, 156, 1, 'ascii')
  b.write(MAGIC, 257, 6, 'ascii')
  b.write('00', 263, 2, 'ascii')
  b.write('root', 265, 32, 'ascii')
  b.write('root', 297, 32, 'ascii')
  b.fill(0x20, 148, 156)
  let sum = 0
  for (const x of b) sum += x
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii')
  return b
}

/** Decodes a header block; null for an all-zero block (the end of the archive). */
export function decodeHeader(b: Buffer, where: string): TarHeader | null {
  if (b.length !== BLOCK) throw new DataError(`${where}: a tar header is cut short`, {code: 'ARCHIVE_CORRUPT'})
  if (b.every((x) => x === 0)) return null
  if (b.toString('ascii', 257, 263) !== MAGIC) throw new DataError(`${where}: not a POSIX tar header (no ustar magic); not a vdsnap archive, or corrupt`, {code: 'ARCHIVE_CORRUPT'})
  let sum = 0
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : b[i]!
  if (parseOctal(b, 148, 8, where) !== sum) throw new DataError(`${where}: a tar header fails its checksum (corrupt)`, {code: 'ARCHIVE_CORRUPT'})
  const nameEnd = b.indexOf(0, 0)
  const prefixEnd = b.indexOf(0, 345)
  const name = b.toString('utf8', 0, nameEnd < 0 || nameEnd > 100 ? 100 : nameEnd)
  const prefix = b.toString('utf8', 345, prefixEnd < 0 || prefixEnd > 500 ? 500 : prefixEnd)
  return {name: prefix ? `${prefix}/${name}` : name, size: parseOctal(b, 124, 12, where), mtime: parseOctal(b, 136, 12, where), type: String.fromCharCode(b[156]!)}
}

function parseOctal(b: Buffer, off: number, len: number, where: string): number {
  const text = b.toString('ascii', off, off + len).replace(/[\0 ]+$/, '').trim()
  if (!/^[0-7]*$/.test(text)) throw new DataError(`${where}: a tar header has a malformed number (corrupt)`, {code: 'ARCHIVE_CORRUPT'})
  return text ? parseInt(text, 8) : 0
}

/** pax records "LEN key=value\n", LEN counting the whole record. */
export function encodePax(records: [string, string][]): Buffer {
  const out: Buffer[] = []
  for (const [k, v] of records) {
    const body = ` ${k}=${v}\n`
    let len = Buffer.byteLength(body) + 1
    while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body)
    out.push(Buffer.from(`${len}${body}`))
  }
  return Buffer.concat(out)
}

export function decodePax(buf: Buffer, where: string): Map<string, string> {
  const out = new Map<string, string>()
  let p = 0
  while (p < buf.length) {
    const sp = buf.indexOf(0x20, p)
    const len = sp > p ? Number(buf.toString('ascii', p, sp)) : NaN
    if (!Number.isSafeInteger(len) || len <= 0 || p + len > buf.length || buf[p + len - 1] !== 0x0a) throw new DataError(`${where}: a pax header record is malformed (corrupt)`, {code: 'ARCHIVE_CORRUPT'})
    const rec = buf.toString('utf8', sp + 1, p + len - 1)
    const eq = rec.indexOf('=')
    if (eq <= 0) throw new DataError(`${where}: a pax header record has no key (corrupt)`, {code: 'ARCHIVE_CORRUPT'})
    out.set(rec.slice(0, eq), rec.slice(eq + 1))
    p += len
  }
  return out
}

export interface Segment {
  offset: number
  length: number
}

/** The GNU sparse 1.0 map: count, then offset/length pairs, each a decimal line; NUL-padded to whole blocks. */
export function encodeSparseMap(segments: Segment[]): Buffer {
  const text = [String(segments.length), ...segments.flatMap((s) => [String(s.offset), String(s.length)])].join('\n') + '\n'
  const raw = Buffer.from(text, 'ascii')
  const out = Buffer.alloc(Math.ceil(raw.length / BLOCK) * BLOCK)
  raw.copy(out)
  return out
}

/** Parses a sparse map from the start of `buf`; null when more blocks are needed. */
export function decodeSparseMap(buf: Buffer, realSize: number, where: string): {segments: Segment[]; mapBytes: number} | null {
  const nums: number[] = []
  let p = 0
  let want = 1
  while (nums.length < want) {
    const nl = buf.indexOf(0x0a, p)
    if (nl < 0) {
      if (buf.length - p > 40) throw new DataError(`${where}: the sparse map is malformed (corrupt)`, {code: 'ARCHIVE_CORRUPT'})
      return null
    }
    const text = buf.toString('ascii', p, nl)
    if (!/^\d{1,16}$/.test(text)) throw new DataError(`${where}: the sparse map is malformed (corrupt)`, {code: 'ARCHIVE_CORRUPT'})
    nums.push(Number(text))
    if (nums.length === 1) {
      if (nums[0]! > 1e7) throw new DataError(`${where}: the sparse map claims ${nums[0]} segments (corrupt)`, {code: 'ARCHIVE_CORRUPT'})
      want = 1 + 2 * nums[0]!
    }
    p = nl + 1
  }
  const segments: Segment[] = []
  let end = 0
  for (let i = 1; i < nums.length; i += 2) {
    const s = {offset: nums[i]!, length: nums[i + 1]!}
    if (s.offset < end || s.offset + s.length > realSize) throw new DataError(`${where}: the sparse map has overlapping or out-of-range segments (corrupt)`, {code: 'ARCHIVE_CORRUPT'})
    end = s.offset + s.length
    segments.push(s)
  }
  return {segments, mapBytes: Math.ceil(p / BLOCK) * BLOCK}
}
