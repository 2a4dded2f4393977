// --delta-from SNAP writes only the blocks that differ from SNAP, so it is
// right only when the target really holds SNAP. Before anything is written
// the target's blocks are hashed like a backup hashes them (SHA-256, or
// HMAC under the id key in an encrypted repository) and compared with
// SNAP's resolved entries; a zero entry must read as zeros.
//
// Which blocks: on a small disk every block the delta will not write (they
// are what the delta relies on); on a larger one a random sample of them;
// then random blocks from the rest until at least SAMPLE_BLOCKS are checked.
import {randomInt} from 'node:crypto'
import {open} from 'node:fs/promises'
import {chunkDigest, isAllZero, isZeroId} from '../chunk/digest.js'
import {DataError} from '../errors.js'
import type {ResolvedIndex} from '../repo/chain.js'
import {shortId, type Manifest} from '../repo/manifest.js'
import {targetError} from './target-errors.js'

export const SAMPLE_BLOCKS = 64
/** Disks up to this size have every unwritten block checked (read at ~1 GB/s: well under a second). */
export const SMALL_DISK_BYTES = 256 * 1024 * 1024

export interface DeltaCheck {
  path: string
  snap: Manifest
  have: ResolvedIndex
  /** True for the blocks the delta will write. */
  writes: (b: number) => boolean
  idKey?: Buffer
  /** Uniform integer in [0, n); injected so tests can pin the sample. */
  random?: (n: number) => number
}

/** Returns how many blocks were checked; throws DataError (exit 6) when the target does not hold the snapshot. */
export async function verifyDeltaTarget(c: DeltaCheck): Promise<number> {
  const blocks = sampleBlocks(c)
  const fh = await open(c.path, 'r').catch((e) => Promise.reject(targetError(e, c.path, 'opening')))
  const {blockSize, virtualSize} = c.have
  const buf = Buffer.alloc(blockSize)
  let differ = 0
  let first = -1
  try {
    for (const b of blocks) {
      const len = Math.min(blockSize, virtualSize - b * blockSize)
      const data = buf.subarray(0, len)
      const {bytesRead} = await fh.read(data, 0, len, b * blockSize).catch((e) => Promise.reject(targetError(e, c.path, 'reading')))
      const want = c.have.entries.entry(b)
      const same = bytesRead === len && (isZeroId(want) ? isAllZero(data) : chunkDigest(data, c.idKey).equals(want))
      if (!same) {
        differ++
        if (first < 0 || b < first) first = b
      }
    }
  } finally {
    await fh.close()
  }
  if (differ > 0) {
    throw new DataError(
      `${c.path} does not hold snapshot ${shortId(c.snap.id)}: ${differ} of ${blocks.length} checked blocks differ (the first at offset ${first * blockSize}); nothing was written`,
      {hint: 'restore in full without --delta-from, or give --delta-from the snapshot the target holds'},
    )
  }
  return blocks.length
}

/** The blocks to check, in ascending order (so the reads go forward on a disk). */
export function sampleBlocks(c: Pick<DeltaCheck, 'have' | 'writes' | 'random'>): number[] {
  const random = c.random ?? randomInt
  const kept: number[] = []
  const written: number[] = []
  for (let b = 0; b < c.have.blockCount; b++) (c.writes(b) ? written : kept).push(b)
  const chosen = c.have.virtualSize <= SMALL_DISK_BYTES ? kept : pick(kept, SAMPLE_BLOCKS, random)
  const rest = pick(written, Math.max(0, SAMPLE_BLOCKS - chosen.length), random)
  return [...chosen, ...rest].sort((a, b) => a - b)
}

/** `n` distinct elements of `from` chosen uniformly (a partial Fisher-Yates shuffle of a copy). */
function pick(from: number[], n: number, random: (n: number) => number): number[] {
  if (n >= from.length) return [...from]
  const a = [...from]
  for (let i = 0; i < n; i++) {
    const j = i + random(a.length - i)
    ;[a[i], a[j]] = [a[j]!, a[i]!]
  }
  return a.slice(0, n)
}
