// Decodes stored chunk objects in the worker pool, several per message.
//
// Callers hand over one object at a time (as its load completes); objects
// that arrive while every worker is busy wait here and leave together, up to
// MAX_BATCH_ITEMS / MAX_BATCH_BYTES per message. So when decoding is the
// bottleneck each message carries many chunks (fewer messages, fewer wake-
// ups on both sides), and when loading is, each object leaves at once.
// Every worker has up to SLOTS_PER_WORKER messages queued, so it never waits
// for the main thread between two batches. Objects go to the worker by
// transfer (not copied) unless the caller keeps them; plaintexts come back
// the same way.
//
// Plaintext buffers the caller is done with come back through giveBack()
// and go to the worker with the next batch, which fills them instead of
// allocating: a restore then reuses the same few MiB instead of handing the
// main thread a new buffer for every block (whose garbage collection was the
// main thread's largest cost).
//
// A batch fails as a whole when one of its chunks is bad. Its items are then
// rejected with BatchFailed, and their callers decode again alone (the
// object was moved to the worker, so they load it again): the error a caller
// finally sees is its own chunk's, not a neighbour's.
import type {ChunkPool} from '../chunk/pool.js'

export const MAX_BATCH_ITEMS = 16
export const MAX_BATCH_BYTES = 4 * 1024 * 1024
export const SLOTS_PER_WORKER = 2
/** Spare plaintext buffers kept for reuse at most. */
export const MAX_SPARE = 64

export interface UnpackOptions {
  /** Largest plaintext accepted (the block size). */
  maxSize: number
  /** Re-hash every plaintext and compare it with its id. */
  rehash: boolean
}

/** A batch failed because of one of its chunks, maybe not this one: decode this one alone to know. */
export class BatchFailed extends Error {
  constructor(readonly original: unknown) {
    super('a batch of chunks failed to decode')
  }
}

interface Item {
  name: string
  data: Buffer
  digest: Buffer
  /** The caller keeps `data`: copy it to the worker instead of moving it. */
  keep: boolean
  resolve(plain: Buffer): void
  reject(err: unknown): void
}

export class UnpackBatcher {
  /** Worker messages sent, and chunks decoded through them (for tests and profiles). */
  messages = 0
  decoded = 0
  /** Plaintexts written into a buffer given back rather than a new one. */
  reused = 0
  private readonly waiting: Item[] = []
  private inFlight = 0
  private scheduled = false
  private readonly slots: number
  private readonly spare: ArrayBuffer[] = []

  constructor(
    private readonly pool: ChunkPool,
    private readonly opts: UnpackOptions,
  ) {
    this.slots = pool.size * SLOTS_PER_WORKER
  }

  /**
   * The verified plaintext of the object `data` stored as `name` with id
   * `digest`. `alone` sends it in a message of its own (after BatchFailed).
   */
  decode(name: string, data: Buffer, digest: Buffer, opts: {keep?: boolean; alone?: boolean} = {}): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const item: Item = {name, data, digest, keep: opts.keep ?? false, resolve, reject}
      if (opts.alone) {
        this.inFlight++
        this.send([item])
        return
      }
      this.waiting.push(item)
      this.schedule()
    })
  }

  /**
   * `plain`, a plaintext this batcher returned, is no longer used by anyone:
   * its memory may hold a later chunk. Only whole buffers of maxSize bytes are kept.
   */
  giveBack(plain: Buffer): void {
    const ab = plain.buffer as ArrayBuffer
    if (plain.byteOffset !== 0 || ab.byteLength !== this.opts.maxSize || this.spare.length >= MAX_SPARE) return
    if (ab.byteLength === 0 || this.spare.includes(ab)) return
    this.spare.push(ab)
  }

  /**
   * Dispatch after the current I/O phase, so that loads completing together
   * share a message; at once if nothing else would run it.
   */
  private schedule(): void {
    if (this.scheduled || this.inFlight >= this.slots) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      this.pump()
    })
  }

  private pump(): void {
    while (this.waiting.length > 0 && this.inFlight < this.slots) {
      this.inFlight++
      this.send(this.takeBatch())
    }
  }

  private takeBatch(): Item[] {
    // Share what waits between the free slots rather than filling the first.
    const free = Math.max(1, this.slots - this.inFlight + 1)
    const want = Math.min(MAX_BATCH_ITEMS, Math.max(1, Math.ceil(this.waiting.length / free)))
    const batch: Item[] = []
    let bytes = 0
    while (this.waiting.length > 0 && batch.length < want && (batch.length === 0 || bytes + this.waiting[0]!.data.length <= MAX_BATCH_BYTES)) {
      const item = this.waiting.shift()!
      bytes += item.data.length
      batch.push(item)
    }
    return batch
  }

  private send(batch: Item[]): void {
    this.messages++
    this.unpack(batch).then(
      (plain) => {
        this.decoded += batch.length
        batch.forEach((item, i) => item.resolve(plain[i]!))
      },
      (err: unknown) => {
        for (const item of batch) item.reject(batch.length > 1 ? new BatchFailed(err) : err)
      },
    ).finally(() => {
      this.inFlight--
      this.pump()
    })
  }

  /** The one call into the worker pool: decode `batch` in one message, plaintexts in order. */
  private async unpack(batch: Item[]): Promise<Buffer[]> {
    const transfer = new Set<ArrayBuffer>()
    for (const {data, keep} of batch) {
      // Only a buffer that is all of its ArrayBuffer can move; small ones share Node's pool and are copied.
      if (!keep && data.byteOffset === 0 && data.buffer.byteLength === data.length) transfer.add(data.buffer as ArrayBuffer)
    }
    const items = batch.map(({name, data, digest}) => ({name, data, digest}))
    const spare = this.spare.splice(0, batch.length)
    this.reused += spare.length
    for (const ab of spare) transfer.add(ab)
    const plain = await this.pool.unpackBatch({items, maxSize: this.opts.maxSize, rehash: this.opts.rehash, spare}, [...transfer])
    if (plain.length !== batch.length) throw new Error('unexpected worker reply to unpack')
    return plain.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength))
  }
}
