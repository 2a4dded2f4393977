// Bandwidth wrapper: holds uploads and downloads to a rate in bytes per
// second, with one token bucket per direction shared by every concurrent
// transfer through this wrapper (so 8 parallel uploads share the limit).
//
// The Backend interface moves whole buffers, so a transfer is paced as a
// unit: the bucket may go into debt by one object, and the next caller waits
// until the debt is paid back. Over any window longer than a few objects the
// rate holds; the burst allowed on top of the rate is kept small (50 ms of
// tokens) so short windows do not overshoot.
//  - save pays for its bytes before sending them;
//  - a ranged load pays before (its size is known); a whole-object load pays
//    after it arrives, which delays the next download instead.
// Metadata calls (stat, list, remove) are not counted.
import {setTimeout as delay} from 'node:timers/promises'
import type {ByteRange, ObjectInfo, StorageBackend, TempObject} from './types.js'

export interface Clock {
  now(): number
  sleep(ms: number): Promise<void>
}

const realClock: Clock = {now: () => performance.now(), sleep: (ms) => delay(ms)}

/** Token bucket in bytes/second; `take` may overdraw, later callers wait. */
export class TokenBucket {
  private tokens: number
  private last: number
  private readonly burst: number

  constructor(
    readonly bytesPerSecond: number,
    private readonly clock: Clock = realClock,
  ) {
    if (!(bytesPerSecond > 0)) throw new RangeError(`rate must be positive, got ${bytesPerSecond}`)
    this.burst = Math.max(1, bytesPerSecond / 20)
    this.tokens = this.burst
    this.last = clock.now()
  }

  /** Reserves n bytes now and resolves when the reservation is covered. */
  async take(n: number): Promise<void> {
    const now = this.clock.now()
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.bytesPerSecond)
    this.last = now
    this.tokens -= n
    if (this.tokens < 0) await this.clock.sleep((-this.tokens / this.bytesPerSecond) * 1000)
  }
}

export interface BandwidthLimits {
  /** Bytes per second; 0 or undefined for no limit. */
  upload?: number
  download?: number
  clock?: Clock
}

export class BandwidthBackend implements StorageBackend {
  readonly create?: () => Promise<void>
  private readonly up?: TokenBucket
  private readonly down?: TokenBucket

  constructor(
    private readonly inner: StorageBackend,
    limits: BandwidthLimits,
  ) {
    if (limits.upload) this.up = new TokenBucket(limits.upload, limits.clock)
    if (limits.download) this.down = new TokenBucket(limits.download, limits.clock)
    if (inner.create) this.create = () => inner.create!()
  }

  get location(): string {
    return this.inner.location
  }

  get isLocal(): boolean | undefined {
    return this.inner.isLocal
  }

  async flush(): Promise<void> {
    await this.inner.flush?.()
  }

  get listTemps(): (() => AsyncIterable<TempObject>) | undefined {
    const inner = this.inner
    return inner.listTemps ? () => inner.listTemps!() : undefined
  }

  /** Waits for upload tokens, then saves; errors and retry safety as the wrapped save. */
  async save(name: string, data: Buffer): Promise<void> {
    await this.up?.take(data.length)
    return this.inner.save(name, data)
  }

  /** Errors and retry safety as the wrapped load. */
  async load(name: string, range?: ByteRange): Promise<Buffer> {
    if (range && this.down) await this.down.take(range.length)
    const data = await this.inner.load(name, range)
    if (!range) await this.down?.take(data.length)
    return data
  }

  stat(name: string): Promise<ObjectInfo | null> {
    return this.inner.stat(name)
  }

  list(prefix: string): AsyncIterable<ObjectInfo> {
    return this.inner.list(prefix)
  }

  remove(name: string): Promise<void> {
    return this.inner.remove(name)
  }

  close(): Promise<void> {
    return this.inner.close()
  }
}
