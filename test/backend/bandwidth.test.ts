// The bandwidth wrapper: one token bucket per direction, shared by
// concurrent transfers, holds the rate within ±25% over ~2 s.
import {describe, expect, it} from 'vitest'
import {BandwidthBackend, TokenBucket} from '../../src/backend/bandwidth.js'
import {MemoryBackend} from '../helpers/memory-backend.js'

/** Runs `workers` concurrent loops of `op` for `ms` and returns bytes/s. */
async function measure(workers: number, ms: number, op: () => Promise<number>): Promise<number> {
  const t0 = performance.now()
  let bytes = 0
  await Promise.all(
    Array.from({length: workers}, async () => {
      while (performance.now() - t0 < ms) {
        const n = await op() // not `bytes += await op()`: that reads `bytes` before the await
        bytes += n
      }
    }),
  )
  return bytes / ((performance.now() - t0) / 1000)
}

describe('bandwidth wrapper', () => {
  const rate = 4 << 20

  it('holds uploads from 4 concurrent transfers to the limit (±25% over ~2 s)', async () => {
    const b = new BandwidthBackend(new MemoryBackend(), {upload: rate})
    const obj = Buffer.alloc(128 << 10)
    const got = await measure(4, 2000, async () => {
      await b.save('x', obj)
      return obj.length
    })
    expect(got).toBeGreaterThan(rate * 0.75)
    expect(got).toBeLessThan(rate * 1.25)
  })

  it('holds downloads to their own limit, independent of uploads (±25% over ~2 s)', async () => {
    const mem = new MemoryBackend()
    await mem.save('x', Buffer.alloc(256 << 10))
    const b = new BandwidthBackend(mem, {upload: 1, download: rate})
    const got = await measure(3, 2000, async () => (await b.load('x')).length + (await b.load('x', {offset: 0, length: 64 << 10})).length)
    expect(got).toBeGreaterThan(rate * 0.75)
    expect(got).toBeLessThan(rate * 1.25)
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
