// FixedIndex: entries by block, diff, delta, chain replay and the stored
// form, with the expected blocks written out per case.
import {createHash, randomBytes} from 'node:crypto'
import {describe, expect, it} from 'vitest'
import {ChangedBlockMap} from '../../src/cbt/changed-block-map.js'
import {DataError} from '../../src/errors.js'
import {FixedIndex} from '../../src/repo/fixed-index.js'
import {encodeIndex} from '../../src/repo/index-codec.js'

const BS = 65536

/** A made-up chunk id per label; 0 is the zero block. */
function id(label: number): Buffer {
  return label === 0 ? Buffer.alloc(32) : createHash('sha256').update(`block ${label}`).digest()
}

/** A full index of `virtualSize` bytes whose blocks hold `labels`. */
function full(virtualSize: number, labels: number[]): FixedIndex {
  const ix = FixedIndex.empty(BS, virtualSize)
  expect(ix.blockCount).toBe(labels.length)
  labels.forEach((l, b) => ix.set(b, id(l)))
  return ix
}

function map(blockCount: number, blocks: number[]): ChangedBlockMap {
  const m = new ChangedBlockMap(blockCount)
  for (const b of blocks) m.set(b)
  return m
}

describe('FixedIndex entries', () => {
  it('reads and writes entries by block', () => {
    const ix = full(3 * BS + 100, [1, 0, 2, 3])
    expect(ix.blockCount).toBe(4)
    expect(ix.entry(2).equals(id(2))).toBe(true)
    expect(ix.hex(3)).toBe(id(3).toString('hex'))
    expect([0, 1, 2, 3].map((b) => ix.isZero(b))).toEqual([false, true, false, false])
    expect(ix.matches(0, id(1))).toBe(true)
    expect(ix.matches(0, id(2))).toBe(false)
    ix.setZero(0)
    ix.setHex(1, id(7).toString('hex'))
    expect(ix.isZero(0)).toBe(true)
    expect(ix.entry(1).equals(id(7))).toBe(true)
    expect(ix.usedCount()).toBe(3)
    expect(() => ix.entry(4)).toThrow(RangeError)
    expect(() => ix.entry(-1)).toThrow(RangeError)
  })

  it('updates from packed digests only when the entry differs', () => {
    const ix = full(3 * BS, [1, 2, 3])
    const digests = Buffer.concat([id(2), id(9)])
    expect(ix.update(1, digests, 0)).toBe(false)
    expect(ix.update(2, digests, 1)).toBe(true)
    expect(ix.entry(2).equals(id(9))).toBe(true)
    expect(ix.update(0, new Uint8Array(digests), 1)).toBe(true)
    expect(ix.hex(0)).toBe(id(9).toString('hex'))
  })

  it('lists each chunk id once, without zero blocks', () => {
    const ix = full(6 * BS, [1, 2, 1, 0, 2, 3])
    expect([...ix.chunkIds()]).toEqual([1, 2, 3].map((l) => id(l).toString('hex')))
    const into = new Set([id(4).toString('hex')])
    ix.addChunkIds(into)
    expect([...into].sort()).toEqual([1, 2, 3, 4].map((l) => id(l).toString('hex')).sort())
    const d = ix.delta(map(6, [2, 3, 5]))
    expect([...d.chunkIds()]).toEqual([1, 3].map((l) => id(l).toString('hex')))
  })

  it('compares blocks across indexes', () => {
    const a = full(3 * BS, [1, 2, 3])
    const b = full(3 * BS, [1, 5, 3])
    expect([0, 1, 2].map((k) => a.sameAt(k, b))).toEqual([true, false, true])
    expect(a.sameEntries(full(3 * BS, [1, 2, 3]))).toBe(true)
    expect(a.sameEntries(b)).toBe(false)
  })
})

