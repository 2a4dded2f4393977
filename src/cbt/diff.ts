// diff A B: the blocks whose content differs between two snapshots of the
// same disk geometry, from their resolved indexes (metadata only).
import {DIGEST_SIZE} from '../chunk/digest.js'
import {UsageError} from '../errors.js'
import {resolveSnapshot} from '../repo/chain.js'
import type {Manifest} from '../repo/manifest.js'
import type {Repository} from '../repo/repository.js'
import {ChangedBlockMap} from './changed-block-map.js'

export interface DiffResult {
  from: string
  to: string
  blockSize: number
  blockCount: number
  changedBlocks: number
  changedBytes: number
  ranges: {offset: number; length: number}[]
}

export async function diffSnapshots(repo: Repository, a: Manifest, b: Manifest): Promise<DiffResult> {
  if (a.blockSize !== b.blockSize || a.virtualSize !== b.virtualSize) {
    throw new UsageError(`snapshots ${a.id.slice(0, 8)} and ${b.id.slice(0, 8)} have different disk sizes (${a.virtualSize} vs ${b.virtualSize}); every block differs`)
  }
  const [ra, rb] = [await resolveSnapshot(repo, a), await resolveSnapshot(repo, b)]
  const map = new ChangedBlockMap(ra.blockCount)
  for (let i = 0; i < ra.blockCount; i++) {
    const s = i * DIGEST_SIZE
    if (ra.entries.compare(rb.entries, s, s + DIGEST_SIZE, s, s + DIGEST_SIZE) !== 0) map.set(i)
  }
  const ranges = map.ranges().map((r) => {
    const offset = r.firstBlock * a.blockSize
    return {offset, length: Math.min(r.count * a.blockSize, a.virtualSize - offset)}
  })
  return {
    from: a.id,
    to: b.id,
    blockSize: a.blockSize,
    blockCount: ra.blockCount,
    changedBlocks: map.count(),
    changedBytes: ranges.reduce((s, r) => s + r.length, 0),
    ranges,
  }
}
