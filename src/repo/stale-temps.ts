// Leftovers of saves that died: the local and SFTP backends write
// `.tmp-<random>` next to the final name and rename it; a process killed, or
// a connection cut, in between leaves the temporary object, which no listing
// shows. prune removes those older than the lock rule's limit (STALE_MS):
// prune holds the exclusive lock, so no live command holds a lock, and a
// writer that could still be running would have lost its lock by that age
// (it commits nothing more). Every backend that offers listTemps is swept.
// A key slot written by "key add" or "key passwd" that died before its
// rename is such a temporary object: it goes at the next prune after
// STALE_MS, or at the start of the next key command (key-admin.ts).
import type {StorageBackend} from '../backend/types.js'
import {STALE_MS} from './lock.js'

export interface TempSweep {
  files: number
  bytes: number
}

/** How old a temporary object must be before it counts as a dead save's. */
export const TEMP_STALE_MS = STALE_MS

/** Removes the backend's temporary objects last modified before `cutoffMs` (only those below `under`, when given). */
export async function removeStaleTemps(backend: StorageBackend, cutoffMs: number, dryRun: boolean, under?: string): Promise<TempSweep> {
  const out: TempSweep = {files: 0, bytes: 0}
  if (!backend.listTemps) return out
  const stale: string[] = []
  for await (const t of backend.listTemps()) {
    if (t.mtimeMs >= cutoffMs || (under !== undefined && !t.name.startsWith(under))) continue
    out.files++
    out.bytes += t.size
    stale.push(t.name)
  }
  if (!dryRun) for (const name of stale) await backend.remove(name)
  return out
}
