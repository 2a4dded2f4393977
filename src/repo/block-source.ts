// A snapshot's blocks as plaintext, for every reader of a snapshot: restore
// (in offset order), export (in offset order) and serving (random access).
//
// 1. open() resolves the chain to one entry per block (metadata only).
// 2. blocks() walks the wanted blocks in offset order with a prefetch window
//    of `prefetchBytes` of non-zero blocks: chunk objects are loaded in
//    parallel and decrypted, decompressed and verified in the worker pool,
//    several per message (unpack-batcher.ts), so loading, decoding on every
//    core and the caller's writing all overlap. The digest of every
//    plaintext is recomputed and compared with its id unless `rehash` is
//    false, which leaves encrypted chunks to their GCM tag.
// 3. A chunk used at several offsets is loaded once while its uses are in
//    flight, and kept in a small LRU after that; memory stays bounded by the
//    window plus the cache, whatever the disk's size.
// 3b. A reader of blocks() that is done with a block's data (written, say)
//    calls release(): once no queued or unreleased block uses that chunk
//    and the cache does not hold it, its buffer is reused for a later chunk
//    (unpack-batcher.ts). Not calling it is always safe, only slower.
// 4. read() gives one block by number through the same cache, for random
//    access. Zero blocks are never read: they come back as null.
// 5. With `readAheadBytes` (serving), read() notices readers that go through
//    the disk in order (up to MAX_STREAMS at once, e.g. one per connection)
//    and loads the blocks ahead of each into the cache before they are asked
//    for. Without it (restore) read() never loads more than it is asked.
// 6. Chunks come from a ChunkReader: the repository's chunk store, or an
//    archive's (a seekable file read by entry, or a pipe read in one pass:
//    the reader is told which block a load is for, so it can let go of
//    chunks no later block uses).
import {LruCache} from '../disk/lru-cache.js'
import {DataError} from '../errors.js'
import {resolveSnapshot, type ResolvedIndex} from '../repo/chain.js'
import {chunkObjectName} from '../repo/chunk-store.js'
import type {Manifest} from '../repo/manifest.js'
import type {ChunkPool} from '../chunk/pool.js'
import type {Repository} from '../repo/repository.js'
import {BatchFailed, UnpackBatcher} from './unpack-batcher.js'

/** Where a BlockSource gets chunks from: a repository's ChunkStore, or an archive's chunks. */
export interface ChunkReader {
  /** Chunk `idHex` as stored, first needed for block `atBlock`. */
  getObject(idHex: string, atBlock: number): Promise<Buffer>
  /** The worker pool that decodes and verifies its chunks (with their keys), several per message. */
  decodePool(): ChunkPool
}

export interface BlockSourceOptions {
  /** Re-hash every chunk (default); false trusts the GCM tag of encrypted chunks. */
  rehash?: boolean
  prefetchBytes?: number
  cacheBytes?: number
  /** Sequential read() callers get this much loaded ahead of them (0: none). */
  readAheadBytes?: number
  /** Keep each loaded chunk object as stored, for takeStored() (export). */
  keepStored?: boolean
}

export interface Block {
  index: number
  offset: number
  length: number
  /** The block's plaintext, or null for a zero block. */
  data: Buffer | null
}

/**
 * Decoded bytes blocks() keeps ahead of its reader: enough for every worker
 * to hold two full batches (unpack-batcher.ts) with loads queued behind them.
 */
export const PREFETCH_BYTES = 32 * 1024 * 1024
/** Entries blocks() queues ahead at most, zero blocks included (they take no window bytes). */
const MAX_QUEUED_BLOCKS = 4096
export const CACHE_BYTES = 8 * 1024 * 1024
/** Sequential readers read() tracks at once; the least recent is forgotten. */
export const MAX_STREAMS = 8

export class BlockSource {
  chunksRead = 0
  bytesFetched = 0
  /** Blocks read() started loading before they were asked for. */
  blocksReadAhead = 0
  private readonly decoder: UnpackBatcher
  private readonly cache: LruCache<string, Buffer>
  private readonly inflight = new Map<string, Promise<Buffer>>()
  private readonly rehash: boolean
  private readonly prefetchBytes: number
  private readonly readAheadBlocks: number
  /** The last block each recent sequential reader asked for. */
  private readonly streams: number[] = []
  private readonly stored: Map<string, Buffer> | null
  /** Per chunk, the blocks() entries queued or yielded and not yet released. */
  private readonly uses = new Map<string, number>()
  /** Buffers read() handed out: their holders are unknown, so they are never reused. */
  private readonly escaped = new WeakSet<ArrayBufferLike>()

