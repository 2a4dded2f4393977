import {hostname} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {LocalBackend} from '../../src/backend/local.js'
import {LockedError} from '../../src/errors.js'
import {breakLocks, isStale, listLocks, RepoLock, STALE_MS} from '../../src/repo/lock.js'
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

  it('waits for a conflicting lock up to the deadline (injected clock)', async () => {
    const x = await RepoLock.acquire(backend, {exclusive: true, command: 'prune'})
    let t = 0
    const slept: number[] = []
    const p = RepoLock.acquire(backend, {
      exclusive: false,
      command: 'backup',
      waitMs: 10_000,
      now: () => t,
      sleep: async (ms) => {
        slept.push(ms)
        t += ms
        if (t >= 4000) await x.release()
      },
    })
    const got = await p
    expect(slept.reduce((s, n) => s + n, 0)).toBeGreaterThanOrEqual(4000)
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
    await expect(lock.assertHeld()).rejects.toThrow(/lost the lock/)
    await lock.release()
  })
})