describe('FixedIndex.diff', () => {
  it('marks the blocks whose entries differ on a disk of the same size', () => {
    const a = full(5 * BS, [1, 2, 3, 0, 5])
    const b = full(5 * BS, [1, 9, 3, 4, 0])
    const m = a.diff(b)
    expect(m.blockCount).toBe(5)
    expect([...m.blocks()]).toEqual([1, 3, 4])
    expect([...b.diff(a).blocks()]).toEqual([1, 3, 4])
    expect(a.diff(full(5 * BS, [1, 2, 3, 0, 5])).count()).toBe(0)
  })

  it('marks the short last block and every new block when the disk grew', () => {
    const a = full(2 * BS + 10, [1, 2, 3])
    const b = full(5 * BS, [1, 2, 3, 4, 0])
    // blocks 0-1 are whole on both: equal; 2 was 10 bytes, now a whole block
    expect([...a.diff(b).blocks()]).toEqual([2, 3, 4])
    expect(a.diff(b).blockCount).toBe(5)
  })

  it('marks every block past the smaller disk when it shrank', () => {
    const a = full(4 * BS, [1, 2, 3, 4])
    const b = full(2 * BS, [1, 7])
    expect([...a.diff(b).blocks()]).toEqual([1, 2, 3])
    expect([...b.diff(a).blocks()]).toEqual([1, 2, 3])
  })

  it('compares long runs of equal entries correctly (more blocks than one compare run)', () => {
    const n = 3000
    const labels = Array.from({length: n}, (_, i) => i % 7)
    const a = full(n * BS, labels)
    const b = full(n * BS, labels)
    for (const k of [0, 1023, 1024, 2999]) b.set(k, id(100 + k))
    expect([...a.diff(b).blocks()]).toEqual([0, 1023, 1024, 2999])
  })

  it('refuses other block sizes', () => {
    expect(() => full(2 * BS, [1, 2]).diff(FixedIndex.empty(2 * BS, 2 * BS))).toThrow(/block sizes differ/)
  })
})

describe('FixedIndex.delta and chain replay', () => {
  it('takes the entries of the changed blocks, in block order', () => {
    const child = full(6 * BS, [1, 2, 3, 4, 5, 6])
    const cbm = map(6, [5, 1, 3])
    const d = child.delta(cbm)
    expect(d.kind).toBe('delta')
    expect(d.cbm).toBe(cbm)
    const parent = full(6 * BS, [1, 0, 3, 0, 5, 0])
    const back = FixedIndex.empty(BS, 6 * BS)
    const resolved = new ChangedBlockMap(6)
    expect(back.applyOlder(d, resolved)).toBe(false)
    expect([...resolved.blocks()]).toEqual([1, 3, 5])
    expect(back.applyOlder(parent, resolved)).toBe(true)
    expect(back.sameEntries(child)).toBe(true)
    expect(resolved.count()).toBe(6)
  })

  it('lets the newest index win a block two deltas both changed', () => {
    const newest = full(9 * BS, [0, 0, 8, 0, 0, 0, 0, 0, 9]).delta(map(9, [2, 8]))
    const older = full(9 * BS, [0, 0, 7, 7, 0, 0, 0, 0, 7]).delta(map(9, [2, 3, 8]))
    const base = full(9 * BS, [1, 2, 3, 4, 5, 6, 7, 8, 1])
    const out = FixedIndex.empty(BS, 9 * BS)
    const resolved = new ChangedBlockMap(9)
    out.applyOlder(newest, resolved)
    out.applyOlder(older, resolved)
    out.applyOlder(base, resolved)
    expect(out.sameEntries(full(9 * BS, [1, 2, 8, 7, 5, 6, 7, 8, 9]))).toBe(true)
    expect(resolved.count()).toBe(9)
  })

  it('keeps block-addressed access to full indexes', () => {
    const d = full(2 * BS, [1, 2]).delta(map(2, [1]))
    expect(() => d.entry(1)).toThrow(RangeError)
    expect(() => d.delta(map(2, [0]))).toThrow(RangeError)
    expect(() => full(2 * BS, [1, 2]).delta(map(3, [0]))).toThrow(RangeError)
  })
})

