import {randomBytes} from 'node:crypto'
import {describe, expect, it} from 'vitest'
import {ChangedBlockMap} from '../../src/cbt/changed-block-map.js'
import {blockCountFor, decodeIndex, encodeIndex, type SnapshotIndex} from '../../src/repo/index-codec.js'

function sample(kind: 'full' | 'delta'): SnapshotIndex {
  const blockSize = 65536
  const virtualSize = 10 * blockSize + 123
  const blockCount = blockCountFor(virtualSize, blockSize)
  const cbm = new ChangedBlockMap(blockCount)
  for (const b of [0, 3, 10]) cbm.set(b)
  const n = kind === 'full' ? blockCount : 3
  return {kind, blockSize, virtualSize, blockCount, cbm, entries: randomBytes(n * 32)}
}

describe('index codec', () => {
  it.each(['full', 'delta'] as const)('round-trips a %s index', (kind) => {
    const ix = sample(kind)
    const back = decodeIndex(encodeIndex(ix), 'x')
    expect(back.kind).toBe(kind)
    expect(back.virtualSize).toBe(ix.virtualSize)
    expect(back.blockCount).toBe(11)
    expect([...back.cbm.blocks()]).toEqual([0, 3, 10])
    expect(back.entries.equals(ix.entries)).toBe(true)
  })

  it('refuses truncated, corrupt and inconsistent indexes', () => {
    const buf = encodeIndex(sample('delta'))
    expect(() => decodeIndex(buf.subarray(0, 50), 'x')).toThrow(/truncated/)
    expect(() => decodeIndex(buf.subarray(0, buf.length - 1), 'x')).toThrow(/checksum/)
    const bad = Buffer.from(buf)
    bad[70]! ^= 4
    expect(() => decodeIndex(bad, 'x')).toThrow(/checksum/)
    expect(() => encodeIndex({...sample('delta'), entries: randomBytes(64)})).toThrow(/entries/)
  })
})

describe('changed-block map', () => {
  it('counts, unions and yields ranges', () => {
    const a = new ChangedBlockMap(20)
    for (const b of [1, 2, 3, 9, 19]) a.set(b)
    expect(a.count()).toBe(5)
    expect(a.ranges()).toEqual([
      {firstBlock: 1, count: 3},
      {firstBlock: 9, count: 1},
      {firstBlock: 19, count: 1},
    ])
    const b = new ChangedBlockMap(20)
    b.set(4)
    a.union(b)
    expect(a.ranges()[0]).toEqual({firstBlock: 1, count: 4})
    a.clear(2)
    expect(a.has(2)).toBe(false)
    expect(ChangedBlockMap.all(13).count()).toBe(13)
  })
})
