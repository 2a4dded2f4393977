// Exact-length reads from a stream socket, for both ends of an NBD
// connection. The protocol is a sequence of fixed headers followed by
// payloads whose length the header gives, so every read is "exactly N
// bytes". A peer that closes mid-message ends the read with one
// NbdProtocolError; `maxRead` bounds what one read may ask for, so a peer
// cannot make us allocate what it names.
import type {Duplex} from 'node:stream'
import {NbdConnectionError, NbdProtocolError} from './protocol.js'

export class WireReader {
  private readonly chunks: Buffer[] = []
  private buffered = 0
  private waiter?: {n: number; resolve(b: Buffer): void; reject(e: Error): void}
  private ended?: Error

  constructor(
    private readonly socket: Duplex,
    private readonly maxRead = 64 * 1024 * 1024,
  ) {
    socket.on('data', (d: Buffer) => {
      this.chunks.push(d)
      this.buffered += d.length
      if (this.buffered > this.maxRead + 1024 * 1024) socket.pause()
      this.wake()
    })
    socket.on('end', () => this.close(new NbdConnectionError('the peer closed the connection')))
    socket.on('close', () => this.close(new NbdConnectionError('the connection closed')))
    socket.on('error', (e: Error) => this.close(new NbdConnectionError(`connection error: ${e.message}`)))
  }

  /** Bytes received and not yet read. */
  get pending(): number {
    return this.buffered
  }

  /** Exactly `n` bytes; rejects when the connection ends first. One read at a time. */
  read(n: number): Promise<Buffer> {
    if (this.waiter) return Promise.reject(new Error('WireReader: concurrent reads'))
    if (n > this.maxRead) return Promise.reject(new NbdProtocolError(`the peer asked for a ${n}-byte message (at most ${this.maxRead})`))
    if (n === 0) return Promise.resolve(Buffer.alloc(0))
    return new Promise((resolve, reject) => {
      this.waiter = {n, resolve, reject}
      this.wake()
    })
  }

  private wake(): void {
    const w = this.waiter
    if (!w) return
    if (this.buffered >= w.n) {
      this.waiter = undefined
      w.resolve(this.take(w.n))
      if (this.buffered <= this.maxRead) this.socket.resume()
    } else if (this.ended) {
      this.waiter = undefined
      w.reject(new NbdConnectionError(`${this.ended.message} after ${this.buffered} of ${w.n} bytes`))
    }
  }

  private take(n: number): Buffer {
    const first = this.chunks[0]!
    if (first.length >= n) {
      const out = first.subarray(0, n)
      if (first.length === n) this.chunks.shift()
      else this.chunks[0] = first.subarray(n)
      this.buffered -= n
      return out
    }
    const out = Buffer.allocUnsafe(n)
    let at = 0
    while (at < n) {
      const c = this.chunks[0]!
      const k = Math.min(c.length, n - at)
      c.copy(out, at, 0, k)
      at += k
      if (k === c.length) this.chunks.shift()
      else this.chunks[0] = c.subarray(k)
    }
    this.buffered -= n
    return out
  }

  private close(e: Error): void {
    if (!this.ended) this.ended = e
    this.wake()
  }
}
