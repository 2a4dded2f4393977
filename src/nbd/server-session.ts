// Transmission phase of one connection: requests in, replies out.
//
// 1. Read a request header (and a write's payload). Check it against the
//    export before anything runs: a range past the end, a length above
//    maxBlock, a write to a read-only export, block status without
//    base:allocation get an NBD error reply and the connection goes on.
//    Only what cannot be skipped ends it: a wrong magic, or a write payload
//    too long to read.
// 2. Run up to MAX_IN_FLIGHT requests at once (clients pipeline); each reply
//    is written in one synchronous burst, so replies never interleave.
// 3. A failing export call (a chunk that fails verification...) becomes EIO
//    for that request and a log line, never wrong bytes.
// 4. DISC, or the client going away: wait for the requests in flight, then
//    end. Nothing is written to a socket that is gone.
import type {Socket} from 'node:net'
import type {NbdExport} from './export.js'
import {Cmd, CmdFlag, Errno, Reply, REPLY_FLAG_DONE, REQUEST_SIZE} from './protocol.js'
import {
  decodeRequest,
  encodeBlockStatus,
  encodeErrorPayload,
  encodeSimpleReply,
  encodeStructuredHeader,
  type Request,
} from './transmission-codec.js'
import {BASE_ALLOCATION_ID, type Negotiated} from './server-handshake.js'
import type {WireReader} from './wire.js'

const MAX_IN_FLIGHT = 16
/** Read and write bytes in flight on one connection, beyond one request (bounds memory per client). */
const MAX_IN_FLIGHT_BYTES = 64 * 1024 * 1024
/** Replies queued for a slow reader above this pause request reading. */
const MAX_QUEUED_BYTES = 64 * 1024 * 1024
const MAX_EXTENTS = 1024
const CMD_NAMES = ['read', 'write', 'disc', 'flush', 'trim', 'cache', 'write-zeroes', 'block-status']

export interface SessionStats {
  requests: number
  bytesRead: number
  bytesWritten: number
  errors: number
}

/** Why one request failed: the errno for the wire and a message for the log and the structured reply. */
class RequestError extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message)
  }
}

export async function transmit(socket: Socket, reader: WireReader, neg: Negotiated, log: (line: string) => void, stats: SessionStats): Promise<void> {
  const exp = neg.exp
  const inflight = new Set<Promise<void>>()
  let inflightBytes = 0
  try {
    for (;;) {
      while (inflight.size >= MAX_IN_FLIGHT || (inflight.size > 0 && inflightBytes >= MAX_IN_FLIGHT_BYTES)) await Promise.race(inflight)
      if (socket.writableLength > MAX_QUEUED_BYTES) await drained(socket)
      const req = decodeRequest(await reader.read(REQUEST_SIZE))
      stats.requests++
      if (req.type === Cmd.DISC) return
      let payload: Buffer | undefined
      if (req.type === Cmd.WRITE) {
        if (req.length > exp.maxBlock) {
          sendError(socket, neg, req, new RequestError(Errno.EINVAL, `write of ${req.length} bytes is above the maximum of ${exp.maxBlock}`))
          throw new RequestError(Errno.EINVAL, `the client sent a ${req.length}-byte write (at most ${exp.maxBlock}); closing`)
        }
        payload = await reader.read(req.length)
      }
      const p: Promise<void> = handle(exp, neg, req, payload).then(
        (data) => send(socket, neg, req, data),
        (e: unknown) => {
          stats.errors++
          const err = e instanceof RequestError ? e : new RequestError(Errno.EIO, (e as Error).message)
          if (!(e instanceof RequestError)) log(`${CMD_NAMES[req.type] ?? req.type} at ${req.offset}+${req.length} failed: ${err.message}`)
          sendError(socket, neg, req, err)
        },
      )
      const bytes = req.type === Cmd.READ || req.type === Cmd.WRITE ? Math.min(req.length, exp.maxBlock) : 0
      inflightBytes += bytes
      const tracked = p.finally(() => {
        inflight.delete(tracked)
        inflightBytes -= bytes
      })
      inflight.add(tracked)
      if (req.type === Cmd.READ) tracked.then(() => (stats.bytesRead += req.length))
      if (payload) stats.bytesWritten += req.length
    }
  } finally {
    await Promise.allSettled(inflight)
  }
}

