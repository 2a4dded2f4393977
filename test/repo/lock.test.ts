import {hostname} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {LocalBackend} from '../../src/backend/local.js'
import {LockedError} from '../../src/errors.js'
import type {Backend} from '../../src/backend/types.js'
import {breakLocks, isStale, listLocks, RepoLock, REFRESH_MS, STALE_MS, type LockInfo} from '../../src/repo/lock.js'
import {tempDir} from '../helpers/images.js'

describe('repository locks', () => {
  const d = tempDir()
  const backend = new LocalBackend(join(d.path, 'repo'))
  afterAll(() => d.cleanup())

  it('shared locks coexist; exclusive excludes both ways; release frees', async () => {
    const a = await RepoLock.acquire(backend, {exclusive: false, command: 'backup'})
    const b = await RepoLock.acquire(backend, {exclusive: false, command: 'restore'})
    await expect(RepoLock.acquire(backend, {exclusive: true, command: 'prune'})).rejects.toBeInstanceOf(LockedError)
    await a.release()
    await b.release()
    const x = await RepoLock.acquire(backend, {exclusive: true, command: 'prune'})
    await expect(RepoLock.acquire(backend, {exclusive: false, command: 'backup'})).rejects.toThrow(/locked exclusively by "prune"/)
    await x.release()
    expect(await listLocks(backend)).toEqual([])
  })

  it('waits for a conflicting lock up to the deadline (injected clock), saying so once', async () => {
    const x = await RepoLock.acquire(backend, {exclusive: true, command: 'prune'})
    const waits: LockInfo[] = []
    await expect(RepoLock.acquire(backend, {exclusive: false, command: 'backup', onWait: (h) => waits.push(h)})).rejects.toBeInstanceOf(LockedError)
    expect(waits).toEqual([]) // no --lock-wait: refused at once, no waiting announced
    let t = 0
    const slept: number[] = []
    const p = RepoLock.acquire(backend, {
      exclusive: false,
      command: 'backup',
      waitMs: 10_000,
      onWait: (h) => waits.push(h),
      now: () => t,
      sleep: async (ms) => {
        slept.push(ms)
        t += ms
        if (t >= 4000) await x.release()
      },
    })
    const got = await p
    expect(slept.reduce((s, n) => s + n, 0)).toBeGreaterThanOrEqual(4000)
    expect(slept.length).toBeGreaterThan(1)
    expect(waits.map((h) => [h.command, h.exclusive, h.pid])).toEqual([['prune', true, process.pid]]) // once, naming the holder
    await got.release()
  })

  it('staleness: dead pid on this host, or not refreshed for STALE_MS', () => {
    const now = Date.now()
    const fresh = new Date(now).toISOString()
    expect(isStale({host: hostname(), pid: process.pid, exclusive: false, command: '', created: fresh, refreshed: fresh}, now)).toBe(false)
    expect(isStale({host: hostname(), pid: 2 ** 22 + 7, exclusive: false, command: '', created: fresh, refreshed: fresh}, now)).toBe(true)
    const old = new Date(now - STALE_MS - 1000).toISOString()
    expect(isStale({host: 'elsewhere', pid: 1, exclusive: false, command: '', created: old, refreshed: old}, now)).toBe(true)
    expect(isStale({host: 'elsewhere', pid: 1, exclusive: false, command: '', created: fresh, refreshed: fresh}, now)).toBe(false)
  })

  it('breakLocks removes stale ones only, unless asked for all', async () => {
    const live = await RepoLock.acquire(backend, {exclusive: false, command: 'backup'})
    const old = new Date(Date.now() - STALE_MS * 2).toISOString()
    await backend.save('locks/old', Buffer.from(JSON.stringify({host: 'elsewhere', pid: 1, exclusive: true, command: 'x', created: old, refreshed: old})))
    await backend.save('locks/garbage', Buffer.from('{not json'))
    expect((await breakLocks(backend, false)).map((l) => l.name).sort()).toEqual(['locks/garbage', 'locks/old'])
    expect((await listLocks(backend)).length).toBe(1)
    await live.release()
  })
})

describe('a lost lock', () => {
  const d = tempDir()
  const backend = new LocalBackend(join(d.path, 'repo'))
  afterAll(() => d.cleanup())

  it('assertHeld throws once the lock file is gone, or when it could not be refreshed in time', async () => {
    let t = 1_000_000
    const lock = await RepoLock.acquire(backend, {exclusive: false, command: 'backup', now: () => t})
    await lock.assertHeld()
    t += STALE_MS // no refresh happened in all that time
    await expect(lock.assertHeld()).rejects.toBeInstanceOf(LockedError)
    t -= STALE_MS
    await breakLocks(backend, true)
    await expect(lock.assertHeld()).rejects.toThrow(/lost the shared lock .*removed/)
    await lock.release()
  })
})

