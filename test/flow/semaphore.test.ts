import {describe, expect, it} from 'vitest'
import {Semaphore, TaskGroup} from '../../src/flow/semaphore.js'

describe('Semaphore', () => {
  it('serves waiters in FIFO order; a large head waiter is not overtaken by small ones', async () => {
    const s = new Semaphore(4)
    await s.acquire(3)
    const order: string[] = []
    const big = s.acquire(4).then(() => order.push('big'))
    const small = s.acquire(1).then(() => order.push('small'))
    await Promise.resolve()
    expect(order).toEqual([]) // one unit is free, but the big waiter is first in line
    s.release(3)
    await big
    expect(order).toEqual(['big'])
    s.release(4)
    await small
    expect(order).toEqual(['big', 'small'])
  })

  it('with() holds one slot and releases it when fn fails', async () => {
    const s = new Semaphore(1)
    await expect(s.with(async () => Promise.reject(new Error('x')))).rejects.toThrow('x')
    expect(await s.with(async () => 42)).toBe(42)
  })

  it('refuses a capacity below 1', () => {
    expect(() => new Semaphore(0)).toThrow(RangeError)
    expect(() => new TaskGroup(0)).toThrow(RangeError)
  })
})