  private constructor(
    private readonly reader: ChunkReader,
    readonly snapshot: Manifest,
    readonly resolved: ResolvedIndex,
    opts: BlockSourceOptions,
    /** Releases what the reader holds, when this source owns it (an archive's). */
    private readonly closeReader?: () => Promise<void>,
  ) {
    this.rehash = opts.rehash ?? true
    this.prefetchBytes = opts.prefetchBytes ?? PREFETCH_BYTES
    this.readAheadBlocks = Math.floor((opts.readAheadBytes ?? 0) / resolved.blockSize)
    this.cache = new LruCache(Math.max(2, Math.floor((opts.cacheBytes ?? CACHE_BYTES) / resolved.blockSize)))
    this.stored = opts.keepStored ? new Map() : null
    this.decoder = new UnpackBatcher(reader.decodePool(), {maxSize: resolved.blockSize, rehash: this.rehash})
  }

  static async open(repo: Repository, snap: Manifest, opts: BlockSourceOptions = {}): Promise<BlockSource> {
    return new BlockSource(repo.chunks, snap, await resolveSnapshot(repo, snap), opts)
  }

  /** A source over an index resolved elsewhere (an archive's), reading chunks from `reader`; close() closes it. */
  static fromResolved(reader: ChunkReader & {close(): Promise<void>}, snap: Manifest, resolved: ResolvedIndex, opts: BlockSourceOptions = {}): BlockSource {
    return new BlockSource(reader, snap, resolved, opts, () => reader.close())
  }

  /** With keepStored: the chunk object as stored, once, after its block was yielded; undefined otherwise. */
  takeStored(idHex: string): Buffer | undefined {
    const obj = this.stored?.get(idHex)
    this.stored?.delete(idHex)
    return obj
  }

  get blockSize(): number {
    return this.resolved.blockSize
  }

  get blockCount(): number {
    return this.resolved.blockCount
  }

  get virtualSize(): number {
    return this.resolved.virtualSize
  }

  /** Worker messages sent, chunks decoded through them, and chunks decoded into a released buffer. */
  get decodeStats(): {messages: number; decoded: number; reused: number} {
    return {messages: this.decoder.messages, decoded: this.decoder.decoded, reused: this.decoder.reused}
  }

  /** Decoded bytes the cache holds now (bounded by `cacheBytes`, whatever the disk's size). */
  get cachedBytes(): number {
    let n = 0
    for (const buf of this.cache.values()) n += buf.length
    return n
  }

  /** The chunk id of block `b` (all zero for a zero block); a view, do not keep it. */
  entry(b: number): Buffer {
    return this.resolved.entries.entry(b)
  }

  isZero(b: number): boolean {
    return this.resolved.entries.isZero(b)
  }

  blockLength(b: number): number {
    return Math.min(this.blockSize, this.virtualSize - b * this.blockSize)
  }

  /** The wanted blocks from `from` to `to` (exclusive), in offset order, prefetched. */
  async *blocks(wanted: (b: number) => boolean = () => true, from = 0, to = this.blockCount): AsyncGenerator<Block> {
    // Window in bytes of non-zero blocks, so it means the same at every block size; at least 4 blocks.
    const windowBytes = Math.max(this.prefetchBytes, 4 * this.blockSize)
    const queue: {index: number; data: Promise<Buffer> | null}[] = []
    let queuedBytes = 0
    let next = from
    const fill = () => {
      while (next < to && queuedBytes < windowBytes && queue.length < MAX_QUEUED_BLOCKS) {
        const b = next++
        if (!wanted(b)) continue
        const hex = this.isZero(b) ? null : this.entry(b).toString('hex')
        const data = hex === null ? null : this.fetch(hex, b)
        data?.catch(() => {}) // surfaced when awaited below
        if (hex !== null) {
          queuedBytes += this.blockSize
          this.uses.set(hex, (this.uses.get(hex) ?? 0) + 1)
        }
        queue.push({index: b, data})
      }
    }
    fill()
    while (queue.length > 0) {
      const {index, data} = queue.shift()!
      const length = this.blockLength(index)
      const buf = data === null ? null : await data
      if (buf) {
        queuedBytes -= this.blockSize
        this.settle(index, buf)
      }
      fill()
      yield {index, offset: index * this.blockSize, length, data: buf}
    }
  }

