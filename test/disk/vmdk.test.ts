// The native VMDK reader against qemu-img's own view of images qemu-img
// built (every subformat qemu writes, a hand-written descriptor with a
// ZERO extent, and a delta disk over a parent), and ESXi seSparse disks
// built from qemu's layout (qemu reads them but cannot write them).
import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {openImage} from '../../src/disk/open.js'
import {checkImage, MiB, makeDiskBytes, prng, qemuImgAt, qemuIo, qemuRaw, readWhole, sha256, tempDir, writeRaw} from './image-fixtures.js'
import {applyGrains, GRAIN, type GrainContent, writeSeSparseDisk, writeVmfsBase} from './sesparse-builder.js'

const SIZE = 5 * MiB + 7 * 512
let dir: string
let cleanup: () => void
let rawData: Buffer

beforeAll(() => {
  ;({path: dir, cleanup} = tempDir('vdsnap-vmdk-'))
  rawData = makeDiskBytes(SIZE, 7)
  writeRaw(join(dir, 'disk.raw'), rawData)
})
afterAll(() => cleanup())

describe('VMDK reader matrix', () => {
  for (const sub of ['monolithicSparse', 'streamOptimized', 'monolithicFlat', 'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat']) {
    it(sub, async () => {
      qemuImgAt(dir, 'convert', '-f', 'raw', '-O', 'vmdk', '-o', `subformat=${sub}`, 'disk.raw', `${sub}.vmdk`)
      const file = join(dir, `${sub}.vmdk`)
      expect(sha256(qemuRaw(dir, file))).toBe(sha256(rawData))
      await checkImage(file, rawData, 'vmdk')
      const img = await openImage(file)
      expect((await img.info()).subformat).toBe(sub)
      await img.close()
    })
  }

  it('a descriptor with FLAT and ZERO extents', async () => {
    writeFileSync(join(dir, 'part.bin'), rawData.subarray(0, 2 * MiB))
    const desc = ['# Disk DescriptorFile', 'version=1', 'CID=12345678', 'parentCID=ffffffff', 'createType="monolithicFlat"', '',
      `RW ${(2 * MiB) / 512} FLAT "part.bin" 0`, `RW ${(3 * MiB) / 512} ZERO`, ''].join('\n')
    writeFileSync(join(dir, 'mixed.vmdk'), desc)
    const expected = Buffer.concat([rawData.subarray(0, 2 * MiB), Buffer.alloc(3 * MiB)])
    // qemu 7.2 mis-sizes ZERO extents (it reuses the previous extent's file), so no qemu reference here.
    await checkImage(join(dir, 'mixed.vmdk'), expected, 'vmdk')
  })
})

describe('VMDK delta disks', () => {
  it('reads through the parent and reports the delta ranges', async () => {
    qemuImgAt(dir, 'convert', '-f', 'raw', '-O', 'vmdk', 'disk.raw', 'base.vmdk')
    qemuImgAt(dir, 'create', '-f', 'vmdk', '-b', 'base.vmdk', '-F', 'vmdk', 'delta.vmdk')
    const delta = join(dir, 'delta.vmdk')
    qemuIo(delta, 'vmdk', 'write -P 0xab 1M 64k')
    qemuIo(delta, 'vmdk', 'write -P 0xcd 4M 128k')
    await checkImage(delta, qemuRaw(dir, delta), 'vmdk')
    const img = await openImage(delta)
    try {
      expect(await img.overlayRanges!()).toEqual([
        {offset: MiB, length: 65536},
        {offset: 4 * MiB, length: 131072},
      ])
      expect((await img.info()).parents).toEqual([join(dir, 'base.vmdk')])
    } finally {
      await img.close()
    }
  })

  it('refuses a delta whose parent is missing, naming it', async () => {
    qemuImgAt(dir, 'convert', '-f', 'raw', '-O', 'vmdk', 'disk.raw', 'gone.vmdk')
    qemuImgAt(dir, 'create', '-f', 'vmdk', '-b', 'gone.vmdk', '-F', 'vmdk', 'orphan.vmdk')
    qemuImgAt(dir, 'info', 'orphan.vmdk')
    const {rmSync} = await import('node:fs')
    rmSync(join(dir, 'gone.vmdk'))
    await expect(openImage(join(dir, 'orphan.vmdk'))).rejects.toThrow(/gone\.vmdk/)
  })
})

