// BlockSource.read() read-ahead: a reader that goes through the disk in
// order gets the next blocks loaded before it asks; random readers and the
// restore configuration (no readAheadBytes) load exactly what they ask for.
// The decoded chunks it keeps stay within cacheBytes on a disk many times
// larger, for sequential (read-ahead) and random readers.
// On a real repository made by the CLI; every block read is compared.
import {writeFileSync} from 'node:fs'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {openStorage} from '../../src/repo/storage.js'
import {Repository} from '../../src/repo/repository.js'
import {selectSnapshot} from '../../src/repo/select.js'
import {BlockSource} from '../../src/repo/block-source.js'
import {vdsnapJson} from '../helpers/cli.js'
import {prng} from '../helpers/images.js'
import {formatWorkspace, initRepo, BLOCK, MiB} from '../integration/format-fixtures.js'

const ws = formatWorkspace('vdsnap-block-source-')
let repo: Repository
let disk: Buffer
let snapId = ''

beforeAll(async () => {
  const rnd = prng(11)
  disk = Buffer.alloc(8 * MiB)
  for (let i = 0; i < disk.length; i++) disk[i] = Math.floor(rnd() * 256)
  disk.fill(0, 3 * BLOCK, 4 * BLOCK) // one zero block
  writeFileSync(ws.at('disk.raw'), disk)
  await initRepo(ws)
  snapId = (await vdsnapJson(['backup', ws.at('disk.raw'), '--disk', 'd'], ws.env)).snapshot
  repo = await Repository.open(await openStorage(ws.at('repo')), async () => '')
})
afterAll(async () => {
  await repo?.close()
  ws.cleanup()
})

const expectBlock = (b: number, data: Buffer | null) => {
  if (data === null) expect(disk.subarray(b * BLOCK, (b + 1) * BLOCK).equals(Buffer.alloc(BLOCK))).toBe(true)
  else expect(data.equals(disk.subarray(b * BLOCK, (b + 1) * BLOCK)), `block ${b}`).toBe(true)
}

describe('read-ahead', () => {
  it('loads the blocks ahead of a sequential reader, once each, and none for random or restore readers', async () => {
    const snap = await selectSnapshot(repo, snapId)
    const src = await BlockSource.open(repo, snap, {readAheadBytes: 4 * BLOCK, cacheBytes: 16 * BLOCK})
    try {
      expectBlock(0, await src.read(0))
      expect(src.blocksReadAhead).toBe(0) // one read is not a sequence
      expectBlock(1, await src.read(1))
      expect(src.blocksReadAhead).toBe(3) // blocks 2, 4, 5 (3 is a zero block)
      expectBlock(1, await src.read(1)) // the same block again (smaller requests): nothing new
      expect(src.blocksReadAhead).toBe(3)
      for (let b = 2; b < 8; b++) expectBlock(b, await src.read(b))
      expect(src.blocksReadAhead).toBe(3 + 6) // one more each step: blocks 6 to 11
      // random readers: no sequence, no read-ahead
      for (const b of [14, 9, 5, 12]) expectBlock(b, await src.read(b))
      expect(src.blocksReadAhead).toBe(9)
      // every block once more (reverse order): each chunk was loaded exactly once, read-ahead included
      for (let b = 15; b >= 0; b--) expectBlock(b, await src.read(b))
      expect(src.chunksRead).toBe(15)
    } finally {
      await src.close()
    }
    const restoreLike = await BlockSource.open(repo, snap)
    try {
      for (let b = 0; b < 6; b++) expectBlock(b, await restoreLike.read(b))
      expect(restoreLike.blocksReadAhead).toBe(0)
      expect(restoreLike.chunksRead).toBe(5)
    } finally {
      await restoreLike.close()
    }
  })
})