  /**
   * The reader of blocks() is done with `block`'s data (yielded by blocks()
   * of this source, once for each yield): its buffer may be reused once no
   * other block needs it.
   */
  release(block: Block): void {
    if (block.data === null) return
    const hex = this.entry(block.index).toString('hex')
    const n = (this.uses.get(hex) ?? 0) - 1
    if (n > 0) return void this.uses.set(hex, n)
    this.uses.delete(hex)
    const buf = block.data
    if (n < 0 || this.stored || this.inflight.has(hex) || this.escaped.has(buf.buffer)) return
    // No block in the window needs it any more: reusing its memory beats keeping it cached.
    if (this.cache.has(hex) && this.cache.get(hex) === buf) this.cache.delete(hex)
    this.decoder.giveBack(buf)
  }

  /** One block by number (random access), through the cache; null for a zero block. */
  async read(b: number): Promise<Buffer | null> {
    if (b < 0 || b >= this.blockCount) throw new RangeError(`block ${b} is outside the disk (0..${this.blockCount - 1})`)
    this.readAhead(b)
    if (this.isZero(b)) return null
    const buf = await this.fetch(this.entry(b).toString('hex'), b)
    this.settle(b, buf)
    this.escaped.add(buf.buffer)
    return buf
  }

  /** Starts loading the blocks after `b` when `b` continues a sequential reader. */
  private readAhead(b: number): void {
    if (this.readAheadBlocks === 0) return
    const i = this.streams.findIndex((last) => b === last || b === last + 1)
    if (i < 0) {
      this.streams.push(b)
      if (this.streams.length > MAX_STREAMS) this.streams.shift()
      return
    }
    const moved = this.streams[i] !== b
    this.streams.splice(i, 1)
    this.streams.push(b)
    if (!moved) return
    const last = Math.min(this.blockCount - 1, b + this.readAheadBlocks)
    for (let k = b + 1; k <= last; k++) {
      if (this.isZero(k)) continue
      const hex = this.entry(k).toString('hex')
      if (this.inflight.has(hex) || this.cache.has(hex)) continue
      this.blocksReadAhead++
      this.fetch(hex, k).then(
        (buf) => {
          try {
            this.settle(k, buf)
          } catch {
            // a wrong length fails again, for the reader, when the block is read
          }
        },
        () => {},
      )
    }
  }

  async close(): Promise<void> {
    await this.closeReader?.()
  }

  private settle(b: number, buf: Buffer): void {
    const len = this.blockLength(b)
    if (buf.length !== len) throw new DataError(`chunk for block ${b} holds ${buf.length} bytes, expected ${len}`, {hint: 'run "vdsnap check --read-data"', code: 'CHUNK_CORRUPT', object: chunkObjectName(this.resolved.entries.hex(b))})
    const hex = this.entry(b).toString('hex')
    if (this.inflight.delete(hex)) this.cache.set(hex, buf)
  }

  private fetch(hex: string, atBlock: number): Promise<Buffer> {
    const cached = this.cache.get(hex)
    if (cached) return Promise.resolve(cached)
    let p = this.inflight.get(hex)
    if (!p) {
      p = this.load(hex, atBlock)
      p.catch(() => this.inflight.delete(hex))
      this.inflight.set(hex, p)
    }
    return p
  }

  private async load(hex: string, atBlock: number): Promise<Buffer> {
    const name = chunkObjectName(hex)
    const digest = Buffer.from(hex, 'hex')
    // A kept object must stay readable here, so it is copied to the worker, not moved.
    const keep = this.stored !== null
    try {
      return await this.decoder.decode(name, await this.loadObject(hex, atBlock), digest, {keep})
    } catch (e) {
      if (!(e instanceof BatchFailed)) throw e
      // Another chunk of its batch may be the bad one; the object moved to
      // the worker, so load it again and decode it alone to know.
      const again = await this.loadObject(hex, atBlock).catch(() => Promise.reject(e.original))
      return this.decoder.decode(name, again, digest, {keep, alone: true})
    }
  }

  private async loadObject(hex: string, atBlock: number): Promise<Buffer> {
    const obj = await this.reader.getObject(hex, atBlock)
    this.chunksRead++
    this.bytesFetched += obj.length
    this.stored?.set(hex, obj)
    return obj
  }
}
