// Repository locks. A lock is a small plaintext JSON object under locks/
// naming host, pid, kind and times. Shared locks (backup, restore, check,
// copy, export) coexist; an exclusive lock (prune, forget, unlock of live
// locks) excludes every other lock.
//
// Acquire: (1) list locks; (2) if a live conflicting lock exists, wait and
// retry until `wait` runs out, then throw LockedError; (3) write our lock;
// (4) list again: if a live conflicting lock appeared meanwhile, remove ours
// and go back to (1) after a random pause (two racing writers both back off).
// Two processes that write their locks at the same moment both see the
// other in (4) and both back off; each then retries after its own random
// pause for at least COLLISION_RETRY_MS even with no --lock-wait, so one of
// them gets through instead of both failing with "locked".
// A held lock is refreshed every REFRESH_MS. A lock is stale when its pid is
// dead on this host, or it was not refreshed for STALE_MS (other hosts), or
// its file is unreadable (lock-info.ts).
//
// Lost for good: other processes may ignore a stale lock (a prune then
// deletes what it thinks unreferenced), so the holder must assume the worst
// as soon as its lock COULD have looked stale: more than STALE_MS between
// two successful refreshes (by the holder's injected clock; a paused process
// or an unreachable storage), or the lock file removed or rewritten by
// someone else. From then on the lock is lost: refresh() never writes it
// again (that would revive a lock another process already overrode) and
// assertHeld() throws LockedError, so nothing is committed on its strength.
import {randomBytes} from 'node:crypto'
import {hostname} from 'node:os'
import {LockedError, NotFoundError} from '../errors.js'
import type {Backend} from '../backend/types.js'
import {onInterrupt} from '../flow/interrupt.js'
import {lockedError, lockWriteError} from './lock-errors.js'
import {isStale, parseLockInfo, STALE_MS, type LockInfo} from './lock-info.js'

export {isStale, STALE_MS, type LockInfo} from './lock-info.js'
export {LockWriteError} from './lock-errors.js'

export const REFRESH_MS = 2 * 60_000
/** How long two colliding lock attempts keep retrying, whatever --lock-wait says. */
export const COLLISION_RETRY_MS = 5_000

export interface StoredLock {
  name: string
  /** Null when the file is unreadable (then `unreadable` says why and the lock is stale). */
  info: LockInfo | null
  unreadable?: string
  stale: boolean
}

export interface LockOptions {
  exclusive: boolean
  command: string
  /** How long to wait for a conflicting lock to go away, in ms. */
  waitMs?: number
  now?: () => number
  sleep?: (ms: number) => Promise<void>
  /** Uniform in [0, 1): the back-off jitter after a collision. */
  random?: () => number
  /** Called once, when a conflicting lock first makes this attempt wait (not when it fails at once). */
  onWait?: (holder: LockInfo) => void
}

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

export async function listLocks(backend: Backend, now = Date.now()): Promise<StoredLock[]> {
  const out: StoredLock[] = []
  for await (const obj of backend.list('locks/')) {
    let text: string
    try {
      text = (await backend.load(obj.name)).toString('utf8')
    } catch (e) {
      if (e instanceof NotFoundError) continue // released while we listed
      throw e
    }
    const info = parseLockInfo(text)
    if ('unreadable' in info) out.push({name: obj.name, info: null, unreadable: info.unreadable, stale: true})
    else out.push({name: obj.name, info, stale: isStale(info, now)})
  }
  return out
}

export class RepoLock {
  private timer?: NodeJS.Timeout
  private released = false
  /** Why the lock was lost; once set it stays set (see the module comment). */
  private lostReason?: string
  /** The lock file's text as we last stored it, and the clock time stamped in it. */
  private written: string
  private lastRefreshed: number
  /** Text of a save that failed: it may still have landed, so it counts as ours too. */
  private maybeWritten?: string
  /** refresh() and assertHeld() run one at a time, so neither sees the other's half-done save. */
  private busy: Promise<unknown> = Promise.resolve()
  /** Unregisters the release that SIGINT / SIGTERM would run (src/flow/interrupt.ts). */
  private forgetOnInterrupt = () => {}
  private releasing?: Promise<void>

  private constructor(
    private readonly backend: Backend,
    readonly name: string,
    private info: LockInfo,
    private readonly now: () => number,
    stamp: number,
  ) {
    this.written = JSON.stringify(info)
    this.lastRefreshed = stamp
  }

  static async acquire(backend: Backend, opts: LockOptions): Promise<RepoLock> {
    const now = opts.now ?? Date.now
    const sleep = opts.sleep ?? defaultSleep
    const random = opts.random ?? Math.random
    const deadline = now() + (opts.waitMs ?? 0)
    const collisionDeadline = Math.max(deadline, now() + COLLISION_RETRY_MS)
    let waited = false
    for (;;) {
      const holder = await conflicting(backend, opts.exclusive, now(), undefined)
      if (!holder) {
        const stamp = now()
        const iso = new Date(stamp).toISOString()
        const info: LockInfo = {host: hostname(), pid: process.pid, exclusive: opts.exclusive, command: opts.command, created: iso, refreshed: iso}
        const name = `locks/${randomBytes(16).toString('hex')}`
        // Interrupted from here on, the file must go even if its save is still in flight.
        const saving = backend.save(name, Buffer.from(JSON.stringify(info)))
        const forget = onInterrupt(() => saving.then(() => backend.remove(name), () => {}))
        let racer: StoredLock | undefined
        try {
          await saving.catch((e: unknown) => Promise.reject(lockWriteError(backend.location, e)))
          racer = await conflicting(backend, opts.exclusive, now(), name)
        } catch (e) {
          forget()
          throw e
        }
        if (!racer) {
          const lock = new RepoLock(backend, name, info, now, stamp)
          lock.timer = setInterval(() => void lock.refresh().catch(() => {}), REFRESH_MS)
          lock.timer.unref()
          lock.forgetOnInterrupt = onInterrupt(() => lock.release())
          forget()
          return lock
        }
        await backend.remove(name)
        forget()
        if (now() >= collisionDeadline) throw lockedError(backend, racer.info!)
        await sleep(50 + random() * 450)
        continue
      }
      if (now() >= deadline) throw lockedError(backend, holder.info!)
      if (!waited) opts.onWait?.(holder.info!)
      waited = true
      await sleep(Math.min(2000, Math.max(50, deadline - now())))
    }
  }

