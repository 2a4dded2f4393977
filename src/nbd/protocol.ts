// The Network Block Device protocol, fixed newstyle: constants, errors and
// the bounds-checked helpers shared by the option codec (option-codec.ts,
// the handshake) and the transmission codec (transmission-codec.ts, the
// requests and replies after it), for the client (backup source) and the
// server (instant recovery).
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

/** Throws NbdProtocolError unless `buf` holds `n` bytes at `at`. */
export function need(buf: Buffer, at: number, n: number, what: string): void {
  if (at + n > buf.length) throw new NbdProtocolError(`${what}: ${buf.length - at} bytes where ${n} are needed`)
}

/** A 64-bit field as a number; refuses values past 2^53 (no disk is that large). */
export function readU64(buf: Buffer, at: number, what: string): number {
  need(buf, at, 8, what)
  const v = buf.readBigUInt64BE(at)
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new NbdProtocolError(`${what} is too large (${v})`)
  return Number(v)
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
