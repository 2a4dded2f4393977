// NBD transmission codecs: requests, simple and structured replies, block
// status extents and error payloads. Layout from NetworkBlockDevice/nbd
// doc/proto.md ("Transmission phase"); every decoder checks lengths first
// (protocol.ts).
import {
  NbdProtocolError,
  REQUEST_MAGIC,
  REQUEST_SIZE,
  SIMPLE_REPLY_MAGIC,
  SIMPLE_REPLY_SIZE,
  STRUCTURED_REPLY_HEADER_SIZE,
  STRUCTURED_REPLY_MAGIC,
  need,
  readU64,
} from './protocol.js'

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
