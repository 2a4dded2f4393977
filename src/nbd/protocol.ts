// The Network Block Device protocol, fixed newstyle: constants and codecs
// shared by the client (backup source) and the server (instant recovery).
// Layout from NetworkBlockDevice/nbd doc/proto.md and qemu docs/interop/nbd.txt.
//
// Every number on the wire is big-endian. Every decoder checks the length it
// is given before it reads, and throws NbdProtocolError (never a RangeError)
// so a peer's garbage ends one connection with one line, not the process.
// The magic numbers and codes below are fixed by the protocol: never change.

export const NBD_MAGIC = 0x4e42444d41474943n // "NBDMAGIC"
export const IHAVEOPT = 0x49484156454f5054n // "IHAVEOPT"
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n
export const REQUEST_MAGIC = 0x25609513
export const SIMPLE_REPLY_MAGIC = 0x67446698
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef

/** Handshake flags (server → client) and client flags (client → server). */
export const FLAG_FIXED_NEWSTYLE = 1 << 0
export const FLAG_NO_ZEROES = 1 << 1
export const FLAG_C_FIXED_NEWSTYLE = 1 << 0
export const FLAG_C_NO_ZEROES = 1 << 1

export const Opt = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
  EXTENDED_HEADERS: 11,
} as const

const ERR = 0x80000000
export const Rep = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: ERR + 1,
  ERR_POLICY: ERR + 2,
  ERR_INVALID: ERR + 3,
  ERR_PLATFORM: ERR + 4,
  ERR_TLS_REQD: ERR + 5,
  ERR_UNKNOWN: ERR + 6,
  ERR_SHUTDOWN: ERR + 7,
  ERR_BLOCK_SIZE_REQD: ERR + 8,
  ERR_TOO_BIG: ERR + 9,
} as const

export function isErrorReply(type: number): boolean {
  return type >= ERR
}

export const Info = {EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3} as const

/** Transmission flags (NBD_INFO_EXPORT / NBD_OPT_EXPORT_NAME reply). */
export const TFlag = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_RESIZE: 1 << 9,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
} as const

export const Cmd = {READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, CACHE: 5, WRITE_ZEROES: 6, BLOCK_STATUS: 7} as const

export const CmdFlag = {FUA: 1 << 0, NO_HOLE: 1 << 1, DF: 1 << 2, REQ_ONE: 1 << 3, FAST_ZERO: 1 << 4} as const

export const Reply = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: (1 << 15) + 1,
  ERROR_OFFSET: (1 << 15) + 2,
} as const
export const REPLY_FLAG_DONE = 1

/** errno values the protocol carries (Linux numbering, as proto.md fixes it). */
export const Errno = {EPERM: 1, EIO: 5, ENOMEM: 12, EINVAL: 22, ENOSPC: 28, EOVERFLOW: 75, ENOTSUP: 95, ESHUTDOWN: 108} as const

/** base:allocation descriptor flags; qemu:dirty-bitmap:NAME uses bit 0 for dirty. */
export const STATE_HOLE = 1 << 0
export const STATE_ZERO = 1 << 1
export const STATE_DIRTY = 1 << 0
export const BASE_ALLOCATION = 'base:allocation'
export const DIRTY_BITMAP_PREFIX = 'qemu:dirty-bitmap:'

/** Sizes of the fixed headers. */
export const OPTION_HEADER_SIZE = 16 // IHAVEOPT, option, length
export const OPTION_REPLY_HEADER_SIZE = 20 // magic, option, type, length
export const REQUEST_SIZE = 28
export const SIMPLE_REPLY_SIZE = 16
export const STRUCTURED_REPLY_HEADER_SIZE = 20

/** Limits a peer must stay within; larger lengths are refused before any buffer is made. */
export const MAX_OPTION_DATA = 64 * 1024
export const MAX_STRING = 4096
export const MAX_META_QUERIES = 128

export class NbdProtocolError extends Error {
  readonly code = 'NBD_PROTOCOL'
  constructor(message: string) {
    super(message)
    this.name = 'NbdProtocolError'
  }
}

