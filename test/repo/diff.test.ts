// diff from resolved indexes: hand-made chains in an in-memory repository,
// with the expected changed blocks written out per case.
import {createHash} from 'node:crypto'
import {describe, expect, it} from 'vitest'
import {ChangedBlockMap} from '../../src/cbt/changed-block-map.js'
import {diffSnapshots} from '../../src/repo/diff.js'
import {DIGEST_SIZE} from '../../src/chunk/digest.js'
import {UsageError} from '../../src/errors.js'
import {FixedIndex} from '../../src/repo/fixed-index.js'
import type {Manifest} from '../../src/repo/manifest.js'
import {Repository} from '../../src/repo/repository.js'
import {MemoryBackend} from '../helpers/memory-backend.js'

const BS = 65536

/** A made-up chunk id per label; 0 is the zero block. */
function id(label: number): Buffer {
  return label === 0 ? Buffer.alloc(DIGEST_SIZE) : createHash('sha256').update(`block ${label}`).digest()
}

let clock = 0

/** Saves a snapshot whose blocks hold `labels`: a full index, or a delta on `parent` listing `changed`. */
async function snap(repo: Repository, virtualSize: number, labels: number[], parent?: Manifest, changed?: number[]): Promise<Manifest> {
  const blockCount = Math.ceil(virtualSize / BS)
  expect(labels.length).toBe(blockCount)
  const full = parent === undefined
  const cbm = full ? ChangedBlockMap.all(blockCount) : new ChangedBlockMap(blockCount)
  for (const b of changed ?? []) cbm.set(b)
  const entries = Buffer.concat([...cbm.blocks()].map((b) => id(labels[b]!)))
  const index = await repo.saveIndex(FixedIndex.fromRecord({kind: full ? 'full' : 'delta', blockSize: BS, virtualSize, blockCount, cbm, entries}))
  const m: Manifest = {
    version: 1, id: Repository.newSnapshotId(), disk: 'vm', time: new Date(Date.UTC(2026, 0, 1) + clock++ * 60_000).toISOString(),
    parent: parent?.id ?? null, index, indexKind: full ? 'full' : 'delta', chainLength: full ? 0 : parent.chainLength + 1,
    blockSize: BS, virtualSize, source: {path: '/x', format: 'raw', size: virtualSize, mtimeMs: 0}, tags: [], hostname: 'h',
    stats: {bytesRead: 0, bytesChanged: 0, bytesNew: 0, bytesStored: 0, blocksChanged: cbm.count(), blocksNew: 0, blocksUsed: 0, durationMs: 0},
  }
  await repo.saveManifest(m)
  return m
}

/** The changed block numbers a diff's ranges cover. */
function blocksOf(ranges: {offset: number; length: number}[]): number[] {
  const out: number[] = []
  for (const r of ranges) for (let off = r.offset; off < r.offset + r.length; off += BS) out.push(off / BS)
  return out
}

async function newRepo(): Promise<Repository> {
  return Repository.init(new MemoryBackend(), {blockSize: BS, level: 1})
}

describe('diffSnapshots', () => {
  it('reports the blocks whose entries differ through a chain of deltas, not the blocks a delta merely lists', async () => {
    const repo = await newRepo()
    const size = 8 * BS - 1000 // short last block
    const a = await snap(repo, size, [1, 2, 3, 4, 5, 6, 7, 8])
    // b1 rewrites block 1, lists block 3 with the same content, zeroes block 5
    const b1 = await snap(repo, size, [1, 12, 3, 4, 5, 0, 7, 8], a, [1, 3, 5])
    // b2 rewrites the short last block and puts block 1 back as it was in a
    const b2 = await snap(repo, size, [1, 2, 3, 4, 5, 0, 7, 18], b1, [1, 7])
    const d = await diffSnapshots(repo, a, b2)
    expect(blocksOf(d.ranges)).toEqual([5, 7])
    expect(d).toMatchObject({from: a.id, to: b2.id, blockSize: BS, blockCount: 8, fromSize: size, toSize: size, changedBlocks: 2})
    expect(d.ranges).toEqual([
      {offset: 5 * BS, length: BS},
      {offset: 7 * BS, length: BS - 1000},
    ])
    expect(d.changedBytes).toBe(2 * BS - 1000)
    expect(blocksOf((await diffSnapshots(repo, a, b1)).ranges)).toEqual([1, 5])
    expect(blocksOf((await diffSnapshots(repo, b1, b2)).ranges)).toEqual([1, 7])
    expect((await diffSnapshots(repo, b2, b2)).changedBlocks).toBe(0)
  })

  it('merges neighbouring changed blocks into one range', async () => {
    const repo = await newRepo()
    const a = await snap(repo, 6 * BS, [1, 2, 3, 4, 5, 6])
    const b = await snap(repo, 6 * BS, [1, 22, 33, 44, 5, 66], a, [1, 2, 3, 5])
    expect((await diffSnapshots(repo, a, b)).ranges).toEqual([
      {offset: BS, length: 3 * BS},
      {offset: 5 * BS, length: BS},
    ])
  })

  it('a disk that grew: blocks both hold whole are compared, the old short last block and every new block count as changed', async () => {
    const repo = await newRepo()
    const small = 5 * BS + 100
    const big = 8 * BS + 7
    const a = await snap(repo, small, [1, 2, 3, 4, 5, 0])
    // a new full (the size changed); block 2 rewritten, block 5 (was short and zero) still zero
    const b = await snap(repo, big, [1, 2, 33, 4, 5, 0, 0, 9, 10])
    const d = await diffSnapshots(repo, a, b)
    expect(blocksOf(d.ranges)).toEqual([2, 5, 6, 7, 8])
    expect(d).toMatchObject({blockCount: 9, fromSize: small, toSize: big, changedBlocks: 5})
    expect(d.ranges).toEqual([
      {offset: 2 * BS, length: BS},
      {offset: 5 * BS, length: big - 5 * BS},
    ])
    expect(d.changedBytes).toBe(BS + big - 5 * BS)
    // shrinking back is the same map, over the larger size
    const back = await diffSnapshots(repo, b, a)
    expect(back.ranges).toEqual(d.ranges)
    expect(back).toMatchObject({fromSize: big, toSize: small, blockCount: 9})
  })

  it('a disk that grew from a whole number of blocks: its last block is compared like the others', async () => {
    const repo = await newRepo()
    const a = await snap(repo, 3 * BS, [1, 2, 3])
    const b = await snap(repo, 5 * BS, [1, 2, 3, 4, 0])
    expect(blocksOf((await diffSnapshots(repo, a, b)).ranges)).toEqual([3, 4])
  })

  it('refuses snapshots of different block sizes', async () => {
    const repo = await newRepo()
    const a = await snap(repo, 2 * BS, [1, 2])
    await expect(diffSnapshots(repo, a, {...a, id: 'f'.repeat(64), blockSize: 2 * BS})).rejects.toThrow(UsageError)
  })
})
