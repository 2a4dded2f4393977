// forget: remove snapshots, merging each removed delta into the kept
// snapshot that rests on it. Metadata only: no chunk is read, written or
// deleted (prune does that), and every kept snapshot still resolves to the
// same entry per block, so it restores byte-identical.
//
// The caller holds the repository's exclusive lock.
//
// 1. Load every manifest. R = the snapshots to remove.
// 2. Rebase: for each kept snapshot K (oldest first) whose parent is in R,
//    walk up through the removed ancestors to the nearest kept one, P (or
//    none). Resolve K (its chain is still intact) and write a NEW index:
//    - full (every resolved entry) when P is none, or K or any removed
//      ancestor in between had a full index (so chains never grow past a
//      synthetic full); its map is the union below, or every block without P;
//    - otherwise a delta on P: the map is the union of the maps of K and the
//      removed ancestors (every block that may differ from P), the entries
//      K's resolved entries for those blocks.
//    Then rewrite snapshots/<K> in place (an atomic replace) with parent P,
//    the new index, kind and chain length. K's id, time, tags and stats stay.
// 3. Delete the removed manifests, descendants before ancestors, so that a
//    removed snapshot still visible after a crash keeps an intact chain.
// 4. Recompute chainLength down every chain; rewrite manifests whose value
//    changed (a stale value only shifts when the next synthetic full comes).
// 5. Delete the indexes of removed snapshots and the replaced indexes of
//    rebased ones, unless a remaining manifest still names them (indexes are
//    content-addressed, two snapshots may share one).
// Crash safety: after every single write of steps 2–5 each visible
// snapshot resolves to the same entries as before; a re-run finishes the
// job (an index written in step 2 whose manifest was not is left to prune).
import {ChangedBlockMap} from '../cbt/changed-block-map.js'
import {DataError, NotFoundError} from '../errors.js'
import {resolveSnapshot} from '../repo/chain.js'
import type {Manifest} from '../repo/manifest.js'
import type {Repository} from '../repo/repository.js'

export interface ForgetOptions {
  dryRun?: boolean
  /** Called before the first write and before deletions (lock check). */
  assertHeld?: () => Promise<void>
  onLog?: (line: string) => void
  /**
   * Ids of damaged (unreadable) manifests to delete as well. Their indexes
   * are unknown and left to prune; snapshots resting on them were already
   * broken and stay as they are.
   */
  damaged?: Iterable<string>
}

export interface RebasedSnapshot {
  id: string
  disk: string
  /** The parent it had, and the parent it rests on now (null: a new base). */
  oldParent: string | null
  newParent: string | null
  indexKind: 'full' | 'delta'
}

export interface ForgetResult {
  dryRun: boolean
  removed: Manifest[]
  rebased: RebasedSnapshot[]
  manifestsRewritten: number
  indexesRemoved: number
  /** Damaged manifests deleted (ids). */
  damagedRemoved: string[]
}

interface RebasePlan {
  kept: Manifest
  parent: Manifest | null
  /** The removed ancestors between kept and parent, newest first. */
  run: Manifest[]
  full: boolean
}

/** Removes the given snapshots (full ids), merging chains; see the module comment. */
export async function forgetSnapshots(repo: Repository, ids: Iterable<string>, opts: ForgetOptions = {}): Promise<ForgetResult> {
  const all = await repo.listSnapshots()
  const byId = new Map(all.map((m) => [m.id, m]))
  const remove = new Set(ids)
  for (const id of remove) if (!byId.has(id)) throw new NotFoundError(`snapshot ${id.slice(0, 8)} does not exist in ${repo.location}`)
  const plans = planRebases(all, byId, remove)
  const removed = all.filter((m) => remove.has(m.id))
  const damaged = [...new Set(opts.damaged ?? [])].filter((id) => !byId.has(id))
  const result: ForgetResult = {dryRun: opts.dryRun ?? false, removed, rebased: plans.map(describePlan), manifestsRewritten: 0, indexesRemoved: 0, damagedRemoved: damaged}
  if (opts.dryRun) return result
  if (remove.size > 0 || damaged.length > 0) await opts.assertHeld?.()
  for (const id of damaged) {
    await repo.removeManifest(id)
    repo.damaged.delete(id)
    opts.onLog?.(`removed damaged snapshot ${id.slice(0, 8)}`)
  }
  const replaced: string[] = []
  for (const plan of plans) {
    replaced.push(plan.kept.index)
    const next = await rebase(repo, plan)
    byId.set(next.id, next)
    result.manifestsRewritten++
    opts.onLog?.(`snapshot ${next.id.slice(0, 8)} now rests on ${next.parent ? next.parent.slice(0, 8) : 'nothing'} (${next.indexKind} index)`)
  }
  if (remove.size > 0) await opts.assertHeld?.()
  const depth = depths(byId)
  for (const m of [...removed].sort((a, b) => depth(b) - depth(a))) {
    await repo.removeManifest(m.id)
    byId.delete(m.id)
  }
  result.manifestsRewritten += await fixChainLengths(repo, byId)
  const inUse = new Set([...byId.values()].map((m) => m.index))
  for (const index of new Set([...removed.map((m) => m.index), ...replaced])) {
    if (inUse.has(index)) continue
    await repo.removeIndex(index)
    result.indexesRemoved++
  }
  return result
}