  /** True once the lock is lost for good. */
  get lost(): boolean {
    return this.lostReason !== undefined
  }

  /**
   * Rewrites the lock file with a new `refreshed` time (the timer calls this
   * every REFRESH_MS). Never revives a lost lock: when the last successful
   * refresh is more than STALE_MS old, or the file is gone or not what we
   * wrote, the lock is marked lost and nothing is written. A failed save is
   * left for the next refresh.
   */
  refresh(): Promise<void> {
    return this.serial(async (): Promise<void> => {
      if (this.released || !(await this.verify())) return
      const stamp = this.now()
      const text = JSON.stringify({...this.info, refreshed: new Date(stamp).toISOString()})
      try {
        await this.backend.save(this.name, Buffer.from(text))
      } catch {
        this.maybeWritten = text
        return
      }
      // Until the save landed the file showed the previous time: if that
      // was already too old, another process may have judged the lock stale.
      if (this.now() - this.lastRefreshed > STALE_MS) {
        this.lose(this.overdue())
        return
      }
      this.info = JSON.parse(text) as LockInfo
      this.written = text
      this.maybeWritten = undefined
      this.lastRefreshed = stamp
    })
  }

  /**
   * Throws LockedError unless the lock is still ours: never lost (see
   * refresh), the file still holds what we wrote, and the last refresh is
   * recent enough (less than STALE_MS - REFRESH_MS ago) that the writes the
   * caller commits next land while no other process can judge it stale.
   * Called before a snapshot is committed and while prune deletes.
   */
  assertHeld(): Promise<void> {
    return this.serial(async () => {
      if (await this.verify()) {
        const age = this.now() - this.lastRefreshed
        if (age < STALE_MS - REFRESH_MS) return
        throw this.lostError(`not refreshed for ${minutes(age)} (it must be less than ${minutes(STALE_MS - REFRESH_MS)} old to commit)`)
      }
      throw this.lostError(this.lostReason!)
    })
  }

  /** Removes the lock file; every call returns the same promise (an interrupt may race the normal release). */
  release(): Promise<void> {
    this.releasing ??= (async () => {
      this.released = true
      clearInterval(this.timer)
      await this.busy.catch(() => {})
      await this.backend.remove(this.name)
      this.forgetOnInterrupt()
    })()
    return this.releasing
  }

  /** False (and the lock marked lost) when it is overdue, removed or replaced. */
  private async verify(): Promise<boolean> {
    if (this.lostReason) return false
    if (this.now() - this.lastRefreshed > STALE_MS) return this.lose(this.overdue())
    let text: string
    try {
      text = (await this.backend.load(this.name)).toString('utf8')
    } catch (e) {
      if (e instanceof NotFoundError) return this.lose('its lock file was removed by another process')
      throw e
    }
    if (text === this.maybeWritten) this.written = text // the failed save had landed; lastRefreshed stays the older time
    else if (text !== this.written) return this.lose('its lock file was replaced by another process')
    if (this.now() - this.lastRefreshed > STALE_MS) return this.lose(this.overdue())
    return true
  }

  private overdue(): string {
    return `not refreshed for ${minutes(this.now() - this.lastRefreshed)}, longer than the ${minutes(STALE_MS)} after which other processes treat it as stale (process paused, host suspended or storage unreachable)`
  }

  private lose(reason: string): false {
    this.lostReason ??= reason
    clearInterval(this.timer)
    return false
  }

  private lostError(reason: string): LockedError {
    return new LockedError(`lost the ${this.info.exclusive ? 'exclusive' : 'shared'} lock on ${this.backend.location}: ${reason}; stopped before committing anything`, {
      hint: 'a prune may have run meanwhile; run the command again (chunks already stored are reused)',
      code: 'LOCK_LOST',
    })
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.busy.then(fn, fn)
    this.busy = run.catch(() => {})
    return run
  }
}

function minutes(ms: number): string {
  return `${(ms / 60_000).toFixed(1)} min`
}

async function conflicting(backend: Backend, exclusive: boolean, now: number, own: string | undefined): Promise<StoredLock | undefined> {
  const locks = await listLocks(backend, now)
  return locks.find((l) => l.name !== own && !l.stale && l.info !== null && (exclusive || l.info.exclusive))
}

/** Throws LockedError when any process holds a live lock (for a command going on without its own). */
export async function assertUnlocked(backend: Backend): Promise<void> {
  const holder = await conflicting(backend, true, Date.now(), undefined)
  if (holder) throw lockedError(backend, holder.info!)
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
