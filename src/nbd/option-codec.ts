// NBD handshake codecs: option requests and replies, NBD_OPT_INFO/GO
// requests and NBD_REP_INFO payloads, meta context requests and replies.
// Layout from NetworkBlockDevice/nbd doc/proto.md ("Option types",
// "Option reply types"); every decoder checks lengths first (protocol.ts).
import {
  IHAVEOPT,
  Info,
  MAX_META_QUERIES,
  NbdProtocolError,
  OPTION_HEADER_SIZE,
  OPTION_REPLY_HEADER_SIZE,
  OPTION_REPLY_MAGIC,
  decodeString,
  encodeString,
  need,
  readU64,
} from './protocol.js'

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
