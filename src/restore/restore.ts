// Restore by chain replay: plan → BlockSource → target.
//
// 1. Plan: every block, or with --delta-from only the blocks whose resolved
//    entries differ from that snapshot's (the target already holds the rest),
//    after checking that it does: target blocks are hashed and compared with
//    that snapshot's entries before anything is written (delta-verify.ts).
// 2. The BlockSource (block-source.ts) resolves the chain (metadata only) and
//    yields the planned blocks in offset order, prefetched, decoded and
//    verified in workers, each chunk read once while its uses are in flight.
// 3. Write in offset order. Zero blocks become holes in a new file, and are
//    written as zeros on devices, stdout and delta targets (unless
//    --target-zeroed). Files are written under a temporary name and renamed
//    when complete, so a failed restore never leaves a plausible-looking disk.
// 4. With --overlay (a `serve --overlay` file), the overlay's sectors replace
//    the snapshot's in each block on the way (overlay-blocks.ts); a
//    --delta-from plan also takes every block the overlay touches.
import {DataError} from '../errors.js'
import type {Manifest} from '../repo/manifest.js'
import {resolveSnapshot, type ResolvedIndex} from '../repo/chain.js'
import type {Repository} from '../repo/repository.js'
import {OverlayFile} from '../overlay/overlay-file.js'
import {BlockSource, type Block} from '../repo/block-source.js'
import type {BlockStream} from '../repo/block-stream.js'
import {verifyDeltaTarget} from './delta-verify.js'
import {overlayBlocks, wantedWithOverlay} from './overlay-blocks.js'
import {openTarget, type RestoreTarget, type TargetOptions} from './targets.js'

export interface RestoreOptions extends TargetOptions {
  snapshot: Manifest
  deltaFrom?: Manifest
  /** Re-hash every chunk (default); false trusts the GCM tag of encrypted chunks. */
  rehash?: boolean
  /** Uniform integer in [0, n) for the --delta-from sample; injected by tests. */
  random?: (n: number) => number
  /** A "vdsnap serve --overlay" file: its writes replace the snapshot's bytes. */
  overlay?: string
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
  /** With --delta-from: target blocks checked against that snapshot before writing. */
  targetBlocksChecked?: number
  chunksRead: number
  bytesFetched: number
  durationMs: number
}

export async function runRestore(repo: Repository, opts: RestoreOptions): Promise<RestoreResult> {
  const started = Date.now()
  const source = await BlockSource.open(repo, opts.snapshot, {rehash: opts.rehash ?? true})
  let overlay: OverlayFile | undefined
  try {
    overlay = await openOverlay(opts)
    const plan = await planBlocks(repo, source, opts.deltaFrom, overlay)
    const target = await openTarget({...opts, virtualSize: source.virtualSize, delta: plan.have !== undefined, disk: opts.snapshot.disk})
    const result = await completeOrAbort(target, async () => {
      const checked = await checkDeltaTarget(repo, opts, plan)
      const copied = await copyBlocks(source, target, plan.wanted, opts.onProgress, overlay)
      if (checked !== undefined) copied.targetBlocksChecked = checked
      return copied
    })
    result.durationMs = Date.now() - started
    return result
  } finally {
    await overlay?.close()
    await source.close()
  }
}

interface Plan {
  /** The blocks to write. */
  wanted: (b: number) => boolean
  /** With --delta-from: that snapshot's entries, which the target must hold already. */
  have?: ResolvedIndex
}

/** The --overlay file, opened read-only and checked against the snapshot. */
async function openOverlay(opts: RestoreOptions): Promise<OverlayFile | undefined> {
  if (!opts.overlay) return undefined
  const snap = opts.snapshot
  return OverlayFile.open(opts.overlay, {snapshotId: snap.id, virtualSize: snap.virtualSize, create: false, readOnly: true})
}

/** Which blocks to write: all of them, or with --delta-from those whose entries differ, and every block the overlay touches. */
async function planBlocks(repo: Repository, source: BlockSource, deltaFrom: Manifest | undefined, overlay: OverlayFile | undefined): Promise<Plan> {
  const plan = await deltaPlan(repo, source, deltaFrom)
  // Blocks the VM wrote in the overlay are written too, whatever the delta says.
  return overlay ? {...plan, wanted: wantedWithOverlay(plan.wanted, source, overlay)} : plan
}

