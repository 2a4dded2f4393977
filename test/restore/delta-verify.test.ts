// Which target blocks --delta-from checks before writing: every block it
// keeps on a small disk, a random sample of them on a large one, and never
// fewer than SAMPLE_BLOCKS in all (topped up from the blocks it writes).
import {describe, expect, it} from 'vitest'
import {SAMPLE_BLOCKS, SMALL_DISK_BYTES, sampleBlocks} from '../../src/restore/delta-verify.js'
import {prng} from '../helpers/images.js'

const BLOCK = 64 * 1024

function geometry(virtualSize: number) {
  const blockCount = Math.ceil(virtualSize / BLOCK)
  return {blockSize: BLOCK, virtualSize, blockCount, entries: Buffer.alloc(0), chain: []}
}

describe('sampleBlocks', () => {
  const seeded = (seed: number) => {
    const r = prng(seed)
    return (n: number) => Math.floor(r() * n)
  }

  it('a small disk: every block the delta keeps, topped up to the minimum from the blocks it writes', () => {
    const have = geometry(8 * 1024 * 1024) // 128 blocks
    const writes = (b: number) => b >= 100 // keeps 0..99
    const s = sampleBlocks({have, writes, random: seeded(1)})
    expect(s.filter((b) => !writes(b))).toEqual([...Array(100).keys()])
    expect(s.length).toBe(100)
    const mostlyWritten = sampleBlocks({have, writes: (b) => b >= 10, random: seeded(2)})
    expect(mostlyWritten.filter((b) => b < 10)).toEqual([...Array(10).keys()])
    expect(mostlyWritten.length).toBe(SAMPLE_BLOCKS)
    expect(new Set(mostlyWritten).size).toBe(SAMPLE_BLOCKS)
  })

  it('a large disk: SAMPLE_BLOCKS distinct random blocks the delta keeps, sorted, different per seed', () => {
    const have = geometry(4 * SMALL_DISK_BYTES)
    const writes = (b: number) => b % 3 === 0
    const a = sampleBlocks({have, writes, random: seeded(3)})
    const b = sampleBlocks({have, writes, random: seeded(4)})
    for (const s of [a, b]) {
      expect(s.length).toBe(SAMPLE_BLOCKS)
      expect(new Set(s).size).toBe(SAMPLE_BLOCKS)
      expect(s.every((x) => !writes(x) && x >= 0 && x < have.blockCount)).toBe(true)
      expect([...s].sort((x, y) => x - y)).toEqual(s)
    }
    expect(a).not.toEqual(b)
    // spread over the disk, not bunched at its start
    expect(Math.max(...a)).toBeGreaterThan(have.blockCount / 2)
  })

  it('a disk with fewer blocks than the minimum: all of them', () => {
    const have = geometry(10 * BLOCK)
    expect(sampleBlocks({have, writes: (b) => b % 2 === 0})).toEqual([...Array(10).keys()])
  })
})
