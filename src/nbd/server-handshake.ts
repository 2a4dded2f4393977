// The server's side of the fixed newstyle handshake (option haggling), up to
// the start of transmission. Steps:
// 1. Send NBDMAGIC, IHAVEOPT and the handshake flags (FIXED_NEWSTYLE,
//    NO_ZEROES); read the client's flags (fixed newstyle is required).
// 2. Answer options one at a time: LIST, INFO, GO, EXPORT_NAME, ABORT,
//    STRUCTURED_REPLY, LIST_/SET_META_CONTEXT (base:allocation). Anything
//    else gets NBD_REP_ERR_UNSUP, malformed option data NBD_REP_ERR_INVALID;
//    the connection stays in haggling. GO and EXPORT_NAME end haggling.
// 3. Only what cannot be answered ends the connection: a wrong magic, an
//    option longer than MAX_DISCARD, EXPORT_NAME for an unknown export (the
//    protocol has no error reply there), or more than MAX_OPTIONS options.
import type {Socket} from 'node:net'
import type {NbdExport} from './export.js'
import {
  BASE_ALLOCATION,
  encodeString,
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  IHAVEOPT,
  Info,
  MAX_OPTION_DATA,
  NBD_MAGIC,
  NbdProtocolError,
  Opt,
  OPTION_HEADER_SIZE,
  Rep,
  TFlag,
} from './protocol.js'
import {
  decodeInfoRequest,
  decodeMetaContextRequest,
  decodeOptionHeader,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeMetaContextReply,
  encodeOptionReply,
} from './option-codec.js'
import type {WireReader} from './wire.js'

/** The meta context id the server gives base:allocation. */
export const BASE_ALLOCATION_ID = 1
const MAX_OPTIONS = 256
/** Option data above MAX_OPTION_DATA but below this is read and dropped (ERR_TOO_BIG); longer ends the connection. */
const MAX_DISCARD = 1024 * 1024

export interface Negotiated {
  exp: NbdExport
  structured: boolean
  baseAllocation: boolean
}

export function transmissionFlags(exp: NbdExport): number {
  // CAN_MULTI_CONN: every connection shares one export object in this process,
  // and its flush() makes every completed write durable, whoever made it.
  let f = TFlag.HAS_FLAGS | TFlag.SEND_FLUSH | TFlag.SEND_FUA | TFlag.CAN_MULTI_CONN
  f |= exp.readOnly ? TFlag.READ_ONLY : TFlag.SEND_TRIM | TFlag.SEND_WRITE_ZEROES
  return f
}

