// The chunk store: the one place that knows how chunks are kept. Callers ask
// for chunks by id only; how they are laid out in storage is this file's
// business (format 1: one object per chunk, `chunks/<aa>/<id>`, <aa> = the
// first two hex digits of the id; with pack files, puts may be buffered into
// packs, so no caller may assume one object per chunk).
//
// - ChunkCodec: the keys and the worker pool: ids (digests under the id
//   key), encoding (zstd + AES-256-GCM sealed under the chunk's name) and
//   decoding with verification. An archive's chunks use one too.
// - ChunkStore: a codec over a storage backend, plus the set of chunks known
//   to be stored (filled as chunks are seen or saved).
//
// Durability: put() saves each chunk atomically (the backend's contract);
// flush() makes everything put so far durable, and must be called before
// anything that refers to those chunks (an index) is written.
import {chunkDigest} from '../chunk/digest.js'
import {chunkObjectSizeBounds} from '../chunk/object-codec.js'
import {ChunkPool, type PoolKeys} from '../chunk/pool.js'
import type {Result} from '../chunk/pool-protocol.js'
import {DataError, NotFoundError} from '../errors.js'
import type {StorageBackend} from '../backend/types.js'

/** The name a chunk is sealed under (its envelope's AAD) and, in format 1, stored under. */
export function chunkObjectName(id: string): string {
  return `chunks/${id.slice(0, 2)}/${id}`
}

const CHUNK_NAME = /^chunks\/([0-9a-f]{2})\/(\1[0-9a-f]{62})$/

export interface StoredChunk {
  id: string
  /** Bytes it takes in storage (its envelope: compressed, encrypted). */
  size: number
}

export interface PutResult {
  /** False when the chunk was stored already (nothing was written). */
  isNew: boolean
  /** Bytes written (0 when not new). */
  storedSize: number
}

/** A chunk to put: its object as stored elsewhere under the same keys, or its plaintext (encoded here). */
export type ChunkData = {encoded: Buffer} | {plain: Uint8Array}

export interface DecodeOptions {
  /** Re-hash the plaintext (default); false leaves encrypted chunks to their GCM tag. */
  rehash?: boolean
  /** Let `object` move to the worker (when it owns its whole buffer); the caller must not use it after. */
  transfer?: boolean
}

export class ChunkCodec {
  private pool?: ChunkPool

  constructor(
    private readonly keys: PoolKeys,
    readonly level: number,
    /** Largest plaintext a chunk may hold (the block size). */
    readonly maxSize: number,
  ) {}

  get encrypted(): boolean {
    return this.keys.encKey !== undefined
  }

  /** Worker threads of the pool: callers size what they keep in flight by it. */
  get workers(): number {
    return this.workerPool().size
  }

  /** The id of a plaintext chunk, computed in this thread (small jobs; bulk work uses hash()). */
  digest(plain: Uint8Array): Buffer {
    return chunkDigest(plain, this.keys.idKey)
  }

  /** True when chunks encoded under `keys` decode here under the same ids (their objects can be put as they are). */
  sharesKeysWith(keys: PoolKeys | null | undefined): boolean {
    if (!keys?.encKey || !keys.idKey) return !this.encrypted
    return this.keys.encKey !== undefined && this.keys.idKey !== undefined && keys.encKey.equals(this.keys.encKey) && keys.idKey.equals(this.keys.idKey)
  }

  /** Sizes a stored chunk of a `length`-byte block can have (check flags others without reading them). */
  storedSizeBounds(length: number): {min: number; max: number} {
    return chunkObjectSizeBounds(length, this.encrypted)
  }

  /** Ids of every `blockSize` block of buf[0, length) in the pool (all zero for a zero block); `buf` comes back in the result. */
  hash(buf: ArrayBuffer, length: number, blockSize: number): Promise<Result<'hash'>> {
    return this.workerPool().hash(buf, length, blockSize)
  }

  /** The stored form of the plaintexts buf[start, end) of chunks `id`, in the pool; `buf` comes back in the result. */
  encode(buf: ArrayBuffer, items: {start: number; end: number; id: string}[]): Promise<Result<'pack'>> {
    return this.workerPool().pack(
      buf,
      items.map(({start, end, id}) => ({start, end, name: chunkObjectName(id)})),
    )
  }

  /** The verified plaintext of chunk `id` from its stored form (DataError when it is damaged). */
  async decode(id: string, object: Buffer, opts: DecodeOptions = {}): Promise<Buffer> {
    const transfer = (opts.transfer ?? false) && object.byteOffset === 0 && object.buffer.byteLength === object.length
    const [plain] = await this.workerPool().unpack([{name: chunkObjectName(id), data: object, digest: Buffer.from(id, 'hex')}], {
      maxSize: this.maxSize,
      rehash: opts.rehash ?? true,
      transfer,
    })
    return Buffer.from(plain!.buffer, plain!.byteOffset, plain!.byteLength)
  }