/**
 * The connection ended or failed (peer closed, reset, socket error): an I/O
 * failure, not garbage on the wire. A subclass, so code that only cares
 * that the connection is unusable can still catch NbdProtocolError.
 */
export class NbdConnectionError extends NbdProtocolError {
  constructor(message: string) {
    super(message)
    this.name = 'NbdConnectionError'
  }
}

function need(buf: Buffer, at: number, n: number, what: string): void {
  if (at + n > buf.length) throw new NbdProtocolError(`${what}: ${buf.length - at} bytes where ${n} are needed`)
}

/** A 64-bit field as a number; refuses values past 2^53 (no disk is that large). */
export function readU64(buf: Buffer, at: number, what: string): number {
  need(buf, at, 8, what)
  const v = buf.readBigUInt64BE(at)
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new NbdProtocolError(`${what} is too large (${v})`)
  return Number(v)
}

export interface OptionRequest {
  option: number
  data: Buffer
}

export function encodeOption(option: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(OPTION_HEADER_SIZE)
  h.writeBigUInt64BE(IHAVEOPT, 0)
  h.writeUInt32BE(option, 8)
  h.writeUInt32BE(data.length, 12)
  return Buffer.concat([h, data])
}

/** Decodes an option header; the caller then reads `length` bytes of data. */
export function decodeOptionHeader(h: Buffer): {option: number; length: number} {
  need(h, 0, OPTION_HEADER_SIZE, 'option header')
  if (h.readBigUInt64BE(0) !== IHAVEOPT) throw new NbdProtocolError('option without the IHAVEOPT magic')
  return {option: h.readUInt32BE(8), length: h.readUInt32BE(12)}
}

export interface OptionReply {
  option: number
  type: number
  data: Buffer
}

export function encodeOptionReply(option: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(OPTION_REPLY_HEADER_SIZE)
  h.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0)
  h.writeUInt32BE(option, 8)
  h.writeUInt32BE(type >>> 0, 12)
  h.writeUInt32BE(data.length, 16)
  return Buffer.concat([h, data])
}

export function decodeOptionReplyHeader(h: Buffer): {option: number; type: number; length: number} {
  need(h, 0, OPTION_REPLY_HEADER_SIZE, 'option reply header')
  if (h.readBigUInt64BE(0) !== OPTION_REPLY_MAGIC) throw new NbdProtocolError('option reply without its magic')
  return {option: h.readUInt32BE(8), type: h.readUInt32BE(12), length: h.readUInt32BE(16)}
}

/** A length-prefixed (u32) string, as export names and meta contexts are sent. */
export function encodeString(s: string): Buffer {
  const b = Buffer.from(s, 'utf8')
  const out = Buffer.alloc(4 + b.length)
  out.writeUInt32BE(b.length, 0)
  b.copy(out, 4)
  return out
}

export function decodeString(buf: Buffer, at: number, what: string): {value: string; next: number} {
  need(buf, at, 4, what)
  const len = buf.readUInt32BE(at)
  if (len > MAX_STRING) throw new NbdProtocolError(`${what} is ${len} bytes long (at most ${MAX_STRING})`)
  need(buf, at + 4, len, what)
  return {value: buf.toString('utf8', at + 4, at + 4 + len), next: at + 4 + len}
}

/** NBD_OPT_INFO / NBD_OPT_GO data: export name and the information requested. */
export function encodeInfoRequest(name: string, infos: number[]): Buffer {
  const tail = Buffer.alloc(2 + 2 * infos.length)
  tail.writeUInt16BE(infos.length, 0)
  infos.forEach((t, i) => tail.writeUInt16BE(t, 2 + 2 * i))
  return Buffer.concat([encodeString(name), tail])
}

export function decodeInfoRequest(data: Buffer): {name: string; infos: number[]} {
  const {value: name, next} = decodeString(data, 0, 'export name')
  need(data, next, 2, 'info request count')
  const n = data.readUInt16BE(next)
  need(data, next + 2, 2 * n, 'info requests')
  if (next + 2 + 2 * n !== data.length) throw new NbdProtocolError('info request has trailing bytes')
  const infos: number[] = []
  for (let i = 0; i < n; i++) infos.push(data.readUInt16BE(next + 2 + 2 * i))
  return {name, infos}
}

