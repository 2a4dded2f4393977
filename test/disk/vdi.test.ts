// The native VDI reader against qemu-img's view of VDIs qemu-img built
// (dynamic and static, sizes that are not whole blocks or sectors, images
// with holes), zero ("discarded") blocks, and differencing VDIs made by our
// writer (qemu can neither make nor read them), whose parent is found by
// UUID beside the child or one folder up, or refused naming the UUID.
import {mkdirSync, readFileSync, renameSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {openImage} from '../../src/disk/open.js'
import {encodeVdiHeader, formatVdiUuid, parseVdiHeader, VDI_TYPE_DYNAMIC, VDI_ZERO} from '../../src/disk/vdi-header.js'
import {VdiImage} from '../../src/disk/vdi-reader.js'
import {VdiWriter} from '../../src/disk/vdi-writer.js'
import {ImageFormatError} from '../../src/errors.js'
import {checkImage, MiB, makeDiskBytes, qemuImgAt, qemuIo, qemuRaw, readWhole, sha256, tempDir, writeRaw} from './image-fixtures.js'

const SIZE = 5 * MiB + 7 * 512
let dir: string
let cleanup: () => void
let rawData: Buffer

beforeAll(() => {
  ;({path: dir, cleanup} = tempDir('vdsnap-vdi-'))
  rawData = makeDiskBytes(SIZE, 7)
  writeRaw(join(dir, 'disk.raw'), rawData)
  writeRaw(join(dir, 'tail.raw'), makeDiskBytes(3 * MiB + 1000, 8))
})
afterAll(() => cleanup())

/** Writes `data` through our writer (all-zero 64 KiB pieces skipped, as restore does). */
async function writeVdi(path: string, data: Buffer, options: {subformat?: string; parent?: string} = {}, edits?: [number, Buffer][]): Promise<void> {
  const w = await VdiWriter.create(path, data.length, options)
  if (edits) for (const [o, d] of edits) await w.write(o, d)
  else {
    const zero = Buffer.alloc(65536)
    for (let at = 0; at < data.length; at += 65536) {
      const piece = data.subarray(at, Math.min(data.length, at + 65536))
      if (!piece.equals(zero.subarray(0, piece.length))) await w.write(at, piece)
    }
  }
  await w.close()
}

describe('VDI header codec', () => {
  it('round-trips every field, and qemu reads what it encodes', async () => {
    const h = {
      imageType: VDI_TYPE_DYNAMIC, flags: 0, offsetBmap: 512, offsetData: 4096, diskSize: 3 * MiB + 512, blockSize: MiB,
      blocks: 4, blocksAllocated: 0, uuidImage: Buffer.alloc(16, 1), uuidModify: Buffer.alloc(16, 2), uuidLink: Buffer.alloc(16), uuidParent: Buffer.alloc(16),
    }
    const enc = encodeVdiHeader(h)
    expect(parseVdiHeader(enc, 'x.vdi')).toEqual(h)
    const file = join(dir, 'codec.vdi')
    const bmap = Buffer.alloc(4096 - 512, 0xff)
    writeFileSync(file, Buffer.concat([enc, bmap]))
    expect(JSON.parse(qemuImgAt(dir, 'info', '--output=json', 'codec.vdi'))).toMatchObject({format: 'vdi', 'virtual-size': 3 * MiB + 512})
    expect(formatVdiUuid(Buffer.from('00112233445566778899aabbccddeeff', 'hex'))).toBe('33221100-5544-7766-8899-aabbccddeeff')
  })
})

describe('VDI reader against qemu-img', () => {
  it.each([
    ['dynamic', [] as string[], 'dynamic'],
    ['static', ['-o', 'static=on'], 'fixed'],
  ])('%s', async (name, opts, sub) => {
    qemuImgAt(dir, 'convert', '-f', 'raw', '-O', 'vdi', ...opts, 'disk.raw', `${name}.vdi`)
    const file = join(dir, `${name}.vdi`)
    expect(sha256(qemuRaw(dir, file))).toBe(sha256(rawData))
    await checkImage(file, rawData, 'vdi')
    const img = await openImage(file)
    expect(await img.info()).toMatchObject({format: 'vdi', subformat: sub, clusterSize: MiB, parents: []})
    await img.close()
  })

  it('a size that is not a whole number of sectors reads as qemu rounds it', async () => {
    qemuImgAt(dir, 'convert', '-f', 'raw', '-O', 'vdi', 'tail.raw', 'tail.vdi')
    const file = join(dir, 'tail.vdi')
    await checkImage(file, qemuRaw(dir, file), 'vdi')
  })

  it('an image with holes written by qemu-io maps only its written blocks', async () => {
    qemuImgAt(dir, 'create', '-f', 'vdi', 'holes.vdi', '9M')
    const file = join(dir, 'holes.vdi')
    qemuIo(file, 'vdi', 'write -P 0x11 4M 4k')
    qemuIo(file, 'vdi', 'write -P 0x22 1M 1536k')
    await checkImage(file, qemuRaw(dir, file), 'vdi')
    const img = await openImage(file)
    expect(await img.allocatedRanges()).toEqual([{offset: MiB, length: 2 * MiB}, {offset: 4 * MiB, length: MiB}])
    await img.close()
  })

  it('a zero (discarded) block reads as zeros and is not allocated', async () => {
    qemuImgAt(dir, 'convert', '-f', 'raw', '-O', 'vdi', 'disk.raw', 'zero.vdi')
    const file = join(dir, 'zero.vdi')
    const buf = readFileSync(file)
    const bmap = buf.readUInt32LE(340)
    buf.writeUInt32LE(VDI_ZERO, bmap + 4) // block 1
    writeFileSync(file, buf)
    const expected = Buffer.from(rawData)
    expected.fill(0, MiB, 2 * MiB)
    expect(sha256(qemuRaw(dir, file))).toBe(sha256(expected))
    await checkImage(file, expected, 'vdi')
    const img = await openImage(file)
    expect((await img.allocatedRanges()).some((r) => r.offset < 2 * MiB && r.offset + r.length > MiB)).toBe(false)
    await img.close()
  })
})

describe('differencing VDIs', () => {
  const edits = (): [number, Buffer][] => [
    [0, Buffer.alloc(64 * 1024, 0)],
    [3 * MiB + 4096, Buffer.alloc(8192, 0xab)],
  ]
  const expectedOver = (base: Buffer) => {
    const out = Buffer.from(base)
    for (const [o, d] of edits()) d.copy(out, o)
    return out
  }

  it('reads through the parent found by UUID beside it, and reports its own blocks as the overlay', async () => {
    const sub = join(dir, 'beside')
    mkdirSync(sub)
    await writeVdi(join(sub, 'base.vdi'), rawData)
    writeRaw(join(sub, 'unrelated.raw'), Buffer.alloc(4096, 1)) // not a VDI: skipped
    await writeVdi(join(sub, '{child}.vdi'), rawData, {parent: join(sub, 'base.vdi')}, edits())
    await checkImage(join(sub, '{child}.vdi'), expectedOver(rawData), 'vdi')
    const img = await openImage(join(sub, '{child}.vdi'))
    try {
      expect(await img.info()).toMatchObject({subformat: 'differencing', parents: [join(sub, 'base.vdi')]})
      expect(await img.overlayRanges!()).toEqual([{offset: 0, length: MiB}, {offset: 3 * MiB, length: MiB}])
    } finally {
      await img.close()
    }
  })

  it('finds the parent one folder up (VirtualBox keeps differencing images in Snapshots/)', async () => {
    const vm = join(dir, 'vm')
    mkdirSync(join(vm, 'Snapshots'), {recursive: true})
    await writeVdi(join(vm, 'disk.vdi'), rawData)
    await writeVdi(join(vm, 'Snapshots', 'snap1.vdi'), rawData, {parent: join(vm, 'disk.vdi')}, edits())
    await writeVdi(join(vm, 'Snapshots', 'snap2.vdi'), rawData, {parent: join(vm, 'Snapshots', 'snap1.vdi')}, [[2 * MiB, Buffer.alloc(512, 0x33)]])
    const expected = expectedOver(rawData)
    expected.fill(0x33, 2 * MiB, 2 * MiB + 512)
    await checkImage(join(vm, 'Snapshots', 'snap2.vdi'), expected, 'vdi')
    const img = await openImage(join(vm, 'Snapshots', 'snap2.vdi'))
    expect((await img.info()).parents).toEqual([join(vm, 'Snapshots', 'snap1.vdi'), join(vm, 'disk.vdi')])
    await img.close()
  })

  it('refuses a differencing VDI whose parent is not there, naming the parent UUID', async () => {
    const sub = join(dir, 'orphan')
    mkdirSync(join(sub, 'inner'), {recursive: true})
    await writeVdi(join(sub, 'inner', 'base.vdi'), rawData)
    await writeVdi(join(sub, 'inner', 'child.vdi'), rawData, {parent: join(sub, 'inner', 'base.vdi')}, edits())
    const base = await VdiImage.open(join(sub, 'inner', 'base.vdi'))
    const uuid = formatVdiUuid(base.header.uuidImage)
    await base.close()
    renameSync(join(sub, 'inner', 'base.vdi'), join(dir, 'moved-away.vdi'))
    const err = await openImage(join(sub, 'inner', 'child.vdi')).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ImageFormatError)
    expect((err as Error).message).toContain(`parent VDI {${uuid}} not found`)
    expect((err as Error).message).toContain(join(sub, 'inner'))
    expect((err as Error).message).not.toContain('\n')
  })

  it('a child larger than its parent reads zeros past the parent', async () => {
    const sub = join(dir, 'grow')
    mkdirSync(sub)
    const small = rawData.subarray(0, 2 * MiB)
    await writeVdi(join(sub, 'small.vdi'), small)
    await writeVdi(join(sub, 'big.vdi'), Buffer.alloc(4 * MiB), {parent: join(sub, 'small.vdi')}, [[3 * MiB, Buffer.alloc(512, 7)]])
    const expected = Buffer.concat([small, Buffer.alloc(2 * MiB)])
    expected.fill(7, 3 * MiB, 3 * MiB + 512)
    const img = await openImage(join(sub, 'big.vdi'))
    expect(sha256(await readWhole(img))).toBe(sha256(expected))
    await img.close()
  })
})
