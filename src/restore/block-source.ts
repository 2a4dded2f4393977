// A snapshot's blocks as plaintext, for every reader of a snapshot: restore
// (in offset order), export (in offset order) and serving (random access).
//
// 1. open() resolves the chain to one entry per block (metadata only).
// 2. blocks() walks the wanted blocks in offset order with a prefetch window
//    of about `prefetchBytes`: chunk objects are loaded in parallel and
//    decrypted, decompressed and verified in the worker pool (the digest of
//    every plaintext is recomputed and compared with its id unless `rehash`
//    is false, which leaves encrypted chunks to their GCM tag).
// 3. A chunk used at several offsets is loaded once while its uses are in
//    flight, and kept in a small LRU after that; memory stays bounded by the
//    window plus the cache, whatever the disk's size.
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
import {ZERO_ID} from '../chunk/digest.js'
import {LruCache} from '../disk/lru-cache.js'
import {DataError} from '../errors.js'
import {entryAt, resolveSnapshot, type ResolvedIndex} from '../repo/chain.js'
import {chunkObjectName} from '../repo/chunk-store.js'
import type {Manifest} from '../repo/manifest.js'
import type {Repository} from '../repo/repository.js'

/** Where a BlockSource gets chunks from: a repository's ChunkStore, or an archive's chunks. */
export interface ChunkReader {
  /** Chunk `idHex` as stored, first needed for block `atBlock`. */
  getObject(idHex: string, atBlock: number): Promise<Buffer>
  /** Its verified plaintext (in the worker pool); with `transfer`, `object` may move there. */
  decode(idHex: string, object: Buffer, opts: {rehash: boolean; transfer: boolean}): Promise<Buffer>
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

export const PREFETCH_BYTES = 16 * 1024 * 1024
export const CACHE_BYTES = 8 * 1024 * 1024
/** Sequential readers read() tracks at once; the least recent is forgotten. */
export const MAX_STREAMS = 8

export class BlockSource {
  chunksRead = 0
  bytesFetched = 0
  /** Blocks read() started loading before they were asked for. */
  blocksReadAhead = 0
  private readonly cache: LruCache<string, Buffer>
  private readonly inflight = new Map<string, Promise<Buffer>>()
  private readonly rehash: boolean
  private readonly prefetchBytes: number
  private readonly readAheadBlocks: number
  /** The last block each recent sequential reader asked for. */
  private readonly streams: number[] = []
  private readonly stored: Map<string, Buffer> | null

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

  /** Decoded bytes the cache holds now (bounded by `cacheBytes`, whatever the disk's size). */
  get cachedBytes(): number {
    let n = 0
    for (const buf of this.cache.values()) n += buf.length
    return n
  }

  /** The chunk id of block `b` (all zero for a zero block); a view, do not keep it. */
  entry(b: number): Buffer {
    return entryAt(this.resolved.entries, b)
  }

  isZero(b: number): boolean {
    return this.entry(b).equals(ZERO_ID)
  }

  blockLength(b: number): number {
    return Math.min(this.blockSize, this.virtualSize - b * this.blockSize)
  }

  /** The wanted blocks from `from` to `to` (exclusive), in offset order, prefetched. */
  async *blocks(wanted: (b: number) => boolean = () => true, from = 0, to = this.blockCount): AsyncGenerator<Block> {
    const windowBlocks = Math.max(4, Math.floor(this.prefetchBytes / this.blockSize))
    const queue: {index: number; data: Promise<Buffer> | null}[] = []
    let next = from
    const fill = () => {
      while (queue.length < windowBlocks && next < to) {
        const b = next++
        if (!wanted(b)) continue
        const data = this.isZero(b) ? null : this.fetch(this.entry(b).toString('hex'), b)
        data?.catch(() => {}) // surfaced when awaited below
        queue.push({index: b, data})
      }
    }
    fill()
    while (queue.length > 0) {
      const {index, data} = queue.shift()!
      const length = this.blockLength(index)
      const buf = data === null ? null : await data
      if (buf) this.settle(index, buf)
      fill()
      yield {index, offset: index * this.blockSize, length, data: buf}
    }
  }

  /** One block by number (random access), through the cache; null for a zero block. */
  async read(b: number): Promise<Buffer | null> {
    if (b < 0 || b >= this.blockCount) throw new RangeError(`block ${b} is outside the disk (0..${this.blockCount - 1})`)
    this.readAhead(b)
    if (this.isZero(b)) return null
    const buf = await this.fetch(this.entry(b).toString('hex'), b)
    this.settle(b, buf)
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
    if (buf.length !== len) throw new DataError(`chunk for block ${b} holds ${buf.length} bytes, expected ${len}`, {hint: 'run "vdsnap check --read-data"', code: 'CHUNK_CORRUPT', object: chunkObjectName(this.entry(b).toString('hex'))})
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
    const obj = await this.reader.getObject(hex, atBlock)
    this.chunksRead++
    this.bytesFetched += obj.length
    // A kept object must stay readable here, so it is copied to the worker, not moved.
    this.stored?.set(hex, obj)
    return this.reader.decode(hex, obj, {rehash: this.rehash, transfer: !this.stored})
  }
}
