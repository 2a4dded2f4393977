// Backup of one source into a repository.
//
// 1. Run the pre-hook, open the source through its format reader (or as a
//    raw stream: source.ts), note its size and mtime.
// 2. Parent: the newest snapshot of the same disk unless --full; a change of
//    virtual size (or block size) starts a new full.
// 3. Blocks outside the allocated ranges are zero: recorded without a read.
// 4. Candidates: the allocated blocks, narrowed by a change source when a
//    parent exists: a --changed-blocks file, an overlay's own ranges when
//    the layers below it are exactly what the parent snapshot captured, or
//    an NBD server's dirty bitmap (--bitmap, when the parent recorded it).
// 5. Trust but verify: when narrowed, re-hash a random sample of the blocks
//    the change source calls unchanged (while step 6 reads the narrowed
//    blocks); on a mismatch, warn and read the allocated blocks it left out
//    too, so every allocated block is a candidate.
// 6. Read candidates in large sequential batches; workers detect zeros and
//    hash; a block whose id differs from the parent's resolved entry is
//    changed (the changed-block map); a changed block whose chunk is not yet
//    stored is compressed/encrypted in a worker and saved. Batches in flight
//    and uploads in flight are bounded, so memory does not grow with the disk.
// 7. Write the index (delta, or full every N snapshots: from metadata, never
//    a re-read), then the manifest. Chunks → index → manifest.
// 8. If the source's size or mtime changed during the read: warn, retry or
//    fail as --on-source-change says. The post-hook runs last, always (even
//    when the pre-hook failed: it may have half-made an LVM snapshot).
import {hostname} from 'node:os'
import {basename, extname} from 'node:path'
import {readChangedRanges, rangesToBlocks} from '../cbt/change-source.js'
import {ChangedBlockMap} from '../cbt/changed-block-map.js'
import {NbdImage} from '../disk/nbd-image.js'
import type {DiskImage, Range} from '../disk/types.js'
import {IoError, UsageError} from '../errors.js'
import {isNbdUrl, parseNbdUrl} from '../nbd/url.js'
import {resolveSnapshot} from '../repo/chain.js'
import {FixedIndex} from '../repo/fixed-index.js'
import {formatBytes} from '../repo/config.js'
import type {LayerFacts, Manifest, SourceFacts} from '../repo/manifest.js'
import {Repository} from '../repo/repository.js'
import {bitmapChanges} from './bitmap-source.js'
import {runHook} from './hooks.js'
import {checkSourceOptions, openSource, sourceFacts, sourceLabel, type SourceOptions} from './source.js'
import {checkNotInUse, sourceChanges} from './source-checks.js'
import {verifySample} from './verify-sample.js'
import {writeBlocks, type BlockScanStats} from './scan.js'

export interface BackupProgress {
  phase: 'scan' | 'verify' | 'index'
  bytesDone: number
  bytesTotal: number
}

export interface BackupOptions extends SourceOptions {
  disk?: string
  full?: boolean
  tags?: string[]
  dryRun?: boolean
  syntheticFullEvery?: number
  onSourceChange?: 'warn' | 'retry' | 'fail'
  preHook?: string
  postHook?: string
  /** Blocks re-hashed to verify a change source (default 64). */
  verifySamples?: number
  random?: () => number
  now?: () => Date
  onProgress?: (p: BackupProgress) => void
  /** Back up even when the source path, host or image identity differs from the disk's previous snapshot. */
  allowSourceChange?: boolean
  /** Back up a source another process holds open for writing: tagged crash-consistent, exit 3. */
  allowInUse?: boolean
  /** This machine's name as recorded (default: os.hostname()). */
  hostname?: string
  /** Runs after the chunks are stored and before the index and manifest are written (lock check). */
  beforeCommit?: () => Promise<void>
}

export interface BackupResult {
  snapshot: Manifest
  parent: Manifest | null
  dryRun: boolean
  warnings: string[]
  /** Things worth saying that are not warnings (e.g. a new full after a size change). */
  notices: string[]
  /** Exact sizes when the disk changed size since its last snapshot (the notice shows them rounded). */
  sizeChange: {fromBytes: number; toBytes: number} | null
}

export function defaultDiskName(source: string): string {
  if (isNbdUrl(source)) return parseNbdUrl(source).exportName.replace(/[^A-Za-z0-9._:+-]/g, '_') || 'nbd'
  const base = basename(source)
  const ext = extname(base)
  return (ext && ext.length <= 6 ? base.slice(0, -ext.length) : base) || 'disk'
}

function sameLayers(a: LayerFacts[] | undefined, b: LayerFacts[]): boolean {
  return a !== undefined && a.length === b.length && a.every((l, i) => l.path === b[i]!.path && l.size === b[i]!.size && l.mtimeMs === b[i]!.mtimeMs)
}

/**
 * A change source, if any: the --changed-blocks file, or the overlay's own
 * ranges when everything below the overlay is exactly what the parent
 * snapshot captured (a qcow2 overlay, VMDK delta or .avhdx made after it).
 */