/** Resolves when the socket's write queue drained, or it closed. */
function drained(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      socket.off('drain', done)
      socket.off('close', done)
      resolve()
    }
    socket.on('drain', done)
    socket.on('close', done)
  })
}

type Result = Buffer | {extents: {length: number; flags: number}[]} | null

async function handle(exp: NbdExport, neg: Negotiated, req: Request, payload?: Buffer): Promise<Result> {
  const end = req.offset + req.length
  const inside = end <= exp.size
  const writes = req.type === Cmd.WRITE || req.type === Cmd.WRITE_ZEROES || req.type === Cmd.TRIM
  if (writes && exp.readOnly) throw new RequestError(Errno.EPERM, 'the export is read-only (serve with --overlay FILE to accept writes)')
  switch (req.type) {
    case Cmd.READ:
      if (!inside || req.length === 0) throw new RequestError(Errno.EINVAL, `read at ${req.offset}+${req.length} is outside the ${exp.size}-byte disk`)
      if (req.length > exp.maxBlock) throw new RequestError(neg.structured ? Errno.EOVERFLOW : Errno.EINVAL, `read of ${req.length} bytes is above the maximum of ${exp.maxBlock}`)
      return exp.read(req.offset, req.length)
    case Cmd.WRITE:
      if (!inside) throw new RequestError(Errno.ENOSPC, `write at ${req.offset}+${req.length} is past the end of the ${exp.size}-byte disk`)
      await exp.write(req.offset, payload!)
      break
    case Cmd.TRIM:
    case Cmd.WRITE_ZEROES:
      if (!inside) throw new RequestError(req.type === Cmd.TRIM ? Errno.EINVAL : Errno.ENOSPC, `range ${req.offset}+${req.length} is past the end of the ${exp.size}-byte disk`)
      if (req.length > 0) await exp.zero(req.offset, req.length)
      break
    case Cmd.FLUSH:
      await exp.flush()
      return null
    case Cmd.BLOCK_STATUS: {
      if (!neg.baseAllocation) throw new RequestError(Errno.EINVAL, 'block status needs the base:allocation meta context')
      if (!inside || req.length === 0) throw new RequestError(Errno.EINVAL, `block status at ${req.offset}+${req.length} is outside the ${exp.size}-byte disk`)
      const extents = await exp.extents(req.offset, req.length, req.flags & CmdFlag.REQ_ONE ? 1 : MAX_EXTENTS)
      return {extents}
    }
    default:
      throw new RequestError(Errno.EINVAL, `command ${req.type} is not supported`)
  }
  if (req.flags & CmdFlag.FUA) await exp.flush()
  return null
}

function writable(socket: Socket): boolean {
  return !socket.destroyed && socket.writable
}

function send(socket: Socket, neg: Negotiated, req: Request, result: Result): void {
  if (!writable(socket)) return
  socket.cork()
  if (result instanceof Buffer) {
    if (neg.structured) {
      socket.write(encodeStructuredHeader({flags: REPLY_FLAG_DONE, type: Reply.OFFSET_DATA, cookie: req.cookie, length: 8 + result.length}))
      const off = Buffer.alloc(8)
      off.writeBigUInt64BE(BigInt(req.offset), 0)
      socket.write(off)
    } else socket.write(encodeSimpleReply(req.cookie, 0))
    socket.write(result)
  } else if (result && 'extents' in result) {
    const body = encodeBlockStatus(BASE_ALLOCATION_ID, result.extents)
    socket.write(encodeStructuredHeader({flags: REPLY_FLAG_DONE, type: Reply.BLOCK_STATUS, cookie: req.cookie, length: body.length}))
    socket.write(body)
  } else socket.write(encodeSimpleReply(req.cookie, 0))
  socket.uncork()
}

function sendError(socket: Socket, neg: Negotiated, req: Request, e: RequestError): void {
  if (!writable(socket)) return
  if (neg.structured && (req.type === Cmd.READ || req.type === Cmd.BLOCK_STATUS)) {
    const body = encodeErrorPayload(e.errno, e.message)
    socket.cork()
    socket.write(encodeStructuredHeader({flags: REPLY_FLAG_DONE, type: Reply.ERROR, cookie: req.cookie, length: body.length}))
    socket.write(body)
    socket.uncork()
  } else socket.write(encodeSimpleReply(req.cookie, e.errno))
}