async function deltaPlan(repo: Repository, source: BlockSource, deltaFrom?: Manifest): Promise<Plan> {
  if (!deltaFrom) return {wanted: () => true}
  const snap = source.snapshot
  if (deltaFrom.virtualSize !== source.virtualSize || deltaFrom.blockSize !== source.blockSize) {
    throw new DataError(`--delta-from ${deltaFrom.id.slice(0, 8)} has another disk geometry than ${snap.id.slice(0, 8)}; restore in full instead`)
  }
  const have = await resolveSnapshot(repo, deltaFrom)
  return {wanted: (b) => !have.entries.matches(b, source.entry(b)), have}
}

/** What copyBlocks reads: a BlockSource, over a repository or an archive, or a wrapper around one. */
export type {BlockStream}

/** With --delta-from: samples the target's blocks against that snapshot before anything is written; the count checked. */
async function checkDeltaTarget(repo: Repository, opts: RestoreOptions, plan: Plan): Promise<number | undefined> {
  if (!plan.have || !opts.deltaFrom) return undefined
  return verifyDeltaTarget({path: opts.to, snap: opts.deltaFrom, have: plan.have, writes: plan.wanted, idKey: repo.idKey, random: opts.random})
}

/** Runs `write` on the target, then finishes it (fsync, rename); aborts it (no renamed partial file) on any error. */
export async function completeOrAbort<T>(target: RestoreTarget, write: () => Promise<T>): Promise<T> {
  try {
    const result = await write()
    await target.finish()
    return result
  } catch (e) {
    await target.abort()
    throw e
  }
}


/**
 * Streams the wanted blocks from the source into the target, in offset
 * order. The target queues each write and returns at once while it has room
 * (positional-writer.ts), so decoding the next blocks overlaps the writing.
 */
export async function copyBlocks(
  source: BlockStream,
  target: RestoreTarget,
  wanted: (b: number) => boolean,
  onProgress?: (done: number, total: number) => void,
  overlay?: OverlayFile,
): Promise<RestoreResult> {
  const result = emptyResult(source, target)
  const progress = progressReporter(plannedBytes(source, wanted), onProgress)
  const blocks = overlay ? overlayBlocks(source.blocks(wanted), overlay) : source.blocks(wanted)
  for await (const block of blocks) {
    await writeBlock(target, block, result, () => source.release?.(block))
    progress.add(block.length)
  }
  progress.end()
  result.chunksRead = source.chunksRead
  result.bytesFetched = source.bytesFetched
  return result
}

function emptyResult(source: BlockStream, target: RestoreTarget): RestoreResult {
  return {
    snapshot: source.snapshot.id,
    target: target.describe,
    format: target.format,
    virtualSize: source.virtualSize,
    blocksWritten: 0,
    bytesWritten: 0,
    zeroBlocks: 0,
    chunksRead: 0,
    bytesFetched: 0,
    durationMs: 0,
  }
}

/** The bytes of the wanted blocks (the progress total). */
function plannedBytes(source: BlockStream, wanted: (b: number) => boolean): number {
  let total = 0
  for (let b = 0; b < source.blockCount; b++) if (wanted(b)) total += source.blockLength(b)
  return total
}

/** A zero block becomes whatever the target makes of zeros (a hole in a new file); any other is written. */
async function writeBlock(target: RestoreTarget, block: Block, result: RestoreResult, written: () => void): Promise<void> {
  if (block.data === null) {
    await target.writeZeros(block.offset, block.length)
    result.zeroBlocks++
  } else {
    await target.write(block.offset, block.data, written)
    result.blocksWritten++
    result.bytesWritten += block.length
  }
}

/** Reports progress at most every 200 ms, and once at the end. */
function progressReporter(total: number, onProgress?: (done: number, total: number) => void): {add(n: number): void; end(): void} {
  let done = 0
  let lastReport = 0
  return {
    add(n) {
      done += n
      if (!onProgress) return
      const now = Date.now()
      if (now - lastReport > 200) {
        lastReport = now
        onProgress(done, total)
      }
    },
    end: () => onProgress?.(total, total),
  }
}
