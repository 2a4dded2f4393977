// Snapshot selectors: a full id, a unique id prefix, "latest", or
// "DISK@latest" / "DISK@<prefix>", among the snapshots that pass the
// --host / --source / --tag filter (snapshot-filter.ts). A bare "latest"
// names a snapshot only when the repository holds one disk: with several it
// would pick whichever disk was backed up last, and restore another VM over
// this one.
import {NotFoundError, UsageError} from '../errors.js'
import type {Manifest} from './manifest.js'
import type {Repository} from './repository.js'
import {describeFilter, matchesFilter, type SnapshotFilter} from './snapshot-filter.js'

export async function selectSnapshot(repo: Repository, selector: string, filter?: SnapshotFilter): Promise<Manifest> {
  const at = selector.lastIndexOf('@')
  const disk = at >= 0 ? selector.slice(0, at) : undefined
  const what = at >= 0 ? selector.slice(at + 1) : selector
  const all = (await repo.listSnapshots(disk)).filter((m) => matchesFilter(m, filter))
  if (what === 'latest') {
    const which = disk ? `disk "${disk}" has no snapshots` : `${repo.location} has no snapshots`
    if (all.length === 0) throw new NotFoundError(`${which}${describeFilter(filter)}${disk ? ` in ${repo.location}` : ''}`, {code: 'SNAPSHOT_NOT_FOUND'})
    if (disk === undefined) assertOneDisk(repo, all)
    return all[all.length - 1]!
  }
  if (!/^[0-9a-f]{1,64}$/.test(what)) throw new UsageError(`"${selector}" is not a snapshot id, prefix, "latest" or DISK@latest`)
  const hits = all.filter((m) => m.id.startsWith(what))
  if (hits.length === 0) throw new NotFoundError(`no snapshot${describeFilter(filter)} matches "${selector}" in ${repo.location}`, {hint: 'list them with "vdsnap snapshots"', code: 'SNAPSHOT_NOT_FOUND'})
  if (hits.length > 1) throw new UsageError(`"${selector}" matches ${hits.length} snapshots`, {hint: 'give more digits of the id', code: 'SNAPSHOT_AMBIGUOUS'})
  return hits[0]!
}

function assertOneDisk(repo: Repository, all: Manifest[]): void {
  const disks = [...new Set(all.map((m) => m.disk))].sort()
  if (disks.length < 2) return
  throw new UsageError(`"latest" is ambiguous: ${repo.location} holds ${disks.length} disks (${disks.join(', ')})`, {
    hint: `say which with DISK@latest, e.g. ${disks[0]}@latest`,
    code: 'SNAPSHOT_AMBIGUOUS',
  })
}

/**
 * The damaged manifest (one the listing skipped) a selector names by id or
 * prefix, or null. Only after a listing, so forget can remove a snapshot
 * that can no longer be read.
 */
export function matchDamaged(repo: Repository, selector: string): string | null {
  if (!/^[0-9a-f]{1,64}$/.test(selector)) return null
  const hits = [...repo.damaged.keys()].filter((id) => id.startsWith(selector))
  if (hits.length > 1) throw new UsageError(`"${selector}" matches ${hits.length} damaged snapshots`, {hint: 'give more digits of the id', code: 'SNAPSHOT_AMBIGUOUS'})
  return hits[0] ?? null
}
