// prune: delete the chunks and indexes no snapshot references.
//
// The rule that makes this safe against backups (docs/FORMAT.md,
// "Garbage collection"):
// - prune runs under the EXCLUSIVE lock for its whole run, so no backup,
//   copy or forget holds a lock meanwhile, and none can start;
// - a backup holds a SHARED lock and, before writing its index and
//   manifest, checks that its lock is still there and fresh
//   (RepoLock.assertHeld): a backup whose lock went stale (so a prune may
//   have run) writes no snapshot. Hence every chunk a future manifest will
//   reference was either referenced when prune listed the manifests, or is
//   written (or re-checked with ChunkStore.has, which asks the storage) by a
//   backup that started after prune released its lock;
// - a backup killed half-way wrote no manifest: its chunks are garbage
//   here, and its re-run uploads again whatever prune removed;
// - prune itself re-checks its own lock while deleting (assertHeld), so a
//   prune that lost its lock stops before a new backup could rely on a
//   chunk it is about to delete.
//
// 1. The caller takes the exclusive lock (honouring --lock-wait).
// 2. Load every manifest (any that fails to load stops prune: what it
//    references is unknown) and the index each names. Every entry of a
//    snapshot's own index is part of that snapshot's resolved view (deltas
//    shadow only older indexes), so the referenced chunks are exactly the
//    union of the entries of the indexes that manifests name. That Set of
//    ids is the only thing that grows with the repository.
// 3. Stream the listing of the chunk store, then indexes/; delete what is not
//    referenced with bounded parallelism, counting bytes.
// 4. On every backend, remove `.tmp-*` objects (writes that died) older
//    than the lock staleness limit (stale-temps.ts).
// 5. dryRun: count and add up, delete nothing.
// Resumable: deletion is idempotent; a prune killed half-way has removed
// only garbage, and the next run removes the rest.
import {ZERO_ID, DIGEST_SIZE} from '../chunk/digest.js'
import {TaskGroup} from '../flow/semaphore.js'
import {DataError, VdsnapError} from '../errors.js'
import {resolveSnapshot} from '../repo/chain.js'
import type {Repository} from '../repo/repository.js'
import {removeStaleTemps, TEMP_STALE_MS} from '../repo/stale-temps.js'

export interface PruneOptions {
  dryRun?: boolean
  /** Throws when the exclusive lock was lost; called before and during deletion. */
  assertHeld?: () => Promise<void>
  /** Deletions in flight (default 16). */
  concurrency?: number
  now?: () => number
  onProgress?: (objectsSeen: number, objectsRemoved: number) => void
  /**
   * For `forget --prune --dry-run`: count as if this forget had run. Removed
   * snapshots reference nothing; a rebased one references its resolved view.
   */
  plannedForget?: {removed: Set<string>; rebased: Set<string>}
}

export interface PruneResult {
  dryRun: boolean
  snapshots: number
  chunksReferenced: number
  chunksKept: number
  chunksRemoved: number
  indexesRemoved: number
  tempFilesRemoved: number
  /** Stored bytes of everything removed (or that would be). */
  bytesFreed: number
}

const HEX64 = /^[0-9a-f]{64}$/

export async function runPrune(repo: Repository, opts: PruneOptions = {}): Promise<PruneResult> {
  const {chunks, indexes, snapshots} = await referenced(repo, opts.plannedForget)
  const res: PruneResult = {dryRun: opts.dryRun ?? false, snapshots, chunksReferenced: chunks.size, chunksKept: 0, chunksRemoved: 0, indexesRemoved: 0, tempFilesRemoved: 0, bytesFreed: 0}
  if (!opts.dryRun) await opts.assertHeld?.()
  const sweep = new Sweeper(opts, res)
  for await (const c of repo.chunks.list()) {
    if (chunks.has(c.id)) res.chunksKept++
    else await sweep.remove(() => repo.chunks.remove(c.id), c.size, () => res.chunksRemoved++)
  }
  for await (const obj of repo.backend.list('indexes/')) {
    const id = obj.name.slice('indexes/'.length)
    if (HEX64.test(id) && !indexes.has(id)) await sweep.remove(() => repo.removeIndex(id), obj.size, () => res.indexesRemoved++)
  }
  await sweep.wait()
  const t = await removeStaleTemps(repo.backend, (opts.now ?? Date.now)() - TEMP_STALE_MS, opts.dryRun ?? false)
  res.tempFilesRemoved = t.files
  res.bytesFreed += t.bytes
  return res
}

/** Step 2: the ids of referenced chunks and indexes. */
async function referenced(repo: Repository, planned?: PruneOptions['plannedForget']): Promise<{chunks: Set<string>; indexes: Set<string>; snapshots: number}> {
  const indexes = new Set<string>()
  const chunks = new Set<string>()
  const ids = (await repo.listSnapshotIds()).filter((id) => !planned?.removed.has(id))
  for (const id of ids) {
    const m = await repo.loadManifest(id).catch((e: unknown) => {
      throw new DataError(`prune stopped: snapshot ${id.slice(0, 8)} cannot be read (${(e as Error).message})`, {hint: 'run "vdsnap check" and forget or repair that snapshot first'})
    })
    if (planned?.rebased.has(id)) addEntries(chunks, (await resolveSnapshot(repo, m)).entries)
    else indexes.add(m.index)
  }
  const group = new TaskGroup(8)
  for (const index of indexes) {
    await group.spawn(async () => {
      const ix = await repo.loadIndex(index).catch((e: unknown) => {
        throw e instanceof VdsnapError && e.kind === 'data' ? new DataError(`prune stopped: ${e.message}`, {hint: 'run "vdsnap check"; prune never runs on a repository with a broken snapshot'}) : e
      })
      addEntries(chunks, ix.entries)
    })
  }
  await group.wait()
  return {chunks, indexes, snapshots: ids.length}
}

function addEntries(chunks: Set<string>, entries: Buffer): void {
  for (let off = 0; off < entries.length; off += DIGEST_SIZE) {
    const entry = entries.subarray(off, off + DIGEST_SIZE)
    if (!entry.equals(ZERO_ID)) chunks.add(entry.toString('hex'))
  }
}

/** Bounded parallel deletes with a lock check every LOCK_CHECK_EVERY. */
class Sweeper {
  private static readonly LOCK_CHECK_EVERY = 256
  private readonly group: TaskGroup
  private seen = 0
  private removed = 0

  constructor(
    private readonly opts: PruneOptions,
    private readonly res: PruneResult,
  ) {
    this.group = new TaskGroup(opts.concurrency ?? 16)
  }

  async remove(remove: () => Promise<void>, size: number, count: () => void): Promise<void> {
    this.seen++
    count()
    this.res.bytesFreed += size
    if (this.opts.dryRun) return
    if (++this.removed % Sweeper.LOCK_CHECK_EVERY === 0) {
      await this.group.wait()
      await this.opts.assertHeld?.()
    }
    await this.group.spawn(remove)
    this.opts.onProgress?.(this.seen, this.removed)
  }

  wait(): Promise<void> {
    return this.group.wait()
  }
}
