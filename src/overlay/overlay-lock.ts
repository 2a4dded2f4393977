// One writer per overlay file: `FILE.lock` beside it names the host and pid
// of the `serve` using it. Two servers writing one overlay would interleave
// their map pages; a restore reading an overlay that a server is changing
// would copy a disk that never existed. A lock whose process is gone (same
// host) is stale and taken over; another host's lock is respected.
import {hostname} from 'node:os'
import {readFile, rm, writeFile} from 'node:fs/promises'
import {LockedError, toVdsnapError} from '../errors.js'

interface LockInfo {
  host: string
  pid: number
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

async function holder(lockPath: string): Promise<LockInfo | undefined> {
  const text = await readFile(lockPath, 'utf8').catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? undefined : Promise.reject(toVdsnapError(e, `reading ${lockPath}`))))
  if (text === undefined) return undefined
  try {
    const info = JSON.parse(text) as LockInfo
    if (info.host === hostname() && (info.pid === process.pid || !alive(info.pid))) return undefined
    return info
  } catch {
    return undefined // half-written by a process that died: stale
  }
}

function inUse(path: string, h: LockInfo): LockedError {
  return new LockedError(`overlay ${path} is in use by process ${h.pid} on ${h.host}`, {hint: `stop that "vdsnap serve" first, or remove ${path}.lock if it is gone`})
}

/** Throws LockedError when a live process holds the overlay (for readers). */
export async function assertOverlayFree(path: string): Promise<void> {
  const h = await holder(`${path}.lock`)
  if (h) throw inUse(path, h)
}

/** Takes the overlay's lock for this process; resolves with its release. */
export async function lockOverlay(path: string): Promise<() => Promise<void>> {
  const lockPath = `${path}.lock`
  const text = JSON.stringify({host: hostname(), pid: process.pid})
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await writeFile(lockPath, text, {flag: 'wx'})
      return () => rm(lockPath, {force: true})
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw toVdsnapError(e, `locking overlay ${path}`)
      const h = await holder(lockPath)
      if (h) throw inUse(path, h)
      await rm(lockPath, {force: true}) // stale: take it over
    }
  }
  throw new LockedError(`overlay ${path}: its lock file keeps changing`, {hint: 'another vdsnap serve is starting with it'})
}
