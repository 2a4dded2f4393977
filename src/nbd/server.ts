// An NBD server for one export, on TCP or a unix socket. Each connection
// haggles (server-handshake.ts), then transmits (server-session.ts); many
// connections run at once against the same export (multi-conn). Every
// connection is logged when it opens and when it ends, with why.
//
// close(): stop accepting, end every connection, wait until their requests in
// flight have finished — after that the export can be flushed and closed.
import {connect, createServer, type Server, type Socket} from 'node:net'
import {lstat, rm} from 'node:fs/promises'
import type {NbdExport} from './export.js'
import {NbdProtocolError} from './protocol.js'
import {negotiate} from './server-handshake.js'
import {transmit, type SessionStats} from './server-session.js'
import {WireReader} from './wire.js'

const END_GRACE_MS = 5000

export type ListenAddress = {host: string; port: number} | {path: string}

export interface NbdServerOptions {
  log: (line: string) => void
  /** Connections at once; more are closed when they arrive. */
  maxConnections?: number
  /** A client that has not picked an export after this long is disconnected. */
  handshakeTimeoutMs?: number
}

export class NbdServer {
  private server?: Server
  private readonly sockets = new Set<Socket>()
  private readonly sessions = new Set<Promise<void>>()
  private nextId = 1
  private closing = false
  private readonly log: (line: string) => void
  private readonly maxConnections: number
  private readonly handshakeTimeoutMs: number

  constructor(
    private readonly exp: NbdExport,
    opts: NbdServerOptions,
  ) {
    this.log = opts.log
    this.maxConnections = opts.maxConnections ?? 64
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? 60_000
  }

  get connections(): number {
    return this.sockets.size
  }

  /** Starts listening; resolves with where (host:port with the real port, or the socket path). */
  async listen(addr: ListenAddress): Promise<string> {
    if ('path' in addr) await removeStaleSocket(addr.path)
    const server = createServer((s) => this.accept(s))
    this.server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      const done = () => {
        server.off('error', reject)
        resolve()
      }
      if ('path' in addr) server.listen(addr.path, done)
      else server.listen(addr.port, addr.host, done)
    })
    server.on('error', (e) => this.log(`server error: ${e.message}`))
    if ('path' in addr) return addr.path
    const a = server.address()
    if (a && typeof a === 'object') return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`
    return String(a)
  }

  async close(): Promise<void> {
    this.closing = true
    const closed = this.server ? new Promise<void>((r) => this.server!.close(() => r())) : Promise.resolve()
    for (const s of this.sockets) s.destroy()
    await Promise.allSettled([...this.sessions])
    await closed
  }

  private accept(socket: Socket): void {
    const id = this.nextId++
    const peer = socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : 'unix socket'
    if (this.closing || this.sockets.size >= this.maxConnections) {
      this.log(`client #${id} from ${peer} refused: ${this.closing ? 'shutting down' : `${this.maxConnections} connections already`}`)
      socket.on('error', () => {})
      socket.destroy()
      return
    }
    this.sockets.add(socket)
    socket.setNoDelay(true)
    this.log(`client #${id} connected from ${peer}`)
    // The end is logged once the socket is closed, so "ended" means its descriptor is gone too.
    let summary: string | undefined
    let closed = false
    const report = () => {
      if (summary !== undefined && closed) this.log(`client #${id} ${summary}`)
    }
    socket.once('close', () => {
      closed = true
      report()
    })
    const session = this.run(socket, id)
      .then((s) => {
        summary = s
        report()
      })
      .finally(() => {
        this.sockets.delete(socket)
        this.sessions.delete(session)
        // end() sends the replies still queued; a peer that reads nothing more
        // is cut off after END_GRACE_MS so its socket is not held for ever.
        if (this.closing) socket.destroy()
        else {
          socket.end()
          setTimeout(() => socket.destroy(), END_GRACE_MS).unref()
        }
      })
    this.sessions.add(session)
  }

  /** Haggles and transmits; resolves with how the connection ended, for the log. */
  private async run(socket: Socket, id: number): Promise<string> {
    const reader = new WireReader(socket, 64 * 1024 * 1024)
    const stats: SessionStats = {requests: 0, bytesRead: 0, bytesWritten: 0, errors: 0}
    let why = 'disconnected'
    socket.setTimeout(this.handshakeTimeoutMs, () => socket.destroy(new Error(`no export chosen within ${this.handshakeTimeoutMs / 1000} s`)))
    try {
      const neg = await negotiate(socket, reader, this.exp)
      socket.setTimeout(0)
      if (!neg) {
        why = 'aborted the handshake'
        return `ended: ${why}`
      }
      this.log(`client #${id} opened export "${this.exp.name}"${neg.structured ? ' (structured replies' + (neg.baseAllocation ? ', base:allocation)' : ')') : ''}`)
      await transmit(socket, reader, neg, (line) => this.log(`client #${id}: ${line}`), stats)
    } catch (e) {
      why = e instanceof NbdProtocolError ? e.message : `error: ${(e as Error).message}`
    }
    const s = stats.requests > 0 ? ` after ${stats.requests} requests (${stats.bytesRead} bytes read, ${stats.bytesWritten} written, ${stats.errors} errors)` : ''
    return `ended: ${this.closing ? 'server shutting down' : why}${s}`
  }
}

/** A unix socket left by a server that died is removed; a live one, or any other file, is left for listen() to refuse. */
async function removeStaleSocket(path: string): Promise<void> {
  const st = await lstat(path).catch(() => undefined)
  if (!st?.isSocket()) return
  const live = await new Promise<boolean>((resolve) => {
    const probe = connect(path)
    probe.once('connect', () => {
      probe.destroy()
      resolve(true)
    })
    probe.once('error', () => resolve(false))
  })
  if (!live) await rm(path, {force: true})
}
