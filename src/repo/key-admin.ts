// Key slot administration: add a password, change the one in use, remove
// one, list.
// The master key never changes, so no data is re-encrypted.
import {NotFoundError, UsageError} from '../errors.js'
import {removeStaleTemps, TEMP_STALE_MS} from './stale-temps.js'
import {listKeySlots, makeKeySlot, saveKeySlot} from './keys.js'
import type {Repository} from './repository.js'

export interface KeyListing {
  id: string
  current: boolean
  created: string
  host: string
  user: string
  kdf: string
}

function requireEncrypted(repo: Repository) {
  if (!repo.master) throw new UsageError(`${repo.location} is not encrypted: it has no keys`, {hint: 'passwords apply to repositories made without --no-encryption'})
  return repo.master
}

export async function addKey(repo: Repository, password: string): Promise<string> {
  await sweepKeyTemps(repo, false)
  const id = await saveKeySlot(repo.backend, await makeKeySlot(password, requireEncrypted(repo)))
  await sweepKeyTemps(repo, false)
  return id
}

/**
 * A key command killed between writing its slot and renaming it leaves a
 * whole key slot under a temporary name. Key commands remove it at their
 * start (and add/passwd at their end): under the exclusive lock (passwd,
 * remove) every one, since no key add can be running; under add's shared
 * lock only those older than the lock rule's limit (no live save takes that
 * long), as another key add may be writing its own.
 */
async function sweepKeyTemps(repo: Repository, exclusive: boolean): Promise<void> {
  await removeStaleTemps(repo.backend, exclusive ? Number.POSITIVE_INFINITY : Date.now() - TEMP_STALE_MS, false, 'keys/')
}

/** Names of the key slots left under a temporary name (reported by key list and check, which remove nothing). */
export async function keySlotTemps(repo: Repository): Promise<string[]> {
  const out: string[] = []
  if (repo.backend.listTemps) for await (const t of repo.backend.listTemps()) if (t.name.startsWith('keys/')) out.push(t.name)
  return out.sort()
}

/** The warning for leftovers keySlotTemps found, or none. */
export function keySlotTempsWarning(names: string[]): string | undefined {
  if (names.length === 0) return undefined
  return `${names.length === 1 ? 'a key slot was' : `${names.length} key slots were`} left under a temporary name by an interrupted key command (${names.join(', ')}): "vdsnap key passwd" or "vdsnap key remove" removes ${names.length === 1 ? 'it' : 'them'} at its start, prune once older than 15 minutes`
}

/** Replaces the slot that opened the repository with one for `password`. */
export async function changePassword(repo: Repository, password: string): Promise<{added: string; removed: string}> {
  const master = requireEncrypted(repo)
  await sweepKeyTemps(repo, true)
  const added = await saveKeySlot(repo.backend, await makeKeySlot(password, master))
  const removed = repo.slotId!
  await repo.backend.remove(`keys/${removed}`)
  await sweepKeyTemps(repo, true)
  return {added, removed}
}

/**
 * Removes the slot whose id is or starts with `idPrefix`. Refuses the slot
 * that opened the repository (use "key passwd" to replace it), and so never
 * removes the last one: the repository stays openable.
 */
export async function removeKey(repo: Repository, idPrefix: string): Promise<string> {
  requireEncrypted(repo)
  await sweepKeyTemps(repo, true)
  const ids = (await listKeySlots(repo.backend)).map((s) => s.id).filter((id) => id.startsWith(idPrefix))
  if (idPrefix === '' || ids.length === 0) throw new NotFoundError(`no key slot "${idPrefix}" in ${repo.location}`, {hint: 'see "vdsnap key list"'})
  if (ids.length > 1) throw new UsageError(`key slot "${idPrefix}" is ambiguous in ${repo.location} (${ids.length} match)`, {hint: 'give more of its id'})
  const id = ids[0]!
  if (id === repo.slotId) {
    throw new UsageError(`key slot ${id} is the one this password opened`, {hint: 'open the repository with another password to remove it, or use "vdsnap key passwd" to replace it'})
  }
  await repo.backend.remove(`keys/${id}`)
  return id
}

export async function listKeys(repo: Repository): Promise<KeyListing[]> {
  requireEncrypted(repo)
  return (await listKeySlots(repo.backend)).map(({id, slot}) => ({
    id,
    current: id === repo.slotId,
    created: slot.created,
    host: slot.host,
    user: slot.user,
    kdf: `${slot.kdf} N=${slot.N} r=${slot.r} p=${slot.p}`,
  }))
}
