// An NBD client for reading a disk: one connection, requests pipelined.
//
// Requests go out as they are made, each with its own cookie, up to
// `maxRequests` and `maxBytes` in flight (more wait their turn); one
// receive loop reads replies in whatever order the server sends them and
// completes the request each belongs to. Simple and structured replies are
// both understood (structured when the server agreed to them: sparse reads
// and block status need them).
//
// Failure is all or nothing: the first connection error, protocol violation
// or silence longer than the idle limit fails every request in flight and
// every later one with the same typed error (see errors.ts); a server error
// for one request (an errno) fails that request only.
import {connect, type Socket} from 'node:net'
import type {VdsnapError} from '../errors.js'
import {Semaphore} from '../flow/semaphore.js'
import {DEFAULT_MAX_REQUEST, negotiate, type BlockSizes} from './handshake.js'
import {NbdServerError, errnoName, nbdError} from './errors.js'
import * as P from './protocol.js'
import * as T from './transmission-codec.js'
import {DEFAULT_PORT, type NbdAddress} from './url.js'
import {WireReader} from './wire.js'

export interface NbdClientOptions {
  /** Meta contexts to ask for; the ones the server grants are in `contexts`. */
  metaContexts?: string[]
  maxRequests?: number
  maxBytes?: number
  /** A server that leaves requests unanswered this long is given up on. */
  idleTimeoutMs?: number
  connectTimeoutMs?: number
}

/** Block status payloads: 8 bytes per extent; qemu sends at most 2^17 extents. */
const MAX_STATUS_PAYLOAD = 16 * 1024 * 1024

interface Pending {
  type: number
  offset: number
  length: number
  buf?: Buffer
  covered: number
  statuses: Map<number, T.Extent[]>
  error?: Error
  resolve(): void
  reject(e: Error): void
}

export class NbdClient {
  private readonly pending = new Map<bigint, Pending>()
  private nextCookie = 1n
  private failure?: VdsnapError
  private closing = false
  private readonly slots: Semaphore
  private readonly budget: Semaphore
  private readonly maxBytes: number

  private constructor(
    readonly address: NbdAddress,
    private readonly socket: Socket,
    private readonly wire: WireReader,
    readonly size: number,
    readonly flags: number,
    readonly blockSizes: BlockSizes,
    readonly structured: boolean,
    readonly contexts: Map<string, number>,
    opts: NbdClientOptions,
  ) {
    this.slots = new Semaphore(opts.maxRequests ?? 16)
    this.maxBytes = Math.max(opts.maxBytes ?? 64 * 1024 * 1024, blockSizes.max)
    this.budget = new Semaphore(this.maxBytes)
    socket.removeAllListeners('timeout')
    socket.setTimeout(opts.idleTimeoutMs ?? 120_000)
    socket.on('timeout', () => {
      if (this.pending.size > 0) this.fail(new P.NbdConnectionError(`no reply for ${Math.round((opts.idleTimeoutMs ?? 120_000) / 1000)} s`))
    })
  }

  static async connect(address: NbdAddress, opts: NbdClientOptions = {}): Promise<NbdClient> {
    let socket: Socket
    try {
      socket = await openSocket(address, opts.connectTimeoutMs ?? 30_000)
    } catch (e) {
      throw nbdError(e, address.url, 'while connecting')
    }
    // The largest message: a data chunk of a maximum-size read (payload + its 8-byte offset).
    const wire = new WireReader(socket, Math.max(DEFAULT_MAX_REQUEST, MAX_STATUS_PAYLOAD) + 64 * 1024)
    // A peer that accepts and then says nothing must not hold the backup forever.
    const handshakeMs = opts.connectTimeoutMs ?? 30_000
    socket.setTimeout(handshakeMs, () => socket.destroy(new Error(`no answer for ${handshakeMs / 1000} s`)))
    try {
      const n = await negotiate(socket, wire, address.exportName, opts.metaContexts ?? [])
      const client = new NbdClient(address, socket, wire, n.size, n.flags, n.blockSizes, n.structured, n.contexts, opts)
      void client.receive()
      return client
    } catch (e) {
      socket.destroy()
      throw nbdError(e, address.url, 'during the handshake')
    }
  }

