// Snapshot selectors: a full id, a unique id prefix, "latest", or
// "DISK@latest" / "DISK@<prefix>".
import {NotFoundError, UsageError} from '../errors.js'
import type {Manifest} from './manifest.js'
import type {Repository} from './repository.js'

export async function selectSnapshot(repo: Repository, selector: string): Promise<Manifest> {
  const at = selector.lastIndexOf('@')
  const disk = at >= 0 ? selector.slice(0, at) : undefined
  const what = at >= 0 ? selector.slice(at + 1) : selector
  const all = await repo.listSnapshots(disk)
  if (what === 'latest') {
    if (all.length === 0) throw new NotFoundError(disk ? `disk "${disk}" has no snapshots in ${repo.location}` : `${repo.location} has no snapshots`)
    return all[all.length - 1]!
  }
  if (!/^[0-9a-f]{1,64}$/.test(what)) throw new UsageError(`"${selector}" is not a snapshot id, prefix, "latest" or DISK@latest`)
  const hits = all.filter((m) => m.id.startsWith(what))
  if (hits.length === 0) throw new NotFoundError(`no snapshot matches "${selector}" in ${repo.location}`, {hint: 'list them with "vdsnap snapshots"'})
  if (hits.length > 1) throw new UsageError(`"${selector}" matches ${hits.length} snapshots`, {hint: 'give more digits of the id'})
  return hits[0]!
}

/**
 * The damaged manifest (one the listing skipped) a selector names by id or
 * prefix, or null. Only after a listing, so forget can remove a snapshot
 * that can no longer be read.
 */
export function matchDamaged(repo: Repository, selector: string): string | null {
  if (!/^[0-9a-f]{1,64}$/.test(selector)) return null
  const hits = [...repo.damaged.keys()].filter((id) => id.startsWith(selector))
  if (hits.length > 1) throw new UsageError(`"${selector}" matches ${hits.length} damaged snapshots`, {hint: 'give more digits of the id'})
  return hits[0] ?? null
}
