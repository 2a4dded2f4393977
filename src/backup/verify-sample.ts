// Trust but verify (SPEC §4.4): a change source says which blocks changed;
// re-hash a random sample of the allocated blocks it calls unchanged and
// compare with the parent's entries. Returns the first block that differs,
// or null when the sample agrees.
import type {ChangedBlockMap} from '../cbt/changed-block-map.js'
import {ZERO_ID, isAllZero} from '../chunk/digest.js'
import type {DiskImage} from '../disk/types.js'
import type {FixedIndex} from '../repo/fixed-index.js'
import type {Repository} from '../repo/repository.js'

export async function verifySample(
  image: DiskImage,
  repo: Repository,
  parentEntries: FixedIndex,
  allocated: ChangedBlockMap,
  candidates: ChangedBlockMap,
  samples: number,
  random: () => number,
): Promise<number | null> {
  // Reservoir sampling over allocated, non-candidate blocks: one pass, O(samples) memory.
  const picked: number[] = []
  let seen = 0
  for (const b of allocated.blocks()) {
    if (candidates.has(b)) continue
    seen++
    if (picked.length < samples) picked.push(b)
    else {
      const j = Math.floor(random() * seen)
      if (j < samples) picked[j] = b
    }
  }
  // Read a few sampled blocks at a time: one at a time, a source with a
  // round trip per read (an NBD server, another process) pays 64 of them in
  // a row. At most 32 MiB of blocks are held; the answer is the same as in
  // order (the first differing block of the sorted sample).
  const blockSize = repo.blockSize
  const window = Math.max(1, Math.min(8, Math.floor((32 * 1024 * 1024) / blockSize)))
  const bufs = Array.from({length: Math.min(window, picked.length)}, () => Buffer.allocUnsafe(blockSize))
  const sorted = picked.sort((x, y) => x - y)
  for (let i = 0; i < sorted.length; i += window) {
    const group = sorted.slice(i, i + window)
    const ids = await Promise.all(
      group.map(async (b, k) => {
        const offset = b * blockSize
        const length = Math.min(blockSize, image.virtualSize - offset)
        const view = bufs[k]!.subarray(0, length)
        await image.read(view, offset, length)
        return isAllZero(view) ? ZERO_ID : repo.digest(view)
      }),
    )
    for (const [k, b] of group.entries()) {
      if (!parentEntries.matches(b, ids[k]!)) return b
    }
  }
  return null
}