  /** Reads `length` bytes at `offset` into `buf` with one request (length ≤ blockSizes.max). */
  async read(buf: Buffer, offset: number, length: number): Promise<void> {
    if (length > this.blockSizes.max) throw new RangeError(`NBD read of ${length} bytes exceeds the ${this.blockSizes.max}-byte limit`)
    await this.request(P.Cmd.READ, offset, length, buf)
  }

  /**
   * Block status of [offset, offset+length) for every granted context, by
   * context id. The server may describe less than asked (never nothing):
   * callers loop from the end of what came back.
   */
  async blockStatus(offset: number, length: number): Promise<Map<number, T.Extent[]>> {
    const p = await this.request(P.Cmd.BLOCK_STATUS, offset, length)
    return p.statuses
  }

  async close(): Promise<void> {
    if (this.closing) return
    this.closing = true
    if (!this.failure) this.socket.end(T.encodeRequest({flags: 0, type: P.Cmd.DISC, cookie: 0n, offset: 0, length: 0}))
    await new Promise<void>((resolve) => {
      if (this.socket.destroyed) return resolve()
      const timer = setTimeout(() => this.socket.destroy(), 2000).unref()
      this.socket.once('close', () => {
        clearTimeout(timer)
        resolve()
      })
    })
  }

  private async request(type: number, offset: number, length: number, buf?: Buffer): Promise<Pending> {
    if (offset + length > this.size) throw new RangeError(`NBD request [${offset}, +${length}) past the export's end (${this.size})`)
    const cost = type === P.Cmd.READ ? Math.min(length, this.maxBytes) : 0
    await this.slots.acquire()
    await this.budget.acquire(cost)
    try {
      if (this.failure) throw this.failure
      if (this.closing) throw new Error('NBD client used after close')
      const cookie = this.nextCookie++
      const done = new Promise<Pending>((resolve, reject) => {
        const p: Pending = {type, offset, length, buf, covered: 0, statuses: new Map(), resolve: () => resolve(p), reject}
        this.pending.set(cookie, p)
      })
      this.socket.write(T.encodeRequest({flags: 0, type, cookie, offset, length}))
      return await done
    } finally {
      this.budget.release(cost)
      this.slots.release()
    }
  }

  private async receive(): Promise<void> {
    try {
      for (;;) {
        const head = await this.wire.read(4)
        const magic = head.readUInt32BE(0)
        if (magic === P.SIMPLE_REPLY_MAGIC) await this.simple(Buffer.concat([head, await this.wire.read(P.SIMPLE_REPLY_SIZE - 4)]))
        else if (magic === P.STRUCTURED_REPLY_MAGIC) await this.chunk(Buffer.concat([head, await this.wire.read(P.STRUCTURED_REPLY_HEADER_SIZE - 4)]))
        else throw new P.NbdProtocolError(`a reply with the unknown magic 0x${magic.toString(16)}`)
      }
    } catch (e) {
      this.fail(e)
    }
  }

  private take(cookie: bigint): Pending {
    const p = this.pending.get(cookie)
    if (!p) throw new P.NbdProtocolError(`a reply to request ${cookie}, which is not in flight`)
    return p
  }

  private async simple(b: Buffer): Promise<void> {
    const r = T.decodeSimpleReply(b)
    const p = this.take(r.cookie)
    this.pending.delete(r.cookie)
    if (r.error !== 0) return p.reject(this.serverError(p, r.error, ''))
    if (p.type === P.Cmd.BLOCK_STATUS) throw new P.NbdProtocolError('a simple reply to a block status request')
    if (p.type === P.Cmd.READ) {
      const data = await this.wire.read(p.length)
      data.copy(p.buf!, 0)
    }
    p.resolve()
  }