describe('FixedIndex encode/decode', () => {
  const size = 10 * BS + 123

  it('round-trips a full index with its map, in the bytes of the codec', () => {
    const ix = full(size, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0])
    const stored = ix.asFull(map(11, [0, 3, 10]))
    const buf = stored.encode()
    const back = FixedIndex.decode(buf, 'x')
    expect(back.kind).toBe('full')
    expect(back.virtualSize).toBe(size)
    expect(back.blockCount).toBe(11)
    expect([...back.cbm.blocks()]).toEqual([0, 3, 10])
    expect(back.sameEntries(ix)).toBe(true)
    expect(back.entry(9).equals(id(10))).toBe(true)
    expect(buf.equals(encodeIndex({kind: 'full', blockSize: BS, virtualSize: size, blockCount: 11, cbm: map(11, [0, 3, 10]), entries: Buffer.concat([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0].map(id))}))).toBe(true)
  })

  it('round-trips a delta index', () => {
    const d = full(size, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0]).delta(map(11, [0, 3, 10]))
    const back = FixedIndex.decode(d.encode(), 'x')
    expect(back.kind).toBe('delta')
    expect([...back.cbm.blocks()]).toEqual([0, 3, 10])
    expect(back.sameEntries(d)).toBe(true)
    expect([...back.chunkIds()]).toEqual([1, 4].map((l) => id(l).toString('hex')))
  })

  it('stores a resolved index with a map of every block', () => {
    const back = FixedIndex.decode(full(size, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0]).encode(), 'x')
    expect(back.cbm.count()).toBe(11)
    expect(back.cbm.bits).toEqual(ChangedBlockMap.all(11).bits)
  })

  it('refuses truncated, corrupt and miscounted indexes with a DataError', () => {
    const buf = full(size, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0]).delta(map(11, [0, 3, 10])).encode()
    const bad = (b: Buffer): unknown => {
      try {
        FixedIndex.decode(b, 'x')
      } catch (e) {
        return e
      }
      return null
    }
    for (const cut of [0, 50, 95, buf.length - 33, buf.length - 1]) {
      const e = bad(buf.subarray(0, cut))
      expect(e, `cut at ${cut}`).toBeInstanceOf(DataError)
    }
    const flipped = Buffer.from(buf)
    flipped[70]! ^= 4
    expect(bad(flipped)).toBeInstanceOf(DataError)
    expect((bad(flipped) as Error).message).toMatch(/checksum/)
    // counts that disagree, with a valid checksum
    const resum = (b: Buffer): Buffer => {
      const body = b.subarray(0, b.length - 32)
      return Buffer.concat([body, createHash('sha256').update(body).digest()])
    }
    const wrongEntries = Buffer.from(buf)
    wrongEntries.writeBigUInt64LE(4n, 32)
    expect((bad(resum(wrongEntries)) as Error).message).toMatch(/wrong length/)
    const wrongBlocks = Buffer.from(buf)
    wrongBlocks.writeBigUInt64LE(12n, 24)
    expect((bad(resum(wrongBlocks)) as Error).message).toMatch(/inconsistent block count/)
    const wrongMap = Buffer.from(buf)
    wrongMap[64] = 0x0f // five marked blocks, three entries, same length
    expect(bad(resum(wrongMap))).toBeInstanceOf(DataError)
    expect((bad(resum(wrongMap)) as Error).message).toMatch(/entries for its map/)
  })

  it('refuses a record whose entry count does not fit its kind', () => {
    const cbm = map(11, [1])
    expect(() => FixedIndex.fromRecord({kind: 'delta', blockSize: BS, virtualSize: size, blockCount: 11, cbm, entries: randomBytes(64)})).toThrow(RangeError)
    expect(() => FixedIndex.fromRecord({kind: 'full', blockSize: BS, virtualSize: size, blockCount: 11, cbm, entries: randomBytes(32)})).toThrow(RangeError)
  })
})
