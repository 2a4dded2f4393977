// A raw disk read once, front to back, from a stream (stream-source.ts).
// The backup reads it like any image, with three differences:
//  1. its size is given (--size, or the disk's previous snapshot), never
//     discovered: every byte is "allocated" and read; zero blocks still cost
//     nothing to store (the hashing workers recognise them);
//  2. reads must come in ascending, contiguous order (the backup's batches
//     do); they are served one at a time from the stream, so memory is the
//     stream's own buffer plus the caller's batches;
//  3. endOfRead() checks that the stream ends exactly at the size and that
//     its producer succeeded: a shorter stream is a DataError (never a
//     silently shorter disk), a longer one too, and a failing command its
//     own error. With an idle time-out, a producer that sends nothing for
//     that long is stopped and the backup fails.
import {DataError, IoError, VdsnapError} from '../errors.js'
import type {StreamSource} from './stream-source.js'
import type {DiskImage, ImageInfo, Range} from './types.js'

export class StreamImage implements DiskImage {
  readonly format = 'raw'
  readonly path: string
  private pos = 0
  private pending: Buffer | undefined
  private queue: Promise<unknown> = Promise.resolve()
  private readonly chunks: AsyncIterator<Buffer>
  private ended = false

  constructor(
    readonly source: StreamSource,
    readonly virtualSize: number,
    private readonly idleTimeoutMs?: number,
  ) {
    this.path = source.label
    this.chunks = source.stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>
  }

  async allocatedRanges(): Promise<Range[]> {
    return this.virtualSize > 0 ? [{offset: 0, length: this.virtualSize}] : []
  }

  read(buf: Buffer, offset: number, length = buf.length): Promise<number> {
    const run = this.queue.then(() => this.readInOrder(buf, offset, length))
    this.queue = run.catch(() => undefined)
    return run
  }

  private async readInOrder(buf: Buffer, offset: number, length: number): Promise<number> {
    if (offset !== this.pos) throw new VdsnapError(`internal: stream ${this.path} read at ${offset}, expected ${this.pos} (streams are read in order)`)
    if (offset + length > this.virtualSize) throw new DataError(`${this.path}: read of ${length} bytes at ${offset} is past the size ${this.virtualSize}`, {code: 'IMAGE_BOUNDS', object: this.path, offset})
    let at = 0
    while (at < length) {
      const chunk = await this.nextChunk()
      if (!chunk) await this.short(offset + at)
      const n = Math.min(chunk!.length, length - at)
      chunk!.copy(buf, at, 0, n)
      this.pending = n < chunk!.length ? chunk!.subarray(n) : undefined
      at += n
    }
    this.pos += length
    return length
  }

  /** The stream ended at `got` bytes: the producer's own failure first, else a short-stream error. */
  private async short(got: number): Promise<never> {
    await this.withIdleTimeout(this.source.finished(), 'to finish')
    throw new DataError(`${this.path}: the stream ended after ${got} bytes, but the disk is ${this.virtualSize} bytes`, {
      hint: 'the source was cut short or --size is wrong (without --size it is the previous snapshot\'s size); nothing was stored',
    })
  }

  private async nextChunk(): Promise<Buffer | undefined> {
    if (this.pending) {
      const p = this.pending
      this.pending = undefined
      return p
    }
    if (this.ended) return undefined
    let r: IteratorResult<Buffer>
    try {
      r = await this.withIdleTimeout(this.chunks.next(), 'to send data')
    } catch (e) {
      if (e instanceof VdsnapError) throw e
      throw new IoError(`reading ${this.path}: ${(e as Error).message}`, {cause: e})
    }
    if (r.done) {
      this.ended = true
      return undefined
    }
    return Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value)
  }

  private async withIdleTimeout<T>(p: Promise<T>, what: string): Promise<T> {
    if (!this.idleTimeoutMs) return p
    let timer: NodeJS.Timeout | undefined
    let timedOut = false
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        timedOut = true
        reject(new IoError(`${this.path}: the source waited more than ${this.idleTimeoutMs! / 1000}s ${what} (--source-timeout); it was stopped`, {
          hint: 'check that the source is not stuck (ssh waiting for a password, a hung device), or raise --source-timeout; nothing was stored',
        }))
      }, this.idleTimeoutMs)
    })
    p.catch(() => undefined)
    try {
      return await Promise.race([p, timeout])
    } catch (e) {
      if (timedOut) await this.source.stop()
      throw e
    } finally {
      clearTimeout(timer)
    }
  }

  /** After the last read: the stream must end here and its producer must have succeeded. */
  async endOfRead(): Promise<void> {
    await this.queue
    if (this.pos !== this.virtualSize) throw new VdsnapError(`internal: stream ${this.path} read up to ${this.pos} of ${this.virtualSize} bytes`)
    const extra = await this.nextChunk()
    if (extra) {
      await this.source.stop()
      throw new DataError(`${this.path}: the stream is longer than the disk's ${this.virtualSize} bytes`, {
        hint: 'give the right --size (without --size it is the previous snapshot\'s size); nothing was stored',
      })
    }
    await this.withIdleTimeout(this.source.finished(), 'to finish')
  }

  async info(): Promise<ImageInfo> {
    return {path: this.path, format: 'raw', virtualSize: this.virtualSize, allocatedBytes: this.virtualSize, parents: [], snapshots: []}
  }

  async close(): Promise<void> {
    await this.source.stop()
  }
}