  async close(): Promise<void> {
    await this.pool?.close()
    this.pool = undefined
  }

  /** The worker pool that decodes these chunks (restore batches several per message: unpack-batcher.ts). */
  decodePool(): ChunkPool {
    return this.workerPool()
  }

  private workerPool(): ChunkPool {
    this.pool ??= new ChunkPool(this.keys, this.level)
    return this.pool
  }
}

export class ChunkStore extends ChunkCodec {
  /** Ids of chunks known to be stored. Memory: one id string per stored chunk. */
  private readonly known = new Set<string>()
  /** Ids has() found missing by asking the storage, until they are put (so a put after has() asks nothing more). */
  private readonly absent = new Set<string>()
  private readonly putting = new Map<string, Promise<PutResult>>()
  private listing?: Promise<void>

  constructor(
    private readonly backend: StorageBackend,
    keys: PoolKeys,
    level: number,
    maxSize: number,
  ) {
    super(keys, level, maxSize)
  }

  /** Where chunk `id` is (or would be) stored, for messages and findings. */
  objectName(id: string): string {
    return chunkObjectName(id)
  }

  /**
   * True when the chunk is stored (non-empty). On a local backend each
   * question is one stat; on a remote one, a request per chunk would double
   * the requests of a backup, so the first question lists the chunks once
   * (one request per 1000 objects on S3) and later ones are answered from
   * that listing plus what this process stored since.
   */
  async has(id: string): Promise<boolean> {
    if (this.known.has(id)) return true
    if (!this.backend.isLocal) {
      this.listing ??= this.learnStored()
      await this.listing
      return this.known.has(id)
    }
    if (this.absent.has(id)) return false
    const st = await this.backend.stat(chunkObjectName(id))
    if (st !== null && st.size > 0) this.known.add(id)
    else this.absent.add(id)
    return st !== null && st.size > 0
  }

  /** Stores chunk `id` unless it is stored already; concurrent puts of one id write it once. */
  async put(id: string, data: ChunkData): Promise<PutResult> {
    if (this.known.has(id)) return {isNew: false, storedSize: 0}
    const busy = this.putting.get(id)
    if (busy) {
      await busy.catch(() => {}) // a failed put is retried by this one
      return this.put(id, data)
    }
    const p = this.store(id, data)
    this.putting.set(id, p)
    try {
      return await p
    } finally {
      this.putting.delete(id)
    }
  }

  /** The verified plaintext of chunk `id`. */
  async get(id: string, opts: Omit<DecodeOptions, 'transfer'> = {}): Promise<Buffer> {
    return this.decode(id, await this.getObject(id), {...opts, transfer: true})
  }

  /** Chunk `id` as stored (compressed, encrypted), for export and copy; DataError when missing. */
  async getObject(id: string): Promise<Buffer> {
    try {
      return await this.backend.load(chunkObjectName(id))
    } catch (e) {
      if (e instanceof NotFoundError) {
        throw new DataError(`chunk ${id.slice(0, 16)}… is missing from ${this.backend.location}`, {hint: 'run "vdsnap check" to find the damaged snapshots', code: 'CHUNK_MISSING', object: chunkObjectName(id)})
      }
      throw e
    }
  }

  /** Every stored chunk with its stored size, in id order (an empty object shows with size 0). */
  async *list(): AsyncGenerator<StoredChunk> {
    for await (const obj of this.backend.list('chunks/')) {
      const m = CHUNK_NAME.exec(obj.name)
      if (m) yield {id: m[2]!, size: obj.size}
    }
  }

  /** Deletes chunk `id` (prune, under the exclusive lock). A missing one is not an error. */
  async remove(id: string): Promise<void> {
    this.known.delete(id)
    await this.backend.remove(chunkObjectName(id))
  }

  /** Makes every chunk put so far durable; call before writing what refers to them. */
  async flush(): Promise<void> {
    await Promise.allSettled(this.putting.values())
    await this.backend.flush?.()
  }

  private async store(id: string, data: ChunkData): Promise<PutResult> {
    if (await this.has(id)) return {isNew: false, storedSize: 0}
    const obj = 'encoded' in data ? data.encoded : await this.encodeOne(id, data.plain)
    await this.backend.save(chunkObjectName(id), obj)
    this.absent.delete(id)
    this.known.add(id)
    return {isNew: true, storedSize: obj.length}
  }

  private async encodeOne(id: string, plain: Uint8Array): Promise<Buffer> {
    const own = new Uint8Array(plain.byteLength) // the caller keeps its buffer; this copy moves to the worker
    own.set(plain)
    const {objects} = await this.encode(own.buffer, [{start: 0, end: own.byteLength, id}])
    const o = objects[0]!
    return Buffer.from(o.buffer, o.byteOffset, o.byteLength)
  }

  private async learnStored(): Promise<void> {
    for await (const c of this.list()) if (c.size > 0) this.known.add(c.id)
  }
}