/** Haggles until the client picks the export (returned) or aborts (null). Throws NbdProtocolError when the connection must end. */
export async function negotiate(socket: Socket, reader: WireReader, exp: NbdExport): Promise<Negotiated | null> {
  const hello = Buffer.alloc(18)
  hello.writeBigUInt64BE(NBD_MAGIC, 0)
  hello.writeBigUInt64BE(IHAVEOPT, 8)
  hello.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16)
  socket.write(hello)
  const clientFlags = (await reader.read(4)).readUInt32BE(0)
  if (!(clientFlags & FLAG_C_FIXED_NEWSTYLE)) throw new NbdProtocolError('the client does not speak fixed newstyle')
  if (clientFlags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) throw new NbdProtocolError(`unknown client flags 0x${clientFlags.toString(16)}`)
  const noZeroes = (clientFlags & FLAG_C_NO_ZEROES) !== 0
  const state: Negotiated = {exp, structured: false, baseAllocation: false}
  const reply = (option: number, type: number, data?: Buffer) => socket.write(encodeOptionReply(option, type, data))
  const fail = (option: number, type: number, message: string) => reply(option, type, Buffer.from(message, 'utf8'))
  const known = (name: string) => name === '' || name === exp.name

  for (let n = 0; n < MAX_OPTIONS; n++) {
    const {option, length} = decodeOptionHeader(await reader.read(OPTION_HEADER_SIZE))
    if (length > MAX_OPTION_DATA) {
      if (length > MAX_DISCARD) throw new NbdProtocolError(`option ${option} carries ${length} bytes`)
      await reader.read(length)
      fail(option, Rep.ERR_TOO_BIG, `option data of ${length} bytes is too long`)
      continue
    }
    const data = await reader.read(length)
    try {
      switch (option) {
        case Opt.EXPORT_NAME: {
          const name = data.toString('utf8')
          if (!known(name)) throw new NbdProtocolError(`the client asked for export "${name.slice(0, 64)}", which does not exist`)
          const tail = Buffer.alloc(noZeroes ? 10 : 134)
          tail.writeBigUInt64BE(BigInt(exp.size), 0)
          tail.writeUInt16BE(transmissionFlags(exp), 8)
          socket.write(tail)
          return state
        }
        case Opt.ABORT:
          reply(option, Rep.ACK)
          return null
        case Opt.LIST:
          if (length !== 0) fail(option, Rep.ERR_INVALID, 'LIST carries no data')
          else {
            reply(option, Rep.SERVER, encodeString(exp.name))
            reply(option, Rep.ACK)
          }
          break
        case Opt.INFO:
        case Opt.GO: {
          const req = decodeInfoRequest(data)
          if (!known(req.name)) {
            fail(option, Rep.ERR_UNKNOWN, `no export named "${req.name.slice(0, 64)}" (this server has "${exp.name}")`)
            break
          }
          sendInfo(reply, option, exp, req.infos)
          reply(option, Rep.ACK)
          if (option === Opt.GO) return state
          break
        }
        case Opt.STRUCTURED_REPLY:
          if (length !== 0) fail(option, Rep.ERR_INVALID, 'STRUCTURED_REPLY carries no data')
          else if (state.structured) fail(option, Rep.ERR_INVALID, 'structured replies are already on')
          else {
            state.structured = true
            reply(option, Rep.ACK)
          }
          break
        case Opt.LIST_META_CONTEXT:
        case Opt.SET_META_CONTEXT:
          metaContext(state, option, data, reply, fail, known)
          break
        default:
          fail(option, Rep.ERR_UNSUP, `option ${option} is not supported`)
      }
    } catch (e) {
      if (!(e instanceof NbdProtocolError) || option === Opt.EXPORT_NAME) throw e
      fail(option, Rep.ERR_INVALID, e.message)
    }
  }
  throw new NbdProtocolError(`more than ${MAX_OPTIONS} options`)
}

type Reply = (option: number, type: number, data?: Buffer) => void

function sendInfo(reply: Reply, option: number, exp: NbdExport, infos: number[]): void {
  reply(option, Rep.INFO, encodeInfoExport({size: exp.size, flags: transmissionFlags(exp)}))
  reply(option, Rep.INFO, encodeInfoBlockSize(exp.minBlock, exp.preferredBlock, exp.maxBlock))
  for (const [type, text] of [
    [Info.NAME, exp.name],
    [Info.DESCRIPTION, exp.description ?? ''],
  ] as const) {
    if (!infos.includes(type)) continue
    const b = Buffer.alloc(2)
    b.writeUInt16BE(type, 0)
    reply(option, Rep.INFO, Buffer.concat([b, Buffer.from(text, 'utf8')]))
  }
}

function metaContext(
  state: Negotiated,
  option: number,
  data: Buffer,
  reply: Reply,
  fail: (option: number, type: number, message: string) => void,
  known: (name: string) => boolean,
): void {
  const req = decodeMetaContextRequest(data)
  const set = option === Opt.SET_META_CONTEXT
  if (set && !state.structured) return fail(option, Rep.ERR_INVALID, 'negotiate structured replies before SET_META_CONTEXT')
  if (!known(req.name)) return fail(option, Rep.ERR_UNKNOWN, `no export named "${req.name.slice(0, 64)}"`)
  if (set) state.baseAllocation = false
  const matches = (q: string) => q === BASE_ALLOCATION || (!set && q === 'base:')
  if ((!set && req.queries.length === 0) || req.queries.some(matches)) {
    reply(option, Rep.META_CONTEXT, encodeMetaContextReply(BASE_ALLOCATION_ID, BASE_ALLOCATION))
    if (set) state.baseAllocation = true
  }
  reply(option, Rep.ACK)
}