/** NBD_OPT_SET_META_CONTEXT / LIST_META_CONTEXT data. */
export function encodeMetaContextRequest(name: string, queries: string[]): Buffer {
  const count = Buffer.alloc(4)
  count.writeUInt32BE(queries.length, 0)
  return Buffer.concat([encodeString(name), count, ...queries.map(encodeString)])
}

export function decodeMetaContextRequest(data: Buffer): {name: string; queries: string[]} {
  const {value: name, next} = decodeString(data, 0, 'export name')
  need(data, next, 4, 'meta context count')
  const n = data.readUInt32BE(next)
  if (n > MAX_META_QUERIES) throw new NbdProtocolError(`${n} meta context queries (at most ${MAX_META_QUERIES})`)
  const queries: string[] = []
  let at = next + 4
  for (let i = 0; i < n; i++) {
    const s = decodeString(data, at, 'meta context query')
    queries.push(s.value)
    at = s.next
  }
  if (at !== data.length) throw new NbdProtocolError('meta context request has trailing bytes')
  return {name, queries}
}

export interface ExportInfo {
  size: number
  flags: number
}

/** NBD_REP_INFO payloads. */
export function encodeInfoExport(info: ExportInfo): Buffer {
  const b = Buffer.alloc(12)
  b.writeUInt16BE(Info.EXPORT, 0)
  b.writeBigUInt64BE(BigInt(info.size), 2)
  b.writeUInt16BE(info.flags, 10)
  return b
}

export function encodeInfoBlockSize(min: number, preferred: number, max: number): Buffer {
  const b = Buffer.alloc(14)
  b.writeUInt16BE(Info.BLOCK_SIZE, 0)
  b.writeUInt32BE(min, 2)
  b.writeUInt32BE(preferred, 6)
  b.writeUInt32BE(max, 10)
  return b
}

export type InfoReply =
  | {type: typeof Info.EXPORT; size: number; flags: number}
  | {type: typeof Info.BLOCK_SIZE; min: number; preferred: number; max: number}
  | {type: number}

export function decodeInfoReply(data: Buffer): InfoReply {
  need(data, 0, 2, 'info reply')
  const type = data.readUInt16BE(0)
  if (type === Info.EXPORT) {
    need(data, 2, 10, 'export info')
    return {type, size: readU64(data, 2, 'export size'), flags: data.readUInt16BE(10)}
  }
  if (type === Info.BLOCK_SIZE) {
    need(data, 2, 12, 'block size info')
    return {type, min: data.readUInt32BE(2), preferred: data.readUInt32BE(6), max: data.readUInt32BE(10)}
  }
  return {type}
}

export function encodeMetaContextReply(id: number, name: string): Buffer {
  const b = Buffer.from(name, 'utf8')
  const out = Buffer.alloc(4 + b.length)
  out.writeUInt32BE(id, 0)
  b.copy(out, 4)
  return out
}

export function decodeMetaContextReply(data: Buffer): {id: number; name: string} {
  need(data, 0, 4, 'meta context reply')
  return {id: data.readUInt32BE(0), name: data.toString('utf8', 4)}
}

export interface Request {
  flags: number
  type: number
  cookie: bigint
  offset: number
  length: number
}

export function encodeRequest(r: Request): Buffer {
  const b = Buffer.alloc(REQUEST_SIZE)
  b.writeUInt32BE(REQUEST_MAGIC, 0)
  b.writeUInt16BE(r.flags, 4)
  b.writeUInt16BE(r.type, 6)
  b.writeBigUInt64BE(r.cookie, 8)
  b.writeBigUInt64BE(BigInt(r.offset), 16)
  b.writeUInt32BE(r.length, 24)
  return b
}