describe('a lock that could have looked stale is lost for good (injected clock)', () => {
  const d = tempDir()
  const local = new LocalBackend(join(d.path, 'repo'))
  afterAll(() => d.cleanup())
  const refreshedIn = async (name: string) => (JSON.parse((await local.load(name)).toString()) as LockInfo).refreshed

  it('refreshes on time for as long as it runs', async () => {
    let t = 1_000_000
    const lock = await RepoLock.acquire(local, {exclusive: false, command: 'backup', now: () => t})
    for (let i = 0; i < 30; i++) {
      t += REFRESH_MS
      await lock.refresh()
    }
    expect(await refreshedIn(lock.name)).toBe(new Date(t).toISOString())
    await lock.assertHeld()
    await lock.release()
  })

  it('an overdue refresh (paused past STALE_MS) writes nothing, and the lock stays lost', async () => {
    let t = 1_000_000
    const lock = await RepoLock.acquire(local, {exclusive: false, command: 'backup', now: () => t})
    const before = await refreshedIn(lock.name)
    t += STALE_MS + 1 // e.g. SIGSTOP: the timer fires late, once
    await lock.refresh()
    expect(lock.lost).toBe(true)
    expect(await refreshedIn(lock.name)).toBe(before) // not revived
    await expect(lock.assertHeld()).rejects.toThrow(/lost the shared lock .*not refreshed for 15\.0 min/)
    t += 1000
    await lock.refresh() // a later, punctual refresh does not bring it back either
    expect(await refreshedIn(lock.name)).toBe(before)
    await expect(lock.assertHeld()).rejects.toBeInstanceOf(LockedError)
    await lock.release()
  })

  it('a refresh whose save lands after the limit loses the lock', async () => {
    let t = 1_000_000
    const slow: Backend = Object.create(local)
    slow.save = async (name, data) => {
      t += STALE_MS // the storage hung for the whole staleness limit
      await local.save(name, data)
    }
    const lock = await RepoLock.acquire(local, {exclusive: false, command: 'backup', now: () => t})
    Object.assign(lock, {backend: slow})
    t += REFRESH_MS
    await lock.refresh()
    expect(lock.lost).toBe(true)
    await expect(lock.assertHeld()).rejects.toThrow(/not refreshed/)
    await lock.release()
  })

  it('a lock file rewritten by someone else (back-dated, as a stale-lock breaker saw it) is lost and not rewritten', async () => {
    let t = 1_000_000
    const lock = await RepoLock.acquire(local, {exclusive: false, command: 'backup', now: () => t})
    const info = JSON.parse((await local.load(lock.name)).toString()) as LockInfo
    const old = {...info, refreshed: new Date(t - STALE_MS - 60_000).toISOString()}
    await local.save(lock.name, Buffer.from(JSON.stringify(old)))
    t += REFRESH_MS
    await lock.refresh()
    expect(await refreshedIn(lock.name)).toBe(old.refreshed)
    await expect(lock.assertHeld()).rejects.toThrow(/replaced by another process/)
    await lock.release()
  })

  it('a removed lock file is not recreated by the refresh', async () => {
    let t = 1_000_000
    const lock = await RepoLock.acquire(local, {exclusive: true, command: 'prune', now: () => t})
    await local.remove(lock.name)
    t += REFRESH_MS
    await lock.refresh()
    expect(await local.stat(lock.name)).toBeNull()
    await expect(lock.assertHeld()).rejects.toThrow(/lost the exclusive lock .*removed/)
    await lock.release()
  })

  it('a save that failed but landed still counts as ours', async () => {
    let t = 1_000_000
    const flaky: Backend = Object.create(local)
    flaky.save = async (name, data) => {
      await local.save(name, data)
      throw new Error('timeout after the write')
    }
    const lock = await RepoLock.acquire(local, {exclusive: false, command: 'backup', now: () => t})
    Object.assign(lock, {backend: flaky})
    t += REFRESH_MS
    await lock.refresh()
    await lock.assertHeld()
    expect(lock.lost).toBe(false)
    Object.assign(lock, {backend: local})
    await lock.release()
  })
})

describe('two lock attempts that collide (point 22)', () => {
  const d = tempDir()
  const local = new LocalBackend(join(d.path, 'repo'))
  afterAll(() => d.cleanup())

  it('both write their lock, both see the other and back off; with no --lock-wait one still gets through', async () => {
    // Each save of a lock waits until the other's is stored too: the
    // colliding state (two lock files present at once) at a known point.
    let saved = 0
    let bothSaved!: () => void
    const gate = new Promise<void>((r) => (bothSaved = r))
    const gated: Backend = Object.create(local)
    gated.save = async (name, data) => {
      await local.save(name, data)
      if (++saved === 2) bothSaved()
      if (saved <= 2) await gate
    }
    let pruneLock: RepoLock | undefined
    let pruneDone!: () => void
    const pruneHasIt = new Promise<void>((r) => (pruneDone = r))
    const sleeps: string[] = []
    let backupBackedOff!: () => void
    const backupRemovedItsLock = new Promise<void>((r) => (backupBackedOff = r))
    const prune = RepoLock.acquire(gated, {
      exclusive: true,
      command: 'prune',
      sleep: async () => {
        sleeps.push('prune')
        await backupRemovedItsLock // its jitter happened to be the shorter one
      },
    }).then((l) => {
      pruneLock = l
      pruneDone()
      return l
    })
    const backup = RepoLock.acquire(gated, {
      exclusive: false,
      command: 'backup',
      sleep: async () => {
        sleeps.push('backup')
        backupBackedOff()
        await pruneHasIt // its jitter happened to be the longer one
      },
    }).catch((e: unknown) => e)
    const [got, other] = await Promise.all([prune, backup])
    expect(sleeps.sort()).toEqual(['backup', 'prune']) // both backed off once
    expect(got).toBe(pruneLock)
    expect(other).toBeInstanceOf(LockedError) // it retried and found prune holding the lock
    expect((other as LockedError).message).toMatch(/locked exclusively by "prune" \(pid \d+ on /)
    expect((await listLocks(local)).map((l) => l.info?.command)).toEqual(['prune'])
    await got.release()
  })
})
