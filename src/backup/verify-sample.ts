// Trust but verify (SPEC §4.4): a change source says which blocks changed;
// re-hash a random sample of the allocated blocks it calls unchanged and
// compare with the parent's entries. Returns the first block that differs,
// or null when the sample agrees.
import type {ChangedBlockMap} from '../cbt/changed-block-map.js'
import {DIGEST_SIZE, ZERO_ID, isAllZero} from '../chunk/digest.js'
import type {DiskImage} from '../disk/types.js'
import type {Repository} from '../repo/repository.js'

export async function verifySample(
  image: DiskImage,
  repo: Repository,
  parentEntries: Buffer,
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
  const blockSize = repo.blockSize
  const buf = Buffer.allocUnsafe(blockSize)
  for (const b of picked.sort((x, y) => x - y)) {
    const offset = b * blockSize
    const length = Math.min(blockSize, image.virtualSize - offset)
    const view = buf.subarray(0, length)
    await image.read(view, offset, length)
    const id = isAllZero(view) ? ZERO_ID : repo.digest(view)
    if (!id.equals(parentEntries.subarray(b * DIGEST_SIZE, (b + 1) * DIGEST_SIZE))) return b
  }
  return null
}
