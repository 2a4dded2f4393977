// The hot loop of a backup: read candidate blocks in large sequential
// batches, hash them in workers, record changes, store new chunks.
// Bounded: batches in flight hold at most `chunks.workers * 2 * BATCH_BYTES`
// (a batch is ≤ 4 MiB, or one block when blocks are larger), and encoded
// chunks waiting for storage hold at most UPLOAD_BYTES. The bound is on
// bytes, not batches: a change source yields many one-block batches, and
// each batch is a chain of waits (read, hash, stat, pack, save), so many
// small ones must be in flight to keep both workers busy. Uploads are decoupled from batches so that
// workers keep compressing while the storage fsyncs. Batch buffers are
// recycled (they travel to the workers and back) to keep the GC quiet.
import type {ChangedBlockMap} from '../cbt/changed-block-map.js'
import {IdSet} from '../chunk/id-set.js'
import type {DiskImage} from '../disk/types.js'
import {Semaphore, TaskGroup} from '../flow/semaphore.js'
import type {FixedIndex} from '../repo/fixed-index.js'
import type {Repository} from '../repo/repository.js'

export const BATCH_BYTES = 4 * 1024 * 1024
/**
 * Saves in flight at most (the storage's own concurrency limit may be
 * lower: 8 locally). A save over a WAN costs a few round trips whatever its
 * size, so on a 50 ms link it takes enough of them in flight (together
 * UPLOAD_BYTES) for latency not to set the pace.
 */
export const UPLOADS_IN_FLIGHT = 32
export const UPLOAD_BYTES = 16 * 1024 * 1024
/** Batches in flight at most, whatever their size. */
export const BATCHES_IN_FLIGHT = 64

export interface BlockScanStats {
  bytesRead: number
  bytesChanged: number
  bytesNew: number
  bytesStored: number
  blocksNew: number
}

export interface ScanInput {
  image: DiskImage
  repo: Repository
  /** Resolved entries of the parent; updated in place to the new snapshot's. */
  entries: FixedIndex
  /** Receives the blocks that differ from the parent. */
  cbm: ChangedBlockMap
  candidates: ChangedBlockMap
  dryRun: boolean
  onProgress?: (bytesDone: number, bytesTotal: number) => void
}

interface Batch {
  firstBlock: number
  blocks: number
}

function* batches(candidates: ChangedBlockMap, blockSize: number): Iterable<Batch> {
  const per = Math.max(1, Math.floor(BATCH_BYTES / blockSize))
  for (const run of candidates.ranges()) {
    for (let b = run.firstBlock; b < run.firstBlock + run.count; b += per) {
      yield {firstBlock: b, blocks: Math.min(per, run.firstBlock + run.count - b)}
    }
  }
}

export async function writeBlocks(input: ScanInput): Promise<BlockScanStats> {
  const {image, repo, entries, cbm, candidates} = input
  const chunks = repo.chunks
  const blockSize = repo.blockSize
  const size = image.virtualSize
  const stats: BlockScanStats = {bytesRead: 0, bytesChanged: 0, bytesNew: 0, bytesStored: 0, blocksNew: 0}
  const total = Math.min(size, candidates.count() * blockSize)
  // Chunks this run has stored or is storing: a new chunk met twice is stored once.
  const claimed = new IdSet()
  const uploadBytes = new Semaphore(UPLOAD_BYTES)
  const uploads = new TaskGroup(UPLOADS_IN_FLIGHT)
  const group = new TaskGroup(BATCHES_IN_FLIGHT)
  const readBytes = new Semaphore(chunks.workers * 2 * Math.max(BATCH_BYTES, blockSize))
  const batchBytes = Math.max(blockSize, Math.floor(BATCH_BYTES / blockSize) * blockSize)
  const free: ArrayBuffer[] = []
  let lastReport = 0

  const store = async (hex: string, obj: Uint8Array, plainLength: number): Promise<void> => {
    await uploadBytes.acquire(obj.byteLength)
    let spawned = false
    try {
      await uploads.spawn(async () => {
        try {
          if (!input.dryRun) await chunks.put(hex, {encoded: Buffer.from(obj.buffer, obj.byteOffset, obj.byteLength)})
          stats.blocksNew++
          stats.bytesNew += plainLength
          stats.bytesStored += obj.byteLength
        } finally {
          uploadBytes.release(obj.byteLength)
        }
      })
      spawned = true
    } finally {
      // spawn refuses once an upload has failed: give the budget back, or
      // batches waiting for it would wait forever.
      if (!spawned) uploadBytes.release(obj.byteLength)
    }
  }

  const processBatch = async (batch: Batch): Promise<void> => {
    const offset = batch.firstBlock * blockSize
    const length = Math.min(batch.blocks * blockSize, size - offset)
    const buf = Buffer.from(length === batchBytes ? (free.pop() ?? new ArrayBuffer(batchBytes)) : new ArrayBuffer(length), 0, length)
    await image.read(buf, offset, length)
    stats.bytesRead += length
    const hashed = await chunks.hash(buf.buffer as ArrayBuffer, length, blockSize)
    let data = hashed.buf
    const items: {start: number; end: number; id: string}[] = []
    for (let i = 0; i < batch.blocks; i++) {
      const b = batch.firstBlock + i
      if (!entries.update(b, hashed.digests, i)) continue
      cbm.set(b)
      const start = i * blockSize
      const end = Math.min(start + blockSize, length)
      stats.bytesChanged += end - start
      if (entries.isZero(b)) continue
      if (!claimed.add(entries.entry(b))) continue
      const hex = entries.hex(b)
      if (await chunks.has(hex)) continue
      items.push({start, end, id: hex})
    }
    if (items.length > 0) {
      const packed = await chunks.encode(data, items)
      data = packed.buf
      for (const [k, item] of items.entries()) await store(item.id, packed.objects[k]!, item.end - item.start)
    }
    if (data.byteLength === batchBytes && free.length < chunks.workers * 2) free.push(data)
    const nowMs = Date.now()
    if (input.onProgress && nowMs - lastReport > 200) {
      lastReport = nowMs
      input.onProgress(stats.bytesRead, total)
    }
  }

  try {
    for (const batch of batches(candidates, blockSize)) {
      const length = Math.min(batch.blocks * blockSize, size - batch.firstBlock * blockSize)
      await readBytes.acquire(length)
      try {
        await group.spawn(() => processBatch(batch).finally(() => readBytes.release(length)))
      } catch (e) {
        readBytes.release(length)
        throw e
      }
    }
  } finally {
    // On failure too, let what is in flight settle before returning.
    await group.wait().finally(() => uploads.wait())
  }
  input.onProgress?.(stats.bytesRead, total)
  return stats
}
