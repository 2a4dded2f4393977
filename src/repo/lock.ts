// Repository locks. A lock is a small plaintext JSON object under locks/
// naming host, pid, kind and times. Shared locks (backup, restore, check,
// copy, export) coexist; an exclusive lock (prune, forget, unlock of live
// locks) excludes every other lock.
//
// Acquire: (1) list locks; (2) if a live conflicting lock exists, wait and
// retry until `wait` runs out, then throw LockedError; (3) write our lock;
// (4) list again: if a live conflicting lock appeared meanwhile, remove ours
// and go back to (1) after a random pause (two racing writers both back off).
// A held lock is refreshed every REFRESH_MS. A lock is stale when its pid is
// dead on this host, or it was not refreshed for STALE_MS (other hosts).
import {randomBytes} from 'node:crypto'
import {hostname} from 'node:os'
import {LockedError} from '../errors.js'
import type {Backend} from '../backend/types.js'

export const REFRESH_MS = 2 * 60_000
export const STALE_MS = 15 * 60_000

export interface LockInfo {
  host: string
  pid: number
  exclusive: boolean
  command: string
  created: string
  refreshed: string
}

export interface StoredLock {
  name: string
  info: LockInfo
  stale: boolean
}

export interface LockOptions {
  exclusive: boolean
  command: string
  /** How long to wait for a conflicting lock to go away, in ms. */
  waitMs?: number
  now?: () => number
  sleep?: (ms: number) => Promise<void>
}

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

export function isStale(info: LockInfo, now: number, host = hostname()): boolean {
  if (info.host === host && !pidAlive(info.pid)) return true
  const refreshed = Date.parse(info.refreshed)
  return !Number.isFinite(refreshed) || now - refreshed > STALE_MS
}

export async function listLocks(backend: Backend, now = Date.now()): Promise<StoredLock[]> {
  const out: StoredLock[] = []
  for await (const obj of backend.list('locks/')) {
    try {
      const info = JSON.parse((await backend.load(obj.name)).toString('utf8')) as LockInfo
      out.push({name: obj.name, info, stale: isStale(info, now)})
    } catch {
      // A lock removed while listing, or half-written by a crash: the latter is stale.
      if (await backend.stat(obj.name)) {
        out.push({name: obj.name, info: {host: '?', pid: 0, exclusive: false, command: '?', created: '', refreshed: ''}, stale: true})
      }
    }
  }
  return out
}

export class RepoLock {
  private timer?: NodeJS.Timeout
  private released = false

  private constructor(
    private readonly backend: Backend,
    readonly name: string,
    private info: LockInfo,
  ) {}

  static async acquire(backend: Backend, opts: LockOptions): Promise<RepoLock> {
    const now = opts.now ?? Date.now
    const sleep = opts.sleep ?? defaultSleep
    const deadline = now() + (opts.waitMs ?? 0)
    for (;;) {
      const holder = await conflicting(backend, opts.exclusive, now(), undefined)
      if (!holder) {
        const stamp = new Date(now()).toISOString()
        const info: LockInfo = {host: hostname(), pid: process.pid, exclusive: opts.exclusive, command: opts.command, created: stamp, refreshed: stamp}
        const name = `locks/${randomBytes(16).toString('hex')}`
        await backend.save(name, Buffer.from(JSON.stringify(info)))
        const racer = await conflicting(backend, opts.exclusive, now(), name)
        if (!racer) {
          const lock = new RepoLock(backend, name, info)
          lock.startRefresh(now)
          return lock
        }
        await backend.remove(name)
        if (now() >= deadline) throw lockedError(backend, racer.info)
        await sleep(200 + Math.random() * 800)
        continue
      }
      if (now() >= deadline) throw lockedError(backend, holder.info)
      await sleep(Math.min(2000, Math.max(50, deadline - now())))
    }
  }

  private lastRefreshed = Date.now()
  private now: () => number = Date.now

  private startRefresh(now: () => number): void {
    this.now = now
    this.lastRefreshed = now()
    this.timer = setInterval(() => {
      const stamp = now()
      this.info = {...this.info, refreshed: new Date(stamp).toISOString()}
      this.backend
        .save(this.name, Buffer.from(JSON.stringify(this.info)))
        .then(() => {
          this.lastRefreshed = stamp
        })
        .catch(() => {})
    }, REFRESH_MS)
    this.timer.unref()
  }

  /**
   * Throws LockedError unless the lock is still ours and fresh. Called before
   * a snapshot is committed: a process that lost its lock (e.g. it could not
   * refresh it through a network outage, so a prune may have run meanwhile)
   * must not write a manifest that could point at pruned chunks.
   */
  async assertHeld(): Promise<void> {
    const fresh = this.now() - this.lastRefreshed < STALE_MS - REFRESH_MS
    if (!fresh || !(await this.backend.stat(this.name))) {
      throw new LockedError(`lost the lock on ${this.backend.location} (not refreshed or removed by another process): the snapshot was not written`, {
        hint: 'run the backup again; chunks already written are reused',
      })
    }
  }

  async release(): Promise<void> {
    if (this.released) return
    this.released = true
    clearInterval(this.timer)
    await this.backend.remove(this.name)
  }
}

async function conflicting(backend: Backend, exclusive: boolean, now: number, own: string | undefined): Promise<StoredLock | undefined> {
  const locks = await listLocks(backend, now)
  return locks.find((l) => l.name !== own && !l.stale && (exclusive || l.info.exclusive))
}

function lockedError(backend: Backend, holder: LockInfo): LockedError {
  return new LockedError(
    `repository ${backend.location} is locked ${holder.exclusive ? 'exclusively ' : ''}by "${holder.command}" (pid ${holder.pid} on ${holder.host}, since ${holder.created})`,
    {hint: 'wait for it to finish, raise --lock-wait, or run "vdsnap unlock" if that process is gone'},
  )
}

/** Removes stale locks (or every lock with `all`); returns the names removed. */
export async function breakLocks(backend: Backend, all: boolean): Promise<StoredLock[]> {
  const removed: StoredLock[] = []
  for (const l of await listLocks(backend)) {
    if (all || l.stale) {
      await backend.remove(l.name)
      removed.push(l)
    }
  }
  return removed
}
