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
import {BlockSource} from '../repo/block-source.js'
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
  const snap = opts.snapshot
  const source = await BlockSource.open(repo, snap, {rehash: opts.rehash ?? true})
  let overlay: OverlayFile | undefined
  try {
    if (opts.overlay) overlay = await OverlayFile.open(opts.overlay, {snapshotId: snap.id, virtualSize: snap.virtualSize, create: false, readOnly: true})
    const plan = await planBlocks(repo, source, opts.deltaFrom)
    // Blocks the VM wrote in the overlay are written too, whatever the delta says.
    const wanted = overlay ? wantedWithOverlay(plan.wanted, source, overlay) : plan.wanted
    const target: RestoreTarget = await openTarget({...opts, virtualSize: source.virtualSize, delta: plan.have !== undefined, disk: snap.disk})
    try {
      let checked: number | undefined
      if (plan.have && opts.deltaFrom) {
        checked = await verifyDeltaTarget({path: opts.to, snap: opts.deltaFrom, have: plan.have, writes: wanted, idKey: repo.idKey, random: opts.random})
      }
      const result = await copyBlocks(source, target, wanted, opts.onProgress, overlay)
      if (checked !== undefined) result.targetBlocksChecked = checked
      await target.finish()
      result.durationMs = Date.now() - started
      return result
    } catch (e) {
      await target.abort()
      throw e
    }
  } finally {
    await overlay?.close()
    await source.close()
  }
}

/** Which blocks to write: all of them, or with --delta-from those whose entries differ. */
async function planBlocks(repo: Repository, source: BlockSource, deltaFrom?: Manifest): Promise<{wanted: (b: number) => boolean; have?: ResolvedIndex}> {
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

/** Stream the wanted blocks from the source into the target, in offset order. */
export async function copyBlocks(
  source: BlockStream,
  target: RestoreTarget,
  wanted: (b: number) => boolean,
  onProgress?: (done: number, total: number) => void,
  overlay?: OverlayFile,
): Promise<RestoreResult> {
  const result: RestoreResult = {
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
  let total = 0
  for (let b = 0; b < source.blockCount; b++) if (wanted(b)) total += source.blockLength(b)
  let done = 0
  let lastReport = 0
  const blocks = overlay ? overlayBlocks(source.blocks(wanted), overlay) : source.blocks(wanted)
  for await (const block of blocks) {
    if (block.data === null) {
      await target.writeZeros(block.offset, block.length)
      result.zeroBlocks++
    } else {
      await target.write(block.offset, block.data)
      result.blocksWritten++
      result.bytesWritten += block.length
    }
    done += block.length
    const now = Date.now()
    if (onProgress && now - lastReport > 200) {
      lastReport = now
      onProgress(done, total)
    }
  }
  onProgress?.(total, total)
  result.chunksRead = source.chunksRead
  result.bytesFetched = source.bytesFetched
  return result
}
