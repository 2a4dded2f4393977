// The SFTP session pool with fake sessions: the first connection is made
// alone (a bad key fails once), the others open in the background, requests
// go to the least busy session, a dead one is replaced, and a background
// connection that fails while others work is left alone for a while.
import {describe, expect, it} from 'vitest'
import {IoError} from '../../src/errors.js'
import {RECONNECT_QUIET_MS, SftpSessionPool} from '../../src/backend/sftp-pool.js'
import type {SftpSession} from '../../src/backend/sftp-session.js'

interface Fake extends SftpSession {
  id: number
  ended: boolean
}

function fakeServer() {
  const opened: Fake[] = []
  const calls: boolean[] = []
  let failNext = 0
  let failAll = false
  const open = async (wasConnected: boolean): Promise<SftpSession> => {
    calls.push(wasConnected)
    await Promise.resolve() // asynchronous, but only through microtasks: settle() below runs after all of them
    if (failAll || failNext > 0) {
      failNext--
      throw new IoError('connection refused', {retryable: wasConnected})
    }
    const s = {id: opened.length, dead: false, ended: false, closed: new Promise<void>(() => {})} as unknown as Fake
    ;(s as {client: unknown}).client = {end: () => (s.ended = true)}
    opened.push(s)
    return s
  }
  return {
    open,
    opened,
    calls,
    failNext: (n: number) => (failNext = n),
    failAll: (v: boolean) => (failAll = v),
  }
}

// The pool and the fake server use no timers and no I/O, only promise
// continuations (microtasks), which all run before the next macrotask: so
// one setImmediate sees every background connection attempt finished, on a
// loaded machine too (a 20 ms timer raced 1 ms timers that the event loop
// may fire late and in one batch).
const settle = () => new Promise((r) => setImmediate(r))

describe('sftp session pool', () => {
  it('makes the first connection alone: a failure is one attempt, thrown as is', async () => {
    const srv = fakeServer()
    srv.failAll(true)
    const pool = new SftpSessionPool(srv.open, 4, 'sftp://x')
    await expect(pool.acquire()).rejects.toThrow('connection refused')
    await settle()
    expect(srv.calls).toEqual([false])
    await pool.close()
  })

  it('opens the other sessions in the background and spreads requests over them, least busy first', async () => {
    const srv = fakeServer()
    const pool = new SftpSessionPool(srv.open, 4, 'sftp://x')
    const first = await pool.acquire()
    expect(first.session).toBe(srv.opened[0])
    await settle()
    expect(srv.opened).toHaveLength(4)
    expect(srv.calls.slice(1)).toEqual([true, true, true]) // reconnects count as "was connected"
    const leases = [first, ...(await Promise.all([1, 2, 3, 4, 5, 6, 7].map(() => pool.acquire())))]
    const perSession = new Map<number, number>()
    for (const l of leases) perSession.set((l.session as Fake).id, (perSession.get((l.session as Fake).id) ?? 0) + 1)
    expect([...perSession.values()]).toEqual([2, 2, 2, 2])
    for (const l of leases.slice(0, 2)) l.release()
    const next = await pool.acquire()
    expect(leases.slice(0, 2).map((l) => l.session)).toContain(next.session)
    await pool.close()
    expect(srv.opened.every((s) => s.ended)).toBe(true)
  })

  it('queues on a session still connecting rather than piling onto the first', async () => {
    const srv = fakeServer()
    const pool = new SftpSessionPool(srv.open, 2, 'sftp://x')
    const a = await pool.acquire() // slot 0 live, slot 1 now connecting
    const b = await pool.acquire()
    expect(b.session).not.toBe(a.session)
    await pool.close()
  })

  it('replaces a dead session on the next request', async () => {
    const srv = fakeServer()
    const pool = new SftpSessionPool(srv.open, 1, 'sftp://x')
    const a = await pool.acquire()
    a.release()
    ;(a.session as Fake).dead = true
    const b = await pool.acquire()
    expect(b.session).not.toBe(a.session)
    expect((a.session as Fake).ended).toBe(true)
    await pool.close()
  })

  it('leaves a slot whose background connection failed alone for a while, using the live sessions', async () => {
    const srv = fakeServer()
    let now = 1_000_000
    const pool = new SftpSessionPool(srv.open, 3, 'sftp://x', () => now)
    srv.failNext(0)
    await pool.acquire()
    // the two background connections fail (a server limiting connections per client)
    srv.failAll(true)
    await settle()
    await Promise.all([1, 2, 3, 4].map(() => pool.acquire()))
    await settle()
    const attempts = srv.calls.length
    for (let i = 0; i < 20; i++) await pool.acquire()
    await settle()
    expect(srv.calls.length).toBe(attempts) // no storm of handshakes
    srv.failAll(false)
    now += RECONNECT_QUIET_MS + 1
    await pool.acquire()
    await settle()
    expect(srv.opened).toHaveLength(3)
    await pool.close()
  })

  it('refuses requests once closed', async () => {
    const srv = fakeServer()
    const pool = new SftpSessionPool(srv.open, 2, 'sftp://x')
    await pool.acquire()
    await pool.close()
    await expect(pool.acquire()).rejects.toBeInstanceOf(IoError)
  })
})
