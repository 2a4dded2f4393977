// diff A B: the blocks whose content differs between two snapshots of a
// disk, from their resolved indexes (metadata only).
//
// 1. Resolve both snapshots to one entry per block.
// 2. A block both disks hold whole differs when its entries differ.
// 3. When the disk grew or shrank, every block past the smaller disk's last
//    whole block differs: its short last block (now longer) and the blocks
//    only the larger disk has.
// Ranges are clipped to the larger disk's size.
import {UsageError} from '../errors.js'
import {resolveSnapshot} from './chain.js'
import type {Manifest} from './manifest.js'
import type {Repository} from './repository.js'

export interface DiffResult {
  from: string
  to: string
  blockSize: number
  /** Blocks of the larger disk. */
  blockCount: number
  fromSize: number
  toSize: number
  changedBlocks: number
  changedBytes: number
  ranges: {offset: number; length: number}[]
}

export async function diffSnapshots(repo: Repository, a: Manifest, b: Manifest): Promise<DiffResult> {
  if (a.blockSize !== b.blockSize) {
    throw new UsageError(`snapshots ${a.id.slice(0, 8)} and ${b.id.slice(0, 8)} have different block sizes (${a.blockSize} vs ${b.blockSize})`)
  }
  const blockSize = a.blockSize
  const [ra, rb] = [await resolveSnapshot(repo, a), await resolveSnapshot(repo, b)]
  const size = Math.max(a.virtualSize, b.virtualSize)
  const map = ra.entries.diff(rb.entries)
  const blockCount = map.blockCount
  const ranges = map.ranges().map((r) => {
    const offset = r.firstBlock * blockSize
    return {offset, length: Math.min(r.count * blockSize, size - offset)}
  })
  return {
    from: a.id,
    to: b.id,
    blockSize,
    blockCount,
    fromSize: a.virtualSize,
    toSize: b.virtualSize,
    changedBlocks: map.count(),
    changedBytes: ranges.reduce((sum, r) => sum + r.length, 0),
    ranges,
  }
}
