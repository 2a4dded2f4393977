// The retry wrapper against a fault-injecting backend: transient errors are
// retried with capped, jittered exponential backoff; permanent ones never.
import {describe, expect, it} from 'vitest'
import {IoError, NotFoundError, UsageError} from '../../src/errors.js'
import {RetryBackend, type RetryOptions} from '../../src/backend/retry.js'
import {isTransientHttpStatus, isTransientNetworkError} from '../../src/backend/transient.js'
import {FaultyBackend} from '../helpers/faulty-backend.js'
import {MemoryBackend} from '../helpers/memory-backend.js'

const transient = () => new IoError('connection reset', {retryable: true})

function setup(options: RetryOptions = {}) {
  const mem = new MemoryBackend()
  const faulty = new FaultyBackend(mem)
  const sleeps: number[] = []
  let now = 0
  const retry = new RetryBackend(faulty, {
    random: () => 0.5,
    now: () => now,
    sleep: async (ms) => {
      sleeps.push(ms)
      now += ms
    },
    baseDelayMs: 100,
    ...options,
  })
  return {mem, faulty, retry, sleeps}
}

describe('retry wrapper', () => {
  it('retries transient errors until the call succeeds', async () => {
    const {faulty, retry, sleeps, mem} = setup()
    faulty.failCalls('save', 1, 2, transient())
    await retry.save('a', Buffer.from('x'))
    expect(faulty.calls.save).toBe(3)
    expect(sleeps).toEqual([50, 100])
    expect(mem.objects.get('a')?.toString()).toBe('x')
  })

  it.each([
    ['not found', new NotFoundError('gone')],
    ['auth failure', new IoError('login refused')],
    ['no space', new IoError('no space left on device')],
    ['usage', new UsageError('bad location')],
    ['plain Error', new Error('bug')],
  ])('never retries a permanent error (%s)', async (_label, error) => {
    const {faulty, retry, sleeps} = setup()
    faulty.failOn('load', 1, error)
    await expect(retry.load('a')).rejects.toBe(error)
    expect(faulty.calls.load).toBe(1)
    expect(sleeps).toEqual([])
  })

  it('gives up after maxAttempts and throws the last error', async () => {
    const {faulty, retry, sleeps} = setup({maxAttempts: 4})
    const last = transient()
    faulty.failCalls('stat', 1, 3, transient()).failOn('stat', 4, last)
    await expect(retry.stat('a')).rejects.toBe(last)
    expect(faulty.calls.stat).toBe(4)
    expect(sleeps).toHaveLength(3)
  })

  it('gives up when the next sleep would pass the total time bound', async () => {
    const {faulty, retry, sleeps} = setup({random: () => 1, baseDelayMs: 400, maxElapsedMs: 1000})
    faulty.failCalls('remove', 1, 10, transient())
    await expect(retry.remove('a')).rejects.toBeInstanceOf(IoError)
    expect(sleeps).toEqual([400])
    expect(faulty.calls.remove).toBe(2)
  })

  it('uses full jitter below an exponential ceiling capped at maxDelayMs', async () => {
    const {faulty, retry, sleeps} = setup({random: () => 0.999, maxDelayMs: 250})
    faulty.failCalls('save', 1, 5, transient())
    await retry.save('a', Buffer.alloc(1))
    expect(sleeps).toEqual([99, 199, 249, 249, 249])
    const zero = setup({random: () => 0})
    zero.faulty.failCalls('save', 1, 2, transient())
    await zero.retry.save('a', Buffer.alloc(1))
    expect(zero.sleeps).toEqual([0, 0])
  })

  it('restarts a failed listing without yielding any entry twice', async () => {
    const {faulty, retry, mem} = setup()
    for (let i = 0; i < 5; i++) mem.objects.set(`chunks/${i}`, Buffer.alloc(i))
    faulty.failOn('list', 1, transient(), 2).failOn('list', 2, transient(), 4)
    const names: string[] = []
    for await (const o of retry.list('chunks/')) names.push(o.name)
    expect(names.sort()).toEqual(['chunks/0', 'chunks/1', 'chunks/2', 'chunks/3', 'chunks/4'])
    expect(faulty.calls.list).toBe(3)
  })

  it('resumes a long listing after the last name yielded: each name once, in order, changes meanwhile respected', async () => {
    const {faulty, retry, mem} = setup()
    const all = Array.from({length: 1000}, (_, i) => `chunks/${(i * 7919 % 1000).toString(16).padStart(3, '0')}`)
    for (const n of all) mem.objects.set(n, Buffer.alloc(1))
    const sorted = [...all].sort()
    faulty.failOn('list', 1, transient(), 400).failOn('list', 2, transient(), 700)
    const names: string[] = []
    for await (const o of retry.list('chunks/')) {
      names.push(o.name)
      if (names.length === 700) {
        // while the second listing runs: an object before the resume point
        // appears (not listed: it was not there when that part was listed)
        // and one after it is removed (not listed: it is gone)
        mem.objects.set('chunks/000a', Buffer.alloc(1))
        mem.objects.delete(sorted[900]!)
      }
    }
    expect(faulty.calls.list).toBe(3)
    expect(names).toEqual(sorted.filter((n) => n !== sorted[900]))
  })

  it('refuses a backend that does not list in name order instead of losing names on resume', async () => {
    const mem = new MemoryBackend()
    const unordered = Object.assign(Object.create(mem) as MemoryBackend, {
      async *list() {
        yield {name: 'x/b', size: 0}
        yield {name: 'x/a', size: 0}
      },
    })
    const wrapped = new RetryBackend(unordered)
    await expect((async () => {
      for await (const _ of wrapped.list('x/')) void _
    })()).rejects.toThrow(/"x\/a" came after "x\/b": the storage does not list in name order/)
  })

  it('passes a permanent listing error through', async () => {
    const {faulty, retry, mem} = setup()
    mem.objects.set('x/1', Buffer.alloc(1))
    faulty.failOn('list', 1, new IoError('permission denied'), 0)
    const names: string[] = []
    await expect(
      (async () => {
        for await (const o of retry.list('x/')) names.push(o.name)
      })(),
    ).rejects.toThrow('permission denied')
    expect(faulty.calls.list).toBe(1)
  })
})

describe('transient error classification', () => {
  it.each([
    [{code: 'ECONNRESET', message: 'read ECONNRESET'}, true],
    [{code: 'ETIMEDOUT', message: 'connect ETIMEDOUT'}, true],
    [{code: 'EPIPE', message: 'write EPIPE'}, true],
    [{message: 'socket hang up'}, true],
    [{name: 'TimeoutError', message: 'Connection timed out after 10000 ms'}, true],
    [{code: 'ENOSPC', message: 'no space left on device'}, false],
    [{code: 'EACCES', message: 'permission denied'}, false],
    [{code: 'ENOENT', message: 'no such file'}, false],
    [{message: 'All configured authentication methods failed'}, false],
  ])('%o → %s', (err, expected) => {
    expect(isTransientNetworkError(err)).toBe(expected)
  })

  it.each([
    [500, true],
    [502, true],
    [503, true],
    [429, true],
    [408, true],
    [400, false],
    [403, false],
    [404, false],
    [undefined, false],
  ])('HTTP %s → %s', (status, expected) => {
    expect(isTransientHttpStatus(status)).toBe(expected)
  })
})
