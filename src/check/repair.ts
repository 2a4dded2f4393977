// repair snapshots: remove manifests that can no longer be read.
//
// 1. List every manifest; those that fail to decode or authenticate (a
//    DataError, never an I/O error) are the damaged ones.
// 2. Report each with the reason (the caller shows this before anything
//    is removed; a dry run stops here).
// 3. Check the exclusive lock, then delete exactly those manifests. A
//    readable manifest is never touched; indexes and chunks only the
//    damaged snapshots used are left to prune.
import type {Repository} from '../repo/repository.js'

export interface RepairOptions {
  dryRun?: boolean
  /** Called with the plan before anything is removed. */
  onPlan?: (damaged: {id: string; reason: string}[]) => void
  assertHeld?: () => Promise<void>
}

export interface RepairResult {
  dryRun: boolean
  removed: {id: string; reason: string}[]
  intact: number
}

export async function repairSnapshots(repo: Repository, opts: RepairOptions = {}): Promise<RepairResult> {
  const readable = await repo.listSnapshots()
  const damaged = [...repo.damaged].map(([id, reason]) => ({id, reason})).sort((a, b) => a.id.localeCompare(b.id))
  opts.onPlan?.(damaged)
  if (!opts.dryRun && damaged.length > 0) {
    await opts.assertHeld?.()
    for (const {id} of damaged) {
      await repo.removeManifest(id)
      repo.damaged.delete(id)
    }
  }
  return {dryRun: opts.dryRun ?? false, removed: damaged, intact: readable.length}
}