describe('cache bound', () => {
  const CACHE = 3 * BLOCK // the disk is 16 blocks: more than 5 times the cache
  it.each([
    ['sequential with read-ahead', () => [...Array(16).keys(), ...Array(16).keys()]],
    ['random', () => {
      const rnd = prng(5)
      return Array.from({length: 64}, () => Math.floor(rnd() * 16))
    }],
  ] as const)('%s: the decoded bytes held never exceed --cache-size, and fill it', async (_name, order) => {
    const snap = await selectSnapshot(repo, snapId)
    const src = await BlockSource.open(repo, snap, {readAheadBytes: 2 * BLOCK, cacheBytes: CACHE})
    let most = 0
    try {
      for (const b of order()) {
        expectBlock(b, await src.read(b))
        expect(src.cachedBytes).toBeLessThanOrEqual(CACHE)
        most = Math.max(most, src.cachedBytes)
      }
      // the cache was used up to its size, not left empty: the bound above is what held it
      expect(most).toBe(CACHE)
      // more was decoded than the cache can hold: older chunks were let go
      expect(src.chunksRead * BLOCK).toBeGreaterThan(2 * CACHE)
    } finally {
      await src.close()
    }
  })
})

describe('blocks(): batched decoding and reused buffers', () => {
  // 48 blocks drawn from 5 distinct chunks and zero blocks, repeats near and
  // far apart: a buffer reused while a queued block still needs its chunk
  // would show up as a wrong block below.
  const rws = formatWorkspace('vdsnap-block-source-reuse-')
  let rrepo: Repository
  let rdisk: Buffer
  let rsnap = ''
  beforeAll(async () => {
    const rnd = prng(23)
    const distinct = Array.from({length: 5}, () => Buffer.from(Array.from({length: BLOCK}, () => Math.floor(rnd() * 256))))
    const order = Array.from({length: 48}, () => Math.floor(rnd() * 6)) // 5 = a zero block
    rdisk = Buffer.concat(order.map((k) => (k === 5 ? Buffer.alloc(BLOCK) : distinct[k]!)))
    writeFileSync(rws.at('disk.raw'), rdisk)
    await initRepo(rws)
    rsnap = (await vdsnapJson(['backup', rws.at('disk.raw'), '--disk', 'r'], rws.env)).snapshot
    rrepo = await Repository.open(await openStorage(rws.at('repo')), async () => '')
  })
  afterAll(async () => {
    await rrepo?.close()
    rws.cleanup()
  })

  it.each([
    ['a window of 4 blocks', 4 * BLOCK],
    ['the default window', undefined],
  ])('%s: every block right, every block released, buffers reused, several chunks per worker message', async (_name, prefetchBytes) => {
    const src = await BlockSource.open(rrepo, await selectSnapshot(rrepo, rsnap), {prefetchBytes, cacheBytes: 2 * BLOCK})
    try {
      let n = 0
      for await (const block of src.blocks()) {
        const want = rdisk.subarray(block.offset, block.offset + block.length)
        if (block.data === null) expect(want.equals(Buffer.alloc(block.length)), `block ${block.index}`).toBe(true)
        else expect(block.data.equals(want), `block ${block.index}`).toBe(true)
        src.release(block)
        n++
      }
      expect(n).toBe(48)
      const stats = src.decodeStats
      expect(stats.decoded).toBe(src.chunksRead)
      // a small window has to reuse what it released; the default one holds this whole disk
      if (prefetchBytes) expect(stats.reused).toBeGreaterThan(0)
      expect(stats.messages).toBeLessThanOrEqual(stats.decoded)
      // a block read() handed out keeps its bytes through a later blocks() that releases everything
      const b = [...Array(48).keys()].find((i) => !src.isZero(i))!
      const held = (await src.read(b))!
      for await (const block of src.blocks()) src.release(block)
      expect(held.equals(rdisk.subarray(b * BLOCK, (b + 1) * BLOCK))).toBe(true)
    } finally {
      await src.close()
    }
  })
})
