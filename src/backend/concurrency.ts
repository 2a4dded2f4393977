// Concurrency wrapper: at most `limit` calls reach the wrapped backend at
// once; the rest wait in FIFO order. It bounds connections and memory (each
// in-flight save holds its buffer) whatever the callers above do.
//
// A listing holds a slot only while it fetches its next entry, not while the
// caller handles it, so a caller may load objects while iterating a listing
// even with a limit of 1 without deadlocking.
import {Semaphore} from '../flow/semaphore.js'
import type {ByteRange, ObjectInfo, StorageBackend, TempObject} from './types.js'

export class ConcurrencyBackend implements StorageBackend {
  readonly create?: () => Promise<void>
  private readonly slots: Semaphore

  constructor(
    private readonly inner: StorageBackend,
    limit: number,
  ) {
    if (!(limit >= 1)) throw new RangeError(`concurrency limit must be at least 1, got ${limit}`)
    this.slots = new Semaphore(limit)
    if (inner.create) this.create = () => this.slots.with(() => inner.create!())
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

  /** Errors and retry safety as the wrapped backend's save. */
  save(name: string, data: Buffer): Promise<void> {
    return this.slots.with(() => this.inner.save(name, data))
  }

  /** Errors and retry safety as the wrapped backend's load. */
  load(name: string, range?: ByteRange): Promise<Buffer> {
    return this.slots.with(() => this.inner.load(name, range))
  }

  stat(name: string): Promise<ObjectInfo | null> {
    return this.slots.with(() => this.inner.stat(name))
  }

  remove(name: string): Promise<void> {
    return this.slots.with(() => this.inner.remove(name))
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const it = this.inner.list(prefix)[Symbol.asyncIterator]()
    let finished = false
    try {
      for (;;) {
        const step = await this.slots.with(() => it.next())
        if (step.done) {
          finished = true
          return
        }
        yield step.value
      }
    } finally {
      if (!finished) await it.return?.()
    }
  }

  close(): Promise<void> {
    return this.inner.close()
  }
}
