// The bandwidth wrapper: one token bucket per direction, shared by
// concurrent transfers. The rate tests run on a virtual clock (sleepers wake
// in deadline order, time jumps to the next deadline), so they check the
// schedule the limiter makes exactly, whatever the machine's speed.
import {setImmediate as tick} from 'node:timers/promises'
import {describe, expect, it} from 'vitest'
import {BandwidthBackend, TokenBucket, type Clock} from '../../src/backend/bandwidth.js'
import {MemoryBackend} from '../helpers/memory-backend.js'

/** Time moves only when every task is asleep: it jumps to the earliest deadline. */
class VirtualClock implements Clock {
  private t = 0
  private timers: {at: number; wake: () => void}[] = []
  now(): number {
    return this.t
  }
  sleep(ms: number): Promise<void> {
    return new Promise((wake) => this.timers.push({at: this.t + ms, wake}))
  }
  /** Runs until `done` settles; a bounded number of idle turns per step. */
  async drive(done: Promise<unknown>): Promise<void> {
    let finished = false
    void done.finally(() => (finished = true))
    for (let steps = 0; !finished; steps++) {
      if (steps > 1_000_000) throw new Error('virtual clock: too many steps')
      for (let i = 0; i < 20 && !finished; i++) await tick() // let every runnable task reach its next sleep
      if (finished) break
      if (this.timers.length === 0) throw new Error('virtual clock: nothing asleep and not finished')
      this.timers.sort((a, b) => a.at - b.at)
      const next = this.timers.shift()!
      this.t = Math.max(this.t, next.at)
      next.wake()
    }
  }
}

/** Runs `workers` concurrent loops of `op` until virtual time `ms`; returns [time, total bytes] after each completed op. */
async function schedule(clock: VirtualClock, workers: number, ms: number, op: () => Promise<number>): Promise<[number, number][]> {
  const log: [number, number][] = []
  let bytes = 0
  const all = Promise.all(
    Array.from({length: workers}, async () => {
      while (clock.now() < ms) {
        const n = await op() // not `bytes += await op()`: that reads `bytes` before the await
        bytes += n
        log.push([clock.now(), bytes])
      }
    }),
  )
  await clock.drive(all)
  await all
  return log
}

/** Every completion keeps within burst + rate*t, the last within `slack` bytes of it. */
function expectRate(log: [number, number][], rate: number, slack: number): void {
  const burst = rate / 20
  for (const [t, bytes] of log) expect(bytes).toBeLessThanOrEqual(burst + (rate * t) / 1000 + 1e-6)
  const [t, bytes] = log.at(-1)!
  expect(t).toBeGreaterThanOrEqual(2000)
  expect(bytes).toBeGreaterThanOrEqual(burst + (rate * t) / 1000 - slack)
}

describe('bandwidth wrapper', () => {
  const rate = 4 << 20

  it('holds uploads from 4 concurrent transfers to the limit, never above it (virtual clock, 2 s)', async () => {
    const clock = new VirtualClock()
    const b = new BandwidthBackend(new MemoryBackend(), {upload: rate, clock})
    const obj = Buffer.alloc(128 << 10)
    const log = await schedule(clock, 4, 2000, async () => {
      await b.save('x', obj)
      return obj.length
    })
    expectRate(log, rate, 4 * obj.length) // at most one object per worker still owed
    expect(log.length).toBeGreaterThan(60) // 8 MiB in 128 KiB objects over 2 s
  })

  it('holds downloads to their own limit, independent of uploads (virtual clock, 2 s)', async () => {
    const clock = new VirtualClock()
    const mem = new MemoryBackend()
    await mem.save('x', Buffer.alloc(256 << 10))
    const b = new BandwidthBackend(mem, {upload: 1, download: rate, clock})
    const log = await schedule(clock, 3, 2000, async () => (await b.load('x')).length + (await b.load('x', {offset: 0, length: 64 << 10})).length)
    expectRate(log, rate, 3 * (320 << 10))
  })

  it('lets an object larger than the burst through, then makes the next caller wait', async () => {
    let now = 0
    const sleeps: number[] = []
    const bucket = new TokenBucket(1000, {now: () => now, sleep: async (ms) => void sleeps.push(ms)})
    await bucket.take(1050) // burst is 50 bytes (50 ms of rate): 1000 bytes of debt
    expect(sleeps).toEqual([1000])
    now += 500
    await bucket.take(100) // 500 ms repaid half the debt: 500 + 100 bytes still owed
    expect(sleeps[1]).toBeCloseTo(600)
  })

  it('passes metadata calls through unmetered', async () => {
    const mem = new MemoryBackend()
    await mem.save('a/b', Buffer.alloc(10))
    const b = new BandwidthBackend(mem, {upload: 1, download: 1})
    expect(await b.stat('a/b')).toEqual({name: 'a/b', size: 10})
    const names: string[] = []
    for await (const o of b.list('a/')) names.push(o.name)
    expect(names).toEqual(['a/b'])
    await b.remove('a/b')
  })
})
