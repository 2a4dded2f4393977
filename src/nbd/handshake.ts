// The client side of fixed-newstyle negotiation, in the order the protocol
// allows and the servers we meet (qemu-nbd, qemu's built-in server,
// nbdkit) expect:
//
// 1. Server greeting: NBDMAGIC, IHAVEOPT, handshake flags. Oldstyle and
//    non-fixed newstyle servers are refused (no option haggling possible).
// 2. Client flags: fixed newstyle, and no-zeroes when the server offers it.
// 3. NBD_OPT_STRUCTURED_REPLY: needed for block status and sparse reads;
//    a server that refuses it still serves plain reads.
// 4. NBD_OPT_SET_META_CONTEXT for the contexts asked for (base:allocation,
//    qemu:dirty-bitmap:NAME): the server answers with the ones it has,
//    each with the id its block status replies will carry.
// 5. NBD_OPT_GO with NBD_INFO_BLOCK_SIZE: size, transmission flags and the
//    block size constraints, then transmission starts.
// Every reply loop is bounded by what the request could justify.
import type {Socket} from 'node:net'
import * as P from './protocol.js'
import * as O from './option-codec.js'
import type {WireReader} from './wire.js'

/** Request size limit when the server names none (proto.md: clients SHOULD stay within 32 MiB). */
export const DEFAULT_MAX_REQUEST = 32 * 1024 * 1024
const OLDSTYLE_MAGIC = 0x00420281861253n
const MAX_INFO_REPLIES = 64

export interface BlockSizes {
  min: number
  preferred: number
  /** Largest request we send: the server's maximum, capped at 32 MiB. */
  max: number
}

export interface Negotiated {
  size: number
  flags: number
  blockSizes: BlockSizes
  structured: boolean
  /** Meta context name → id, for the contexts the server granted. */
  contexts: Map<string, number>
}

/** Thrown for an error reply to NBD_OPT_GO: the caller maps it by type. */
export class NbdOptionRefused extends Error {
  constructor(
    readonly replyType: number,
    message: string,
  ) {
    super(message)
    this.name = 'NbdOptionRefused'
  }
}

async function reply(wire: WireReader, option: number): Promise<{type: number; data: Buffer}> {
  const h = O.decodeOptionReplyHeader(await wire.read(P.OPTION_REPLY_HEADER_SIZE))
  if (h.option !== option) throw new P.NbdProtocolError(`reply to option ${h.option} while waiting for option ${option}`)
  if (h.length > P.MAX_OPTION_DATA) throw new P.NbdProtocolError(`option reply of ${h.length} bytes (at most ${P.MAX_OPTION_DATA})`)
  return {type: h.type, data: await wire.read(h.length)}
}

const isPow2 = (n: number): boolean => n > 0 && (n & (n - 1)) === 0

function checkBlockSizes(min: number, preferred: number, max: number): BlockSizes {
  if (!isPow2(min) || min > 65536 || !isPow2(preferred) || preferred < min || preferred > DEFAULT_MAX_REQUEST || max < preferred || (max !== 0xffffffff && max % min !== 0)) {
    throw new P.NbdProtocolError(`block size constraints min ${min}, preferred ${preferred}, max ${max} are not valid`)
  }
  return {min, preferred, max: Math.min(max, DEFAULT_MAX_REQUEST)}
}

export async function negotiate(socket: Socket, wire: WireReader, exportName: string, queries: string[]): Promise<Negotiated> {
  const greeting = await wire.read(18)
  if (greeting.readBigUInt64BE(0) !== P.NBD_MAGIC) throw new P.NbdProtocolError('the peer is not an NBD server (no NBDMAGIC greeting)')
  const second = greeting.readBigUInt64BE(8)
  if (second === OLDSTYLE_MAGIC) throw new P.NbdProtocolError('the server speaks oldstyle negotiation, which has no export names (run it in newstyle mode)')
  if (second !== P.IHAVEOPT) throw new P.NbdProtocolError('the server greeting has neither the newstyle nor the oldstyle magic')
  const serverFlags = greeting.readUInt16BE(16)
  if (!(serverFlags & P.FLAG_FIXED_NEWSTYLE)) throw new P.NbdProtocolError('the server does not speak fixed newstyle negotiation')
  const clientFlags = Buffer.alloc(4)
  clientFlags.writeUInt32BE(P.FLAG_C_FIXED_NEWSTYLE | (serverFlags & P.FLAG_NO_ZEROES ? P.FLAG_C_NO_ZEROES : 0))
  socket.write(clientFlags)

  socket.write(O.encodeOption(P.Opt.STRUCTURED_REPLY))
  const sr = await reply(wire, P.Opt.STRUCTURED_REPLY)
  if (sr.type !== P.Rep.ACK && !P.isErrorReply(sr.type)) throw new P.NbdProtocolError(`unexpected reply ${sr.type} to the structured reply option`)
  const structured = sr.type === P.Rep.ACK

  const contexts = new Map<string, number>()
  if (structured && queries.length > 0) {
    socket.write(O.encodeOption(P.Opt.SET_META_CONTEXT, O.encodeMetaContextRequest(exportName, queries)))
    for (let i = 0; ; i++) {
      const r = await reply(wire, P.Opt.SET_META_CONTEXT)
      if (r.type === P.Rep.ACK || P.isErrorReply(r.type)) break
      if (r.type !== P.Rep.META_CONTEXT || i >= queries.length) throw new P.NbdProtocolError(`unexpected reply ${r.type} to the meta context option`)
      const mc = O.decodeMetaContextReply(r.data)
      if (!queries.includes(mc.name)) throw new P.NbdProtocolError(`the server granted meta context "${mc.name}", which was not asked for`)
      contexts.set(mc.name, mc.id)
    }
  }

  socket.write(O.encodeOption(P.Opt.GO, O.encodeInfoRequest(exportName, [P.Info.BLOCK_SIZE])))
  let size: number | undefined
  let flags = 0
  let blockSizes: BlockSizes = {min: 1, preferred: 4096, max: DEFAULT_MAX_REQUEST}
  for (let i = 0; ; i++) {
    const r = await reply(wire, P.Opt.GO)
    if (r.type === P.Rep.ACK) break
    if (P.isErrorReply(r.type)) throw new NbdOptionRefused(r.type, r.data.toString('utf8', 0, Math.min(r.data.length, 512)))
    if (r.type !== P.Rep.INFO || i >= MAX_INFO_REPLIES) throw new P.NbdProtocolError(`unexpected reply ${r.type} to NBD_OPT_GO`)
    const info = O.decodeInfoReply(r.data)
    if (info.type === P.Info.EXPORT && 'size' in info) {
      size = info.size
      flags = info.flags
    } else if (info.type === P.Info.BLOCK_SIZE && 'min' in info) {
      blockSizes = checkBlockSizes(info.min, info.preferred, info.max)
    }
  }
  if (size === undefined) throw new P.NbdProtocolError('the server ended NBD_OPT_GO without the export size')
  return {size, flags, blockSizes, structured, contexts}
}