  private async chunk(b: Buffer): Promise<void> {
    const h = T.decodeStructuredHeader(b)
    const p = this.take(h.cookie)
    const limit = p.type === P.Cmd.READ ? Math.max(p.length + 8, P.MAX_OPTION_DATA) : MAX_STATUS_PAYLOAD
    if (h.length > limit) throw new P.NbdProtocolError(`a reply chunk of ${h.length} bytes to a request of ${p.length}`)
    const data = await this.wire.read(h.length)
    if (h.type === P.Reply.OFFSET_DATA && p.type === P.Cmd.READ) {
      const at = this.within(p, P.readU64(data, 0, 'data chunk offset'), h.length - 8)
      data.copy(p.buf!, at, 8)
      p.covered += h.length - 8
    } else if (h.type === P.Reply.OFFSET_HOLE && p.type === P.Cmd.READ && h.length === 12) {
      const hole = data.readUInt32BE(8)
      const at = this.within(p, P.readU64(data, 0, 'hole chunk offset'), hole)
      p.buf!.fill(0, at, at + hole)
      p.covered += hole
    } else if (h.type === P.Reply.BLOCK_STATUS && p.type === P.Cmd.BLOCK_STATUS) {
      const s = T.decodeBlockStatus(data)
      if (![...this.contexts.values()].includes(s.contextId) || p.statuses.has(s.contextId)) throw new P.NbdProtocolError(`block status for context ${s.contextId}, not asked for or sent twice`)
      p.statuses.set(s.contextId, s.extents)
    } else if (h.type & 0x8000) {
      const err = T.decodeErrorPayload(data)
      p.error ??= this.serverError(p, err.error, err.message)
    } else if (h.type !== P.Reply.NONE || h.length !== 0) {
      throw new P.NbdProtocolError(`a reply chunk of type ${h.type} to a ${p.type === P.Cmd.READ ? 'read' : 'block status'} request`)
    }
    if (!(h.flags & P.REPLY_FLAG_DONE)) return
    this.pending.delete(h.cookie)
    if (p.error) return p.reject(p.error)
    if (p.type === P.Cmd.READ && p.covered !== p.length) throw new P.NbdProtocolError(`a read reply covering ${p.covered} of ${p.length} bytes`)
    if (p.type === P.Cmd.BLOCK_STATUS && p.statuses.size !== this.contexts.size) throw new P.NbdProtocolError('a block status reply without every meta context')
    p.resolve()
  }

  /** A chunk's position in the request's buffer; it must lie inside the request. */
  private within(p: Pending, offset: number, length: number): number {
    if (offset < p.offset || offset + length > p.offset + p.length) {
      throw new P.NbdProtocolError(`a reply chunk for [${offset}, +${length}) outside the request [${p.offset}, +${p.length})`)
    }
    return offset - p.offset
  }

  private serverError(p: Pending, errno: number, message: string): Error {
    const what = p.type === P.Cmd.READ ? 'a read' : 'a block status request'
    return nbdError(new NbdServerError(errno, `${what} of ${p.length} bytes at offset ${p.offset} with ${errnoName(errno)}${message ? ` (${message})` : ''}`), this.address.url, '')
  }

  private fail(e: unknown): void {
    if (this.failure) return
    if (this.closing && this.pending.size === 0) return
    this.failure = nbdError(e, this.address.url, this.pending.size > 0 ? 'during a read' : 'while idle')
    for (const p of this.pending.values()) p.reject(this.failure)
    this.pending.clear()
    this.socket.destroy()
  }
}

function openSocket(a: NbdAddress, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = a.socket ? connect({path: a.socket}) : connect({host: a.host, port: a.port ?? DEFAULT_PORT})
    const timer = setTimeout(() => s.destroy(Object.assign(new Error(`no connection after ${timeoutMs / 1000} s`), {code: 'ETIMEDOUT'})), timeoutMs)
    const onError = (e: Error): void => {
      clearTimeout(timer)
      reject(e)
    }
    s.once('error', onError)
    s.once('connect', () => {
      clearTimeout(timer)
      s.off('error', onError)
      s.setNoDelay(true)
      resolve(s)
    })
  })
}
