// The forget use case as the CLI and job runner see it: choose the
// snapshots (named ones, or a retention policy per disk), then remove them
// with chain merging (forget.ts). The caller holds the exclusive lock.
//
// 1. Named snapshots (ids, prefixes, DISK@latest) are resolved; or the
//    policy is applied to every disk (or the one given) with the clock,
//    to the snapshots passing the filter, per group (--group-by).
//    A named id whose manifest is damaged (unreadable) is removed as is.
// 2. forgetSnapshots removes them (or, with dryRun, only plans).
// 3. With prune, runPrune follows under the same lock (a dry run counts
//    what would be freed as if the forget had happened).
import {UsageError} from '../errors.js'
import type {Manifest} from '../repo/manifest.js'
import type {Repository} from '../repo/repository.js'
import {NotFoundError} from '../errors.js'
import {matchDamaged, selectSnapshot} from '../repo/select.js'
import {forgetSnapshots, type ForgetResult} from './forget.js'
import {runPrune, type PruneResult} from './prune.js'
import {matchesFilter, type SnapshotFilter} from '../repo/snapshot-filter.js'
import {applyPolicy, isEmptyPolicy, parseWithin, type GroupKey, type Kept, type RetentionPolicy} from './retention.js'

export interface RunForgetOptions {
  /** Snapshot selectors; exclusive with a policy. */
  snapshots?: string[]
  policy?: RetentionPolicy
  disk?: string
  dryRun?: boolean
  now?: () => Date
  assertHeld?: () => Promise<void>
  onLog?: (line: string) => void
  /** Prune afterwards (forget --prune). */
  prune?: boolean
  /** Only snapshots passing --host / --source / --tag are selected or subject to the policy. */
  filter?: SnapshotFilter
  /** What the policy counts separately (default: each disk). */
  groupBy?: GroupKey[]
}

export interface RunForgetResult extends ForgetResult {
  /** What the policy kept and why (empty for named snapshots). */
  kept: Kept[]
  prune: PruneResult | null
}

export async function runForget(repo: Repository, opts: RunForgetOptions): Promise<RunForgetResult> {
  const named = opts.snapshots ?? []
  const policy = opts.policy ?? {}
  if (named.length > 0 && !isEmptyPolicy(policy)) {
    throw new UsageError('give snapshots to forget or a --keep-* policy, not both')
  }
  if (named.length === 0 && isEmptyPolicy(policy)) {
    throw new UsageError('nothing to forget: name snapshots or give a policy', {hint: 'e.g. --keep-daily 7 --keep-weekly 4'})
  }
  if (policy.within) parseWithin(policy.within)
  let remove: Manifest[]
  let kept: Kept[] = []
  const damaged = new Set<string>()
  if (named.length > 0) {
    const chosen = new Map<string, Manifest>()
    for (const sel of named) {
      try {
        const m = await selectSnapshot(repo, sel, opts.filter)
        chosen.set(m.id, m)
      } catch (e) {
        // A snapshot whose manifest is damaged can still be forgotten by id.
        const id = e instanceof NotFoundError ? matchDamaged(repo, sel) : null
        if (id === null) throw e
        damaged.add(id)
      }
    }
    remove = [...chosen.values()]
  } else {
    const now = (opts.now ?? (() => new Date()))()
    const considered = (await repo.listSnapshots(opts.disk)).filter((m) => matchesFilter(m, opts.filter))
    const r = applyPolicy(considered, policy, now, opts.groupBy)
    remove = r.remove
    kept = r.keep
  }
  const res = await forgetSnapshots(
    repo,
    remove.map((m) => m.id),
    {dryRun: opts.dryRun, assertHeld: opts.assertHeld, onLog: opts.onLog, damaged},
  )
  if (!opts.prune) return {...res, kept, prune: null}
  const planned = opts.dryRun ? {removed: new Set(res.removed.map((m) => m.id)), rebased: new Set(res.rebased.map((r) => r.id))} : undefined
  const prune = await runPrune(repo, {dryRun: opts.dryRun, assertHeld: opts.assertHeld, plannedForget: planned})
  return {...res, kept, prune}
}
