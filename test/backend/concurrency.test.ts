// The concurrency wrapper: never more than `limit` calls reach the backend.
import {setTimeout as delay} from 'node:timers/promises'
import {describe, expect, it} from 'vitest'
import {ConcurrencyBackend} from '../../src/backend/concurrency.js'
import {Semaphore} from '../../src/flow/semaphore.js'
import {MemoryBackend} from '../helpers/memory-backend.js'

class SlowBackend extends MemoryBackend {
  inFlight = 0
  peak = 0
  override async save(name: string, data: Buffer): Promise<void> {
    this.inFlight++
    this.peak = Math.max(this.peak, this.inFlight)
    await delay(10)
    this.inFlight--
    return super.save(name, data)
  }
}

describe('concurrency wrapper', () => {
  it('holds calls in flight to the limit', async () => {
    const slow = new SlowBackend()
    const b = new ConcurrencyBackend(slow, 3)
    await Promise.all(Array.from({length: 20}, (_, i) => b.save(`o${i}`, Buffer.alloc(1))))
    expect(slow.peak).toBe(3)
    expect(slow.objects.size).toBe(20)
  })

  it('releases the slot when a call fails', async () => {
    const s = new Semaphore(1)
    await expect(s.with(async () => Promise.reject(new Error('x')))).rejects.toThrow('x')
    expect(await s.with(async () => 42)).toBe(42)
  })

  it('lets a caller load objects while iterating a listing, even with one slot', async () => {
    const mem = new MemoryBackend()
    for (let i = 0; i < 5; i++) mem.objects.set(`c/${i}`, Buffer.from([i]))
    const b = new ConcurrencyBackend(mem, 1)
    let sum = 0
    for await (const o of b.list('c/')) sum += (await b.load(o.name))[0]!
    expect(sum).toBe(10)
  })

  it('rejects a limit below 1', () => {
    expect(() => new Semaphore(0)).toThrow(RangeError)
  })
})