async function changeSource(image: DiskImage, facts: SourceFacts, parent: Manifest, file?: string): Promise<{kind: 'changed-blocks' | 'overlay'; ranges: Range[]} | null> {
  if (file) return {kind: 'changed-blocks', ranges: await readChangedRanges(file)}
  if (image.overlayRanges && image.parent && sameLayers(parent.source.layers, facts.layers!.slice(1))) {
    return {kind: 'overlay', ranges: await image.overlayRanges()}
  }
  return null
}

function sameFacts(a: SourceFacts, b: SourceFacts): boolean {
  return sameLayers(a.layers, b.layers!)
}

export async function runBackup(repo: Repository, opts: BackupOptions): Promise<BackupResult> {
  const disk = opts.disk ?? defaultDiskName(opts.source)
  if (!/^[A-Za-z0-9._:+-][A-Za-z0-9._:+@ -]*$/.test(disk) || disk.includes('@')) {
    throw new UsageError(`disk name "${disk}" may hold only letters, digits and . _ : + - (no @)`, {hint: 'choose one with --disk NAME'})
  }
  checkSourceOptions(opts)
  const hookEnv = {VDSNAP_SOURCE: sourceLabel(opts), VDSNAP_DISK: disk}
  let failed = false
  try {
    if (opts.preHook) await runHook('pre', opts.preHook, hookEnv)
    const attempts = opts.onSourceChange === 'retry' ? 3 : 1
    for (let attempt = 1; ; attempt++) {
      // Attempts that may be retried store no snapshot when the source changed.
      const result = await backupOnce(repo, disk, opts, attempt < attempts)
      if (result) return result
    }
  } catch (e) {
    failed = true
    throw e
  } finally {
    if (opts.postHook) {
      const hook = runHook('post', opts.postHook, hookEnv)
      // A failing post-hook must not hide the backup's own error.
      if (failed) await hook.catch(() => {})
      else await hook
    }
  }
}

