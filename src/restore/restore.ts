// Restore by chain replay, data side (the metadata side is repo/chain.ts).
//
// 1. Resolve the wanted snapshot to one entry per block (metadata only).
//    With --delta-from, resolve that snapshot too and keep only the blocks
//    whose entries differ: the target already holds the rest.
// 2. A chunk used at several offsets is read once while its uses are in
//    the prefetch window, and kept in a small LRU cache after that, so
//    memory stays bounded whatever the disk's size.
// 3. Walk the blocks in offset order with a prefetch window: load chunk
//    objects in parallel, decrypt/decompress/verify them in workers (the
//    digest of every plaintext is recomputed and compared with its id;
//    --no-verify-digests leaves encrypted chunks to their GCM tag).
// 4. Write in offset order. Zero blocks become holes in a new file, and are
//    written as zeros on devices, stdout and delta targets (unless
//    --target-zeroed). Files are written under a temporary name and renamed
//    when complete, so a failed restore never leaves a plausible-looking disk.
import {DIGEST_SIZE, ZERO_ID} from '../chunk/digest.js'
import {ChunkPool} from '../chunk/pool.js'
import {LruCache} from '../disk/lru-cache.js'
import {DataError} from '../errors.js'
import {resolveSnapshot} from '../repo/chain.js'
import type {Manifest} from '../repo/manifest.js'
import {Repository} from '../repo/repository.js'
import {openTarget, type RestoreTarget, type TargetOptions} from './targets.js'

export interface RestoreOptions extends TargetOptions {
  snapshot: Manifest
  deltaFrom?: Manifest
  /** Re-hash every chunk (default); false trusts the GCM tag of encrypted chunks. */
  rehash?: boolean
  onProgress?: (bytesDone: number, bytesTotal: number) => void
}

export interface RestoreResult {
  snapshot: string
  target: string
  format: string
  virtualSize: number
  blocksWritten: number
  bytesWritten: number
  zeroBlocks: number
  chunksRead: number
  bytesFetched: number
  durationMs: number
}

export const PREFETCH_BYTES = 16 * 1024 * 1024
export const CACHE_BYTES = 8 * 1024 * 1024

export async function runRestore(repo: Repository, opts: RestoreOptions): Promise<RestoreResult> {
  const started = Date.now()
  const snap = opts.snapshot
  const want = await resolveSnapshot(repo, snap)
  const {blockSize, blockCount, virtualSize} = want
  let wanted: (b: number) => boolean = () => true
  if (opts.deltaFrom) {
    if (opts.deltaFrom.virtualSize !== virtualSize || opts.deltaFrom.blockSize !== blockSize) {
      throw new DataError(`--delta-from ${opts.deltaFrom.id.slice(0, 8)} has another disk geometry than ${snap.id.slice(0, 8)}; restore in full instead`)
    }
    const have = (await resolveSnapshot(repo, opts.deltaFrom)).entries
    wanted = (b) => !entry(want.entries, b).equals(entry(have, b))
  }

  let total = 0
  for (let b = 0; b < blockCount; b++) if (wanted(b)) total += blockLen(b, blockSize, virtualSize)

  const target: RestoreTarget = await openTarget({...opts, virtualSize, delta: opts.deltaFrom !== undefined})
  const pool = new ChunkPool({idKey: repo.idKey, encKey: repo.encKey}, repo.level)
  const result: RestoreResult = {
    snapshot: snap.id,
    target: target.describe,
    format: target.format,
    virtualSize,
    blocksWritten: 0,
    bytesWritten: 0,
    zeroBlocks: 0,
    chunksRead: 0,
    bytesFetched: 0,
    durationMs: 0,
  }
  const cache = new LruCache<string, Buffer>(Math.max(2, Math.floor(CACHE_BYTES / blockSize)))
  const inflight = new Map<string, Promise<Buffer>>()
  const fetch = (hex: string): Promise<Buffer> => {
    const cached = cache.get(hex)
    if (cached) return Promise.resolve(cached)
    let p = inflight.get(hex)
    if (!p) {
      p = (async () => {
        const obj = await repo.loadChunkObject(hex)
        result.chunksRead++
        result.bytesFetched += obj.length
        const reply = await pool.run(
          {op: 'unpack', items: [{name: Repository.chunkName(hex), data: obj, digest: Buffer.from(hex, 'hex')}], maxSize: blockSize, rehash: opts.rehash ?? true},
          obj.byteOffset === 0 && obj.buffer.byteLength === obj.length ? [obj.buffer as ArrayBuffer] : [],
        )
        if (!('plain' in reply)) throw new Error('unexpected worker reply')
        const p0 = reply.plain[0]!
        return Buffer.from(p0.buffer, p0.byteOffset, p0.byteLength)
      })()
      inflight.set(hex, p)
    }
    return p
  }

  try {
    // Prefetch window: a queue of pending block reads, in offset order.
    const windowBlocks = Math.max(4, Math.floor(PREFETCH_BYTES / blockSize))
    const queue: {block: number; data: Promise<Buffer> | null}[] = []
    let next = 0
    const fill = () => {
      while (queue.length < windowBlocks && next < blockCount) {
        const b = next++
        if (!wanted(b)) continue
        const e = entry(want.entries, b)
        const isZero = e.equals(ZERO_ID)
        const data = isZero ? null : fetch(e.toString('hex'))
        data?.catch(() => {}) // surfaced when awaited below
        queue.push({block: b, data})
      }
    }
    let lastReport = 0
    fill()
    while (queue.length > 0) {
      const {block, data} = queue.shift()!
      const len = blockLen(block, blockSize, virtualSize)
      const offset = block * blockSize
      if (data === null) {
        await target.writeZeros(offset, len)
        result.zeroBlocks++
      } else {
        const buf = await data
        if (buf.length !== len) throw new DataError(`chunk for block ${block} holds ${buf.length} bytes, expected ${len}`)
        await target.write(offset, buf)
        result.blocksWritten++
        result.bytesWritten += len
        const hex = entry(want.entries, block).toString('hex')
        if (inflight.delete(hex)) cache.set(hex, buf)
      }
      fill()
      const now = Date.now()
      if (opts.onProgress && now - lastReport > 200) {
        lastReport = now
        opts.onProgress(result.bytesWritten + result.zeroBlocks * blockSize, total)
      }
    }
    await target.finish()
  } catch (e) {
    await target.abort()
    throw e
  } finally {
    await pool.close()
  }
  opts.onProgress?.(total, total)
  result.durationMs = Date.now() - started
  return result
}

function entry(entries: Buffer, b: number): Buffer {
  return entries.subarray(b * DIGEST_SIZE, (b + 1) * DIGEST_SIZE)
}

function blockLen(b: number, blockSize: number, size: number): number {
  return Math.min(blockSize, size - b * blockSize)
}
