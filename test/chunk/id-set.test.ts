import {randomBytes} from 'node:crypto'
import {describe, expect, it} from 'vitest'
import {DIGEST_SIZE, ZERO_ID} from '../../src/chunk/digest.js'
import {IdSet} from '../../src/chunk/id-set.js'

describe('IdSet', () => {
  it('agrees with a Set of hex strings over random ids with repeats, across growth', () => {
    const set = new IdSet()
    const ref = new Set<string>()
    const pool = Array.from({length: 5000}, () => randomBytes(DIGEST_SIZE))
    for (let i = 0; i < 20000; i++) {
      const id = pool[Math.floor(Math.random() * pool.length)]!
      const hex = id.toString('hex')
      expect(set.has(id)).toBe(ref.has(hex))
      expect(set.add(id)).toBe(!ref.has(hex))
      ref.add(hex)
    }
    expect(set.size).toBe(ref.size)
    for (const id of pool) expect(set.has(id)).toBe(ref.has(id.toString('hex')))
    for (let i = 0; i < 100; i++) expect(set.has(randomBytes(DIGEST_SIZE))).toBe(false)
  })

  it('keeps ids that differ in one byte apart, the all-zero id included', () => {
    const set = new IdSet()
    const a = Buffer.alloc(DIGEST_SIZE)
    expect(set.add(ZERO_ID)).toBe(true)
    for (let i = 0; i < DIGEST_SIZE; i++) {
      const b = Buffer.from(a)
      b[i] = 1
      expect(set.add(b)).toBe(true)
    }
    expect(set.add(Buffer.alloc(DIGEST_SIZE))).toBe(false)
    expect(set.size).toBe(DIGEST_SIZE + 1)
  })

  it('works across several segments (small segments injected)', () => {
    const set = new IdSet(0, 256)
    const ids = Array.from({length: 3000}, () => randomBytes(DIGEST_SIZE))
    for (const id of ids) expect(set.add(id)).toBe(true)
    for (const id of ids) expect(set.add(id)).toBe(false)
    expect(set.size).toBe(3000)
    expect(set.byteLength).toBeGreaterThan(3000 * DIGEST_SIZE)
  })

  it('takes views into larger buffers and copies them (the caller may reuse its buffer)', () => {
    const set = new IdSet()
    const big = randomBytes(DIGEST_SIZE * 4)
    const view = big.subarray(DIGEST_SIZE, 2 * DIGEST_SIZE)
    const copy = Buffer.from(view)
    set.add(view)
    big.fill(0)
    expect(set.has(copy)).toBe(true)
    expect(set.has(view)).toBe(false)
  })

  it('costs at most 2 × 32 / 0.7 bytes and a bit per id, less than a Set of hex strings (~130)', () => {
    const set = new IdSet()
    for (let i = 0; i < 100_000; i++) set.add(randomBytes(DIGEST_SIZE))
    expect(set.byteLength / set.size).toBeLessThanOrEqual(2 * DIGEST_SIZE / 0.7 + 1)
    expect(set.byteLength / set.size).toBeGreaterThanOrEqual(DIGEST_SIZE)
  })

  it('presizes for an expected count without growing', () => {
    const set = new IdSet(10_000)
    const before = set.byteLength
    for (let i = 0; i < 10_000; i++) set.add(randomBytes(DIGEST_SIZE))
    expect(set.byteLength).toBe(before)
  })

  it('refuses an id that is not 32 bytes', () => {
    expect(() => new IdSet().add(Buffer.alloc(31))).toThrow(RangeError)
    expect(() => new IdSet().has(Buffer.alloc(33))).toThrow(RangeError)
  })
})
