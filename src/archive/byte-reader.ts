// Exact reads from a forward-only byte stream (a pipe, a tape, stdin): the
// forward ZIP parser asks for "the next n bytes" and gets them or a
// truncation error naming what it was reading. Nothing is read ahead beyond
// the stream's own chunks, and nothing is kept once handed out.
import type {Readable} from 'node:stream'
import {DataError, toVdsnapError} from '../errors.js'

export class ByteReader {
  private chunks: Buffer[] = []
  private buffered = 0
  private ended = false
  private readonly it: AsyncIterator<Buffer>
  /** Bytes handed out so far (the offset in the archive of the next byte). */
  position = 0

  constructor(
    input: Readable | AsyncIterable<Buffer>,
    readonly describe: string,
  ) {
    this.it = (input as AsyncIterable<Buffer>)[Symbol.asyncIterator]()
  }

  /** Reads until `n` bytes are buffered or the stream ends; returns how many are buffered. */
  private async fill(n: number): Promise<number> {
    while (this.buffered < n && !this.ended) {
      let r: IteratorResult<Buffer>
      try {
        r = await this.it.next()
      } catch (e) {
        throw toVdsnapError(e, `reading ${this.describe}`)
      }
      if (r.done) this.ended = true
      else if (r.value.length > 0) {
        const b = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value)
        this.chunks.push(b)
        this.buffered += b.length
      }
    }
    return this.buffered
  }

  /** Up to `n` bytes without consuming them (fewer only at the end of the stream). */
  async peek(n: number): Promise<Buffer> {
    await this.fill(n)
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks)
    this.chunks = all.length > 0 ? [all] : []
    return all.subarray(0, Math.min(n, all.length))
  }

  /** Exactly `n` bytes; a DataError saying the archive is truncated when the stream ends first. */
  async read(n: number, what: string): Promise<Buffer> {
    if ((await this.fill(n)) < n) {
      throw new DataError(`${this.describe} is truncated: it ends inside ${what} at byte ${this.position + this.buffered}`, {
        code: 'ARCHIVE_CORRUPT',
        offset: this.position + this.buffered,
        hint: 'the archive was cut short; use a complete copy',
      })
    }
    let out: Buffer
    const head = this.chunks[0]!
    if (head.length >= n) {
      out = head.subarray(0, n)
      if (head.length === n) this.chunks.shift()
      else this.chunks[0] = head.subarray(n)
    } else {
      out = Buffer.allocUnsafe(n)
      let o = 0
      while (o < n) {
        const c = this.chunks[0]!
        const take = Math.min(c.length, n - o)
        c.copy(out, o, 0, take)
        o += take
        if (take === c.length) this.chunks.shift()
        else this.chunks[0] = c.subarray(take)
      }
    }
    this.buffered -= n
    this.position += n
    return out
  }

  /** Reads and drops everything left; returns the bytes and whether any was non-zero. */
  async drain(): Promise<{bytes: number; nonZero: boolean}> {
    let bytes = 0
    let nonZero = false
    for (;;) {
      await this.fill(1)
      if (this.buffered === 0) return {bytes, nonZero}
      for (const c of this.chunks) {
        bytes += c.length
        if (!nonZero && c.some((x) => x !== 0)) nonZero = true
      }
      this.position += this.buffered
      this.chunks = []
      this.buffered = 0
    }
  }
}