export function decodeRequest(b: Buffer): Request {
  need(b, 0, REQUEST_SIZE, 'request')
  if (b.readUInt32BE(0) !== REQUEST_MAGIC) throw new NbdProtocolError('request without its magic')
  return {
    flags: b.readUInt16BE(4),
    type: b.readUInt16BE(6),
    cookie: b.readBigUInt64BE(8),
    offset: readU64(b, 16, 'request offset'),
    length: b.readUInt32BE(24),
  }
}

export function encodeSimpleReply(cookie: bigint, error: number): Buffer {
  const b = Buffer.alloc(SIMPLE_REPLY_SIZE)
  b.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0)
  b.writeUInt32BE(error, 4)
  b.writeBigUInt64BE(cookie, 8)
  return b
}

export interface StructuredHeader {
  flags: number
  type: number
  cookie: bigint
  length: number
}

export function encodeStructuredHeader(h: StructuredHeader): Buffer {
  const b = Buffer.alloc(STRUCTURED_REPLY_HEADER_SIZE)
  b.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0)
  b.writeUInt16BE(h.flags, 4)
  b.writeUInt16BE(h.type, 6)
  b.writeBigUInt64BE(h.cookie, 8)
  b.writeUInt32BE(h.length, 16)
  return b
}

/** The magic at the start of any reply: simple or structured. */
export function replyMagic(b: Buffer): number {
  need(b, 0, 4, 'reply')
  return b.readUInt32BE(0)
}

export function decodeSimpleReply(b: Buffer): {error: number; cookie: bigint} {
  need(b, 0, SIMPLE_REPLY_SIZE, 'simple reply')
  if (b.readUInt32BE(0) !== SIMPLE_REPLY_MAGIC) throw new NbdProtocolError('simple reply without its magic')
  return {error: b.readUInt32BE(4), cookie: b.readBigUInt64BE(8)}
}

export function decodeStructuredHeader(b: Buffer): StructuredHeader {
  need(b, 0, STRUCTURED_REPLY_HEADER_SIZE, 'structured reply header')
  if (b.readUInt32BE(0) !== STRUCTURED_REPLY_MAGIC) throw new NbdProtocolError('structured reply without its magic')
  return {flags: b.readUInt16BE(4), type: b.readUInt16BE(6), cookie: b.readBigUInt64BE(8), length: b.readUInt32BE(16)}
}

/** One extent of a block status reply. */
export interface Extent {
  length: number
  flags: number
}

export function encodeBlockStatus(contextId: number, extents: Extent[]): Buffer {
  const b = Buffer.alloc(4 + 8 * extents.length)
  b.writeUInt32BE(contextId, 0)
  extents.forEach((e, i) => {
    b.writeUInt32BE(e.length, 4 + 8 * i)
    b.writeUInt32BE(e.flags, 8 + 8 * i)
  })
  return b
}

export function decodeBlockStatus(data: Buffer): {contextId: number; extents: Extent[]} {
  need(data, 0, 4, 'block status reply')
  if ((data.length - 4) % 8 !== 0 || data.length < 12) throw new NbdProtocolError(`block status reply of ${data.length} bytes`)
  const extents: Extent[] = []
  for (let at = 4; at < data.length; at += 8) extents.push({length: data.readUInt32BE(at), flags: data.readUInt32BE(at + 4)})
  return {contextId: data.readUInt32BE(0), extents}
}

/** Payload of NBD_REPLY_TYPE_ERROR / ERROR_OFFSET. */
export function encodeErrorPayload(error: number, message: string, offset?: number): Buffer {
  const msg = Buffer.from(message.slice(0, 1024), 'utf8')
  const b = Buffer.alloc(6 + msg.length + (offset === undefined ? 0 : 8))
  b.writeUInt32BE(error, 0)
  b.writeUInt16BE(msg.length, 4)
  msg.copy(b, 6)
  if (offset !== undefined) b.writeBigUInt64BE(BigInt(offset), 6 + msg.length)
  return b
}

export function decodeErrorPayload(data: Buffer): {error: number; message: string} {
  need(data, 0, 6, 'error reply')
  const len = data.readUInt16BE(4)
  need(data, 6, len, 'error message')
  return {error: data.readUInt32BE(0), message: data.toString('utf8', 6, 6 + len)}
}