async function backupOnce(repo: Repository, disk: string, opts: BackupOptions, mayRetry: boolean): Promise<BackupResult | null> {
  const started = Date.now()
  const now = opts.now ?? (() => new Date())
  const host = opts.hostname ?? hostname()
  const image = await openSource(opts, disk, async () => (await repo.listSnapshots(disk)).at(-1)?.virtualSize)
  const warnings: string[] = []
  const notices: string[] = []
  const tags = [...new Set(opts.tags ?? [])]
  try {
    await checkNotInUse(image, opts.allowInUse ?? false, warnings, tags)
    const before = await sourceFacts(image)
    const blockSize = repo.blockSize
    const virtualSize = image.virtualSize
    const blockCount = Math.ceil(virtualSize / blockSize)

    const previous = (await repo.listSnapshots(disk)).at(-1) ?? null
    const changes = previous ? sourceChanges(previous, before, host) : []
    if (changes.length > 0) {
      if (!opts.allowSourceChange) {
        throw new UsageError(`disk "${disk}" was last backed up from another source (snapshot ${previous!.id.slice(0, 8)}: ${changes.join(', ')})`, {
          hint: 'give another --disk name for a different disk, or --allow-source-change if this really is the same disk',
        })
      }
      notices.push(`disk "${disk}" changed source (${changes.join(', ')}): allowed by --allow-source-change`)
    }
    let parent: Manifest | null = null
    let sizeChange: BackupResult['sizeChange'] = null
    if (!opts.full) {
      parent = previous
      if (parent && (parent.virtualSize !== virtualSize || parent.blockSize !== blockSize)) {
        sizeChange = {fromBytes: parent.virtualSize, toBytes: virtualSize}
        notices.push(`virtual size changed from ${formatBytes(parent.virtualSize)} to ${formatBytes(virtualSize)}: taking a new full snapshot (unchanged blocks are still deduplicated)`)
        parent = null
      }
    }
    const entries = parent ? (await resolveSnapshot(repo, parent)).entries : FixedIndex.empty(blockSize, virtualSize)
    const cbm = new ChangedBlockMap(blockCount)

    const allocated = rangesToBlocks(await image.allocatedRanges(), blockSize, virtualSize)
    let bytesChanged = 0
    for (let b = 0; b < blockCount; b++) {
      if (allocated.has(b)) continue
      if (!entries.isZero(b)) {
        entries.setZero(b)
        cbm.set(b)
        bytesChanged += Math.min(blockSize, virtualSize - b * blockSize)
      }
    }

    let candidates = allocated
    // A skipped (damaged) manifest may be this disk's newest snapshot: then
    // changes since it are not changes since `parent`, so no change source
    // is trusted and every allocated block is read (still deduplicated).
    let source = null
    if (image instanceof NbdImage && image.bitmap !== undefined) {
      const b = await bitmapChanges(image, before, parent && repo.damaged.size === 0 ? parent : null)
      if (b.warning) warnings.push(b.warning)
      if (b.notice) notices.push(b.notice)
      if (b.ranges) source = {kind: 'bitmap' as const, ranges: b.ranges}
    } else if (parent && repo.damaged.size === 0) source = await changeSource(image, before, parent, opts.changedBlocksFile)
    let verifying: Promise<number | null> | null = null
    if (source) {
      const narrowed = rangesToBlocks(source.ranges, blockSize, virtualSize)
      for (let i = 0; i < narrowed.bits.length; i++) narrowed.bits[i]! &= allocated.bits[i]!
      opts.onProgress?.({phase: 'verify', bytesDone: 0, bytesTotal: 0})
      // The sample (blocks outside `narrowed`, whose entries the scan does
      // not touch) is re-hashed while the narrowed blocks are scanned: on
      // a small change the verification is a good part of the fixed cost,
      // and on a mismatch the blocks left out are scanned afterwards, which
      // ends with the same snapshot as scanning every allocated block.
      verifying = verifySample(image, repo, entries, allocated, narrowed, opts.verifySamples ?? 64, opts.random ?? Math.random)
      candidates = narrowed
    } else if (opts.changedBlocksFile && !parent) {
      notices.push('no parent snapshot for this disk: --changed-blocks ignored, taking a full snapshot')
    }

    const scanBlocks = (blocks: ChangedBlockMap): Promise<BlockScanStats> =>
      writeBlocks({
        image,
        repo,
        entries,
        cbm,
        candidates: blocks,
        dryRun: opts.dryRun ?? false,
        onProgress: (done, total) => opts.onProgress?.({phase: 'scan', bytesDone: done, bytesTotal: total}),
      })
    let scan: BlockScanStats
    try {
      scan = await scanBlocks(candidates)
    } catch (e) {
      await verifying?.catch(() => {}) // no read may outlive the image
      throw e
    }
    if (source && verifying) {
      const mismatch = await verifying
      if (mismatch === null) before.changeSource = source.kind
      else {
        const what = {overlay: 'the overlay\'s allocation map', 'changed-blocks': 'changed-blocks file', bitmap: `dirty bitmap "${opts.bitmap}"`}[source.kind]
        warnings.push(`${what} missed a change (block ${mismatch} differs from the parent): hashed every allocated block instead`)
        const rest = new ChangedBlockMap(blockCount)
        for (let i = 0; i < rest.bits.length; i++) rest.bits[i] = allocated.bits[i]! & ~candidates.bits[i]!
        scan = addScanStats(scan, await scanBlocks(rest))
      }
    }
    bytesChanged += scan.bytesChanged
    // 6b. A stream must end exactly here, its producer having succeeded: else no snapshot.
    await (image as DiskImage).endOfRead?.()

    const after = await sourceFacts(image)
    if (!sameFacts(before, after)) {
      const msg = `source changed during the read (size ${before.size}→${after.size}, modified ${new Date(before.mtimeMs).toISOString()}→${new Date(after.mtimeMs).toISOString()}): the snapshot may not be consistent`
      if (mayRetry) return null
      if (opts.onSourceChange === 'fail') {
        throw new IoError(msg, {hint: 'stop writes to the source (or snapshot it with --pre-hook) and run again'})
      }
      warnings.push(msg)
    }

    const every = opts.syntheticFullEvery ?? repo.config.syntheticFullEvery
    const chainLength = parent ? parent.chainLength + 1 : 0
    const full = !parent || chainLength >= every
    const finalCbm = parent ? cbm : ChangedBlockMap.all(blockCount)
    opts.onProgress?.({phase: 'index', bytesDone: 0, bytesTotal: 0})
    const blocksUsed = entries.usedCount()
    const indexDoc = full ? entries.asFull(finalCbm) : entries.delta(finalCbm)
    if (!opts.dryRun) await opts.beforeCommit?.()
    const indexId = opts.dryRun ? '' : await repo.saveIndex(indexDoc)
    const manifest: Manifest = {
      version: 1,
      id: Repository.newSnapshotId(),
      disk,
      time: now().toISOString(),
      parent: parent?.id ?? null,
      index: indexId,
      indexKind: indexDoc.kind,
      chainLength: full ? 0 : chainLength,
      blockSize,
      virtualSize,
      source: before,
      tags,
      hostname: host,
      stats: {
        bytesRead: scan.bytesRead,
        bytesChanged,
        bytesNew: scan.bytesNew,
        bytesStored: scan.bytesStored,
        blocksChanged: cbm.count(),
        blocksNew: scan.blocksNew,
        blocksUsed,
        durationMs: Date.now() - started,
      },
      ...(warnings.length ? {warnings} : {}),
    }
    if (!opts.dryRun) await repo.saveManifest(manifest)
    return {snapshot: manifest, parent, dryRun: opts.dryRun ?? false, warnings, notices, sizeChange}
  } finally {
    await image.close()
  }
}

function addScanStats(a: BlockScanStats, b: BlockScanStats): BlockScanStats {
  return {
    bytesRead: a.bytesRead + b.bytesRead,
    bytesChanged: a.bytesChanged + b.bytesChanged,
    bytesNew: a.bytesNew + b.bytesNew,
    bytesStored: a.bytesStored + b.bytesStored,
    blocksNew: a.blocksNew + b.blocksNew,
  }
}