function planRebases(all: Manifest[], byId: Map<string, Manifest>, remove: Set<string>): RebasePlan[] {
  const plans: RebasePlan[] = []
  for (const kept of all) {
    if (remove.has(kept.id) || !kept.parent || !remove.has(kept.parent)) continue
    const run: Manifest[] = []
    let parent: Manifest | null = null
    for (let id: string | null = kept.parent; id; ) {
      const m = byId.get(id)
      if (!m) throw new DataError(`snapshot ${kept.id.slice(0, 8)}: its chain is broken at ${id.slice(0, 8)}`, {hint: 'run "vdsnap check"'})
      if (!remove.has(id)) {
        parent = m
        break
      }
      if (run.length > all.length) throw new DataError(`snapshot ${kept.id.slice(0, 8)} has a loop in its chain`)
      run.push(m)
      id = m.parent
    }
    const full = parent === null || kept.indexKind === 'full' || run.some((m) => m.indexKind === 'full')
    plans.push({kept, parent, run, full})
  }
  return plans // `all` is oldest first, so plans are too
}

function describePlan(p: RebasePlan): RebasedSnapshot {
  return {id: p.kept.id, disk: p.kept.disk, oldParent: p.kept.parent, newParent: p.parent?.id ?? null, indexKind: p.full ? 'full' : 'delta'}
}

/** Steps 2: the merged index, then the rewritten manifest. Returns the new manifest. */
async function rebase(repo: Repository, plan: RebasePlan): Promise<Manifest> {
  const {kept, parent, run, full} = plan
  const resolved = await resolveSnapshot(repo, kept)
  const {blockCount} = resolved
  let cbm: ChangedBlockMap
  if (!parent) cbm = ChangedBlockMap.all(blockCount)
  else {
    cbm = new ChangedBlockMap(blockCount)
    for (const m of [kept, ...run]) cbm.union((await repo.loadIndex(m.index)).cbm)
  }
  const index = await repo.saveIndex(full ? resolved.entries.asFull(cbm) : resolved.entries.delta(cbm))
  const next: Manifest = {
    ...kept,
    parent: parent?.id ?? null,
    index,
    indexKind: full ? 'full' : 'delta',
    chainLength: full || !parent ? 0 : parent.chainLength + 1,
  }
  await repo.saveManifest(next)
  return next
}

/** Distance from a snapshot to the root of its chain (memoized). */
function depths(byId: Map<string, Manifest>): (m: Manifest) => number {
  const memo = new Map<string, number>()
  const depth = (m: Manifest, guard = 0): number => {
    const known = memo.get(m.id)
    if (known !== undefined) return known
    const parent = m.parent ? byId.get(m.parent) : undefined
    const d = parent && guard < byId.size ? depth(parent, guard + 1) + 1 : 0
    memo.set(m.id, d)
    return d
  }
  return (m) => depth(m)
}

/** Step 4: chainLength = 0 for a full index, else the parent's + 1. Returns manifests rewritten. */
async function fixChainLengths(repo: Repository, byId: Map<string, Manifest>): Promise<number> {
  const depth = depths(byId)
  const memo = new Map<string, number>()
  let rewritten = 0
  for (const m of [...byId.values()].sort((a, b) => depth(a) - depth(b))) {
    const parentLength = m.parent ? memo.get(m.parent) : undefined
    const length = m.indexKind === 'full' || parentLength === undefined ? (m.indexKind === 'full' ? 0 : m.chainLength) : parentLength + 1
    memo.set(m.id, length)
    if (length !== m.chainLength) {
      const fixed = {...m, chainLength: length}
      await repo.saveManifest(fixed)
      byId.set(m.id, fixed)
      rewritten++
    }
  }
  return rewritten
}