describe('ESXi seSparse (hand-built from qemu\'s layout, checked against qemu-img)', () => {
  const SE_SIZE = 20 * MiB // two grain tables' worth (16 MiB each)
  const grains = (seed: number) => {
    const rnd = prng(seed)
    const m = new Map<number, GrainContent>()
    const fill = (g: number) => m.set(g, Buffer.from(Array.from({length: GRAIN}, () => (rnd() * 256) | 0)))
    for (const g of [0, 1, 2, 7, 255, 256, 1000, 4095, 4096, 4097, 5119]) fill(g)
    m.set(3, 'zero')
    m.set(300, 'unmapped')
    m.set(4100, 'zero')
    return m
  }

  it.each([
    ['low grain numbers', 0],
    ['grain numbers past 4096 (the split number encoding)', 5000],
  ])('a standalone seSparse disk: %s', async (_name, grainBase) => {
    const spec = {size: SE_SIZE, grains: grains(1), grainBase, seed: 3}
    const file = join(dir, `se-${grainBase}.vmdk`)
    writeSeSparseDisk(file, spec)
    const expected = applyGrains(Buffer.alloc(SE_SIZE), spec)
    expect(sha256(qemuRaw(dir, file))).toBe(sha256(expected))
    await checkImage(file, expected, 'vmdk')
    const img = await openImage(file)
    try {
      expect(await img.info()).toMatchObject({subformat: 'seSparse', clusterSize: GRAIN, parents: []})
      // data grains only: zero and unmapped grains are not allocated
      const ranges = await img.allocatedRanges()
      expect(ranges).toContainEqual({offset: 0, length: 3 * GRAIN})
      expect(ranges.some((r) => r.offset <= 3 * GRAIN && r.offset + r.length > 3 * GRAIN)).toBe(false)
    } finally {
      await img.close()
    }
  })

  it.each(['vmfs', 'monolithicFlat'])('a seSparse snapshot over a %s base reads through the parent; zero grains hide it', async (kind) => {
    const baseData = makeDiskBytes(SE_SIZE, 12)
    const base = join(dir, `esx-${kind}.vmdk`)
    if (kind === 'vmfs') writeVmfsBase(base, baseData)
    else {
      writeRaw(join(dir, `esx-${kind}.raw`), baseData)
      qemuImgAt(dir, 'convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=monolithicFlat', `esx-${kind}.raw`, `esx-${kind}.vmdk`)
    }
    const spec = {size: SE_SIZE, grains: grains(2), seed: 4}
    const delta = join(dir, `esx-${kind}-000001.vmdk`)
    const cid = /CID=([0-9a-f]+)/.exec(readFileSync(base, 'latin1'))![1]
    writeSeSparseDisk(delta, spec, `esx-${kind}.vmdk`, cid)
    const expected = applyGrains(baseData, spec)
    expect(sha256(qemuRaw(dir, delta))).toBe(sha256(expected))
    await checkImage(delta, expected, 'vmdk')
    const img = await openImage(delta)
    try {
      expect((await img.info()).parents).toEqual([base])
      const own = await img.overlayRanges!()
      expect(own).toContainEqual({offset: 0, length: 4 * GRAIN})
      expect(own).toContainEqual({offset: 300 * GRAIN, length: GRAIN})
      expect(own.reduce((s, r) => s + r.length, 0)).toBe(spec.grains.size * GRAIN)
    } finally {
      await img.close()
    }
  })

  it('two seSparse snapshots (delta over delta over a vmfs base, as ESXi writes them) read as qemu reads them; overlay is the top delta\'s own grains', async () => {
    const baseData = makeDiskBytes(SE_SIZE, 21)
    writeVmfsBase(join(dir, 'two.vmdk'), baseData)
    const spec1 = {size: SE_SIZE, grains: grains(6), seed: 7}
    writeSeSparseDisk(join(dir, 'two-000001.vmdk'), spec1, 'two.vmdk', '1a2b3c4d', '3c4d5e6f')
    // The top delta rewrites grains the first holds (1, 2, 4096), zeroes one (7), fills one the first zeroed (3),
    // adds new ones (10, 5000), and leaves 0 and 255 to the first delta, and the rest to the base.
    const rnd = prng(8)
    const data = () => Buffer.from(Array.from({length: GRAIN}, () => (rnd() * 256) | 0))
    const spec2 = {size: SE_SIZE, seed: 9, grainBase: 4094, grains: new Map<number, GrainContent>([
      [1, data()], [2, data()], [4096, data()], [7, 'zero'], [3, data()], [10, data()], [5000, data()], [4100, 'unmapped'],
    ])}
    const top = join(dir, 'two-000002.vmdk')
    writeSeSparseDisk(top, spec2, 'two-000001.vmdk', '3c4d5e6f', '4d5e6f70')
    const expected = applyGrains(applyGrains(baseData, spec1), spec2)
    expect(sha256(qemuRaw(dir, top))).toBe(sha256(expected))
    await checkImage(top, expected, 'vmdk')
    const img = await openImage(top)
    try {
      expect((await img.info()).parents).toEqual([join(dir, 'two-000001.vmdk'), join(dir, 'two.vmdk')])
      const own = await img.overlayRanges!()
      expect(own).toEqual([
        {offset: GRAIN, length: 3 * GRAIN}, {offset: 7 * GRAIN, length: GRAIN}, {offset: 10 * GRAIN, length: GRAIN},
        {offset: 4096 * GRAIN, length: GRAIN}, {offset: 4100 * GRAIN, length: GRAIN}, {offset: 5000 * GRAIN, length: GRAIN},
      ])
    } finally {
      await img.close()
    }
  })

  it('the bare seSparse extent is refused with a pointer to its descriptor, not read as raw', async () => {
    writeSeSparseDisk(join(dir, 'bare.vmdk'), {size: MiB, grains: new Map([[0, Buffer.alloc(GRAIN, 1)]])})
    await expect(openImage(join(dir, 'bare-sesparse.vmdk'))).rejects.toThrow(/seSparse data extent .*not the disk/)
  })
})
