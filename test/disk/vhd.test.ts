// VHD reader and writer against qemu-img: qemu builds dynamic and fixed
// images; differencing images (qemu cannot create them) come from our own
// writer's `parent` option and are checked against bytes computed here.
import {execFileSync} from 'node:child_process'
import {copyFileSync, readFileSync, renameSync, mkdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {openImage} from '../../src/disk/open.js'
import {FORMATS} from '../../src/disk/formats.js'
import {VhdImage} from '../../src/disk/vhd-reader.js'
import {createVhdWriter} from '../../src/disk/vhd-writer.js'
import {chsFor, vhdChecksum, vhdGeometry} from '../../src/disk/vhd-footer.js'
import {qemuImg, qemuRaw, rangesCoverData, readWhole, sha256 as sha, tempDir, writeRaw} from './image-fixtures.js'
import {expectReadOrVdsnapError, expectSmallerChildClipped, mixedDisk, prngU32, qemuStatus, sameDisk, writeThrough} from './vhd-test-helpers.js'

const tmp = tempDir('vdsnap-vhd-')
afterAll(() => tmp.cleanup())
const at = (name: string) => join(tmp.path, name)

const SIZE = 5 * 1024 * 1024 + 12345
const base = mixedDisk(SIZE, 7)
writeRaw(at('base.raw'), base)

async function checkAgainstQemu(path: string, expectedSubformat: string): Promise<void> {
  const img = await openImage(path)
  try {
    expect(img.format).toBe('vhd')
    const q = qemuRaw(tmp.path, path, 'vpc')
    expect(img.virtualSize).toBe(q.length)
    const mine = await readWhole(img)
    expect(sha(mine)).toBe(sha(q))
    expect(sameDisk(mine, base)).toBe(true)
    expect(rangesCoverData(mine, await img.allocatedRanges())).toBe(true)
    expect((await img.info()).subformat).toBe(expectedSubformat)
  } finally {
    await img.close()
  }
}

describe('VHD reader on qemu-made images', () => {
  for (const [name, opts, sub] of [
    ['dynamic', 'subformat=dynamic', 'dynamic'],
    ['fixed', 'subformat=fixed', 'fixed'],
    ['dynamic force_size', 'subformat=dynamic,force_size=on', 'dynamic'],
    ['fixed force_size', 'subformat=fixed,force_size=on', 'fixed'],
  ] as const) {
    it(`reads a ${name} VHD like qemu`, async () => {
      const path = at(`${name.replace(/ /g, '-')}.vhd`)
      qemuImg('convert', '-f', 'raw', '-O', 'vpc', '-o', opts, at('base.raw'), path)
      await checkAgainstQemu(path, sub)
    })
  }

  it('reads data qemu-io wrote into an empty dynamic VHD; untouched blocks stay unallocated', async () => {
    const path = at('sparse.vhd')
    qemuImg('create', '-f', 'vpc', path, '64M')
    execFileSync('/usr/bin/qemu-io', ['-f', 'vpc', '-c', 'write -P 0x5a 3M 64k', '-c', 'write -P 0x33 40M 512', path], {stdio: 'ignore'})
    const img = await openImage(path)
    const q = qemuRaw(tmp.path, path, 'vpc')
    expect(img.virtualSize).toBe(q.length)
    expect(sha(await readWhole(img))).toBe(sha(q))
    expect(await img.allocatedRanges()).toEqual([
      {offset: 2 * 1024 * 1024, length: 2 * 1024 * 1024},
      {offset: 40 * 1024 * 1024, length: 2 * 1024 * 1024},
    ])
    await img.close()
  })
})

describe('VHD writer', () => {
  // Sizes with no exact CHS geometry: the footer must still give qemu the exact size.
  const SECTOR_SIZE = Math.ceil(SIZE / 512) * 512 // SIZE is not a whole number of sectors: rounded up
  for (const sub of ['dynamic', 'fixed']) {
    it(`writes a ${sub} VHD of exactly the disk's size that qemu-img compare accepts`, async () => {
      const out = at(`written-${sub}.vhd`)
      const entry = FORMATS.find((f) => f.name === 'vhd')!
      await writeThrough(await entry.create!(out, SIZE, {subformat: sub}), base)
      expect(JSON.parse(qemuImg('info', '-f', 'vpc', '--output=json', out))['virtual-size']).toBe(SECTOR_SIZE)
      const padded = at(`padded-${sub}.raw`)
      writeRaw(padded, Buffer.concat([base, Buffer.alloc(SECTOR_SIZE - SIZE)]))
      const cmp = qemuStatus('compare', '-f', 'raw', '-F', 'vpc', padded, out)
      expect(cmp.status, cmp.out).toBe(0)
      expect(cmp.out).not.toMatch(/warning|mismatch/i)
      const img = await openImage(out)
      expect(img.virtualSize).toBe(SECTOR_SIZE)
      expect(sameDisk(await readWhole(img), base)).toBe(true)
      await img.close()
    })
  }

  it('keeps a geometry when one fits exactly, and the largest one otherwise', () => {
    // 4 heads x 17 sectors x 602 cylinders = 40936 sectors: a real geometry.
    expect(vhdGeometry(40936 * 512)).toEqual({cylinders: 602, heads: 4, sectorsPerTrack: 17, size: 40936 * 512})
    expect(vhdGeometry(20 * 1024 * 1024)).toEqual({cylinders: 65535, heads: 16, sectorsPerTrack: 255, size: 20 * 1024 * 1024})
    expect(vhdGeometry(1000).size).toBe(1024)
  })

  it('abort() removes the partial file', async () => {
    const out = at('aborted.vhd')
    const w = await createVhdWriter(out, SIZE)
    await w.write(0, base.subarray(0, 65536))
    await w.abort()
    expect(() => readFileSync(out)).toThrow()
  })
})

describe('VHD virtual size by creator app, as qemu computes it', () => {
  // Dynamic and fixed VHDs whose footer holds an exact current size; the
  // geometry is set below it, above it or to the maximum, and the creator
  // app varied: for each, our reader must report the size `qemu-img info` does.
  const sectors = Math.ceil(SIZE / 512)
  const below = chsFor(sectors)
  let above = chsFor(sectors)
  for (let extra = 1; above.cylinders * above.heads * above.sectorsPerTrack <= sectors; extra++) above = chsFor(sectors + extra)
  const max = {cylinders: 65535, heads: 16, sectorsPerTrack: 255}
  const apps = ['vpc ', 'qemu', 'qem2', 'win ', 'd2v ', 'CTXS', 'tap\0', 'vdsn', 'VBox', 'tap ']

  it.each(['dynamic', 'fixed'])('%s, every creator app and geometry', async (sub) => {
    const source = at(`creator-src-${sub}.vhd`)
    await writeThrough(await createVhdWriter(source, SIZE, {subformat: sub}), base)
    const bytes = readFileSync(source)
    expect(below.cylinders * below.heads * below.sectorsPerTrack).toBeLessThan(sectors)
    const seen = new Set<number>()
    for (const app of apps) {
      for (const [name, g] of [['below', below], ['above', above], ['max', max]] as const) {
        // a fixed VHD has its footer only at the end
        for (const f of sub === 'fixed' ? [bytes.length - 512] : [0, bytes.length - 512]) {
          bytes.write(app, f + 28, 'latin1')
          bytes.writeUInt16BE(g.cylinders, f + 56)
          bytes[f + 58] = g.heads
          bytes[f + 59] = g.sectorsPerTrack
          bytes.writeUInt32BE(vhdChecksum(bytes.subarray(f, f + 512), 64), f + 64)
        }
        const path = at(`creator-${sub}-${name}.vhd`)
        writeFileSync(path, bytes)
        const qemuSize = JSON.parse(qemuImg('info', '-f', 'vpc', '--output=json', path))['virtual-size']
        const img = await openImage(path)
        expect(img.virtualSize, `${JSON.stringify(app)} ${name}`).toBe(qemuSize)
        await img.close()
        seen.add(qemuSize)
      }
    }
    expect(seen.size, 'the cases must tell the rules apart').toBe(3)
  })
})

/** Writes `edits` (offset → bytes, ascending) as a differencing child of `parent`; returns the expected disk. */
async function makeChild(parent: string, child: string, parentBytes: Buffer, edits: [number, Buffer][], locators?: ('W2ru' | 'W2ku' | 'MacX')[]): Promise<Buffer> {
  const pimg = await VhdImage.open(parent)
  const size = pimg.virtualSize
  await pimg.close()
  const w = await createVhdWriter(child, size, {parent, locators})
  const expected = Buffer.alloc(size)
  parentBytes.copy(expected)
  for (const [off, data] of edits) {
    await w.write(off, data)
    data.copy(expected, off)
  }
  await w.close()
  return expected
}

const EDITS: [number, Buffer][] = [
  [512, Buffer.alloc(1024, 0xaa)],
  [65536 * 3, Buffer.alloc(65536, 0)],
  [2 * 1024 * 1024 - 512, Buffer.alloc(2048, 0x5c)],
  [4 * 1024 * 1024 + 4096, Buffer.alloc(512 * 7, 0x11)],
]

describe('VHD differencing', () => {
  const parentPath = at('diff-base.vhd')
  qemuImg('convert', '-f', 'raw', '-O', 'vpc', at('base.raw'), parentPath)
  const parentBytes = qemuRaw(tmp.path, parentPath, 'vpc')

  for (const locs of [['W2ru', 'W2ku'], ['W2ku'], ['MacX'], []] as const) {
    it(`reads a child through locators [${locs.join(',')}]`, async () => {
      const child = at(`child-${locs.join('-') || 'name'}.vhd`)
      const expected = await makeChild(parentPath, child, parentBytes, EDITS, [...locs])
      const img = await openImage(child)
      expect(img.parent?.path).toBe(parentPath)
      expect(sha(await readWhole(img, [777 * 512]))).toBe(sha(expected))
      const overlay = await img.overlayRanges!()
      expect(overlay).toEqual([
        {offset: 512, length: 1024},
        {offset: 65536 * 3, length: 65536},
        {offset: 2 * 1024 * 1024 - 512, length: 2048},
        {offset: 4 * 1024 * 1024 + 4096, length: 512 * 7},
      ])
      expect(rangesCoverData(expected, await img.allocatedRanges())).toBe(true)
      expect((await img.info()).parents).toEqual([parentPath])
      await img.close()
    })
  }

  it('finds a moved chain by file name and names a missing parent', async () => {
    const dir = at('moved')
    mkdirSync(dir)
    const child = join(dir, 'c.vhd')
    const p = join(dir, 'p.vhd')
    copyFileSync(parentPath, p)
    const expected = await makeChild(p, child, parentBytes, EDITS, ['W2ku'])
    const dir2 = at('moved2')
    renameSync(dir, dir2)
    const img = await VhdImage.open(join(dir2, 'c.vhd'))
    expect(sha(await readWhole(img))).toBe(sha(expected))
    await img.close()
    renameSync(join(dir2, 'p.vhd'), join(dir2, 'gone.vhd'))
    await expect(VhdImage.open(join(dir2, 'c.vhd'))).rejects.toThrow(/parent image .*p\.vhd not found/)
  })

  it('refuses a parent loop', async () => {
    const p = at('loop-p.vhd')
    const c = at('loop-c.vhd')
    copyFileSync(parentPath, p)
    await makeChild(p, c, parentBytes, EDITS)
    const p2 = at('loop-p2.vhd')
    await makeChild(c, p2, parentBytes, [])
    renameSync(p2, p)
    await expect(VhdImage.open(c)).rejects.toThrow(/loop/)
  })

  it('a child smaller than its parent lists no allocated range past its own end', async () => {
    await expectSmallerChildClipped(createVhdWriter, at('big-parent.vhd'), at('small-child.vhd'))
  })
})

describe('VHD corrupt input', () => {
  const dyn = at('corrupt-src.vhd')
  const fixed = at('corrupt-src-fixed.vhd')
  qemuImg('convert', '-f', 'raw', '-O', 'vpc', at('base.raw'), dyn)
  qemuImg('convert', '-f', 'raw', '-O', 'vpc', '-o', 'subformat=fixed', at('base.raw'), fixed)
  const dynBytes = readFileSync(dyn)

  function variant(name: string, mutate: (b: Buffer) => Buffer, from = dynBytes): string {
    const path = at(`bad-${name}.vhd`)
    writeFileSync(path, mutate(Buffer.from(from)))
    return path
  }
  const fixChecksum = (b: Buffer, start: number, len: number, field: number) => {
    b.writeUInt32BE(0, start + field)
    let s = 0
    for (let i = start; i < start + len; i++) s += b[i]!
    b.writeUInt32BE(~s >>> 0, start + field)
  }

  it.each([
    ['truncated footer', (b: Buffer) => b.subarray(0, 300), /too small for a VHD footer/],
    ['wrong cookie in both footers', (b: Buffer) => (b.write('XXXX', 0), b.write('XXXX', b.length - 512), b), /cookie "conectix"/],
    ['bad footer checksums', (b: Buffer) => (b[70]! ^= 1, b[b.length - 512 + 70]! ^= 1, b), /checksum mismatch/],
    ['wrong dynamic header cookie', (b: Buffer) => (b.write('cxspXXXX', 512, 'latin1'), b), /cxsparse/],
    ['bad dynamic header checksum', (b: Buffer) => (b[512 + 40]! ^= 1, b), /dynamic header checksum/],
    ['absurd size', (b: Buffer) => {
      for (const f of [0, b.length - 512]) {
        b.writeBigUInt64BE(2n ** 60n, f + 48)
        b.write('win ', f + 28, 'latin1')
        fixChecksum(b, f, 512, 64)
      }
      return b
    }, /absurdly large/],
    ['BAT too small for the size', (b: Buffer) => (b.writeUInt32BE(1, 512 + 28), fixChecksum(b, 512, 1024, 36), b), /needs 3 BAT entries/],
  ])('refuses %s', async (_name, mutate, message) => {
    const path = variant(String(_name).replace(/ /g, '-'), mutate as (b: Buffer) => Buffer)
    await expect(VhdImage.open(path)).rejects.toThrow(message as RegExp)
  })

  it('refuses a BAT entry past the end of the file at open, as qemu does', async () => {
    const path = variant('bat-past-eof', (b) => (b.writeUInt32BE(0x00ffff00, 1536), b))
    await expect(VhdImage.open(path)).rejects.toThrow(/block 0 \(BAT entry 16776960\).*past the end of the file/)
  })

  it('refuses a block that overlaps the BAT (metadata read as data)', async () => {
    const path = variant('bat-overlap', (b) => (b.writeUInt32BE(3, 1536), b))
    await expect(VhdImage.open(path)).rejects.toThrow(/block 0 \(BAT entry 3\) at offset 1536 overlaps the BAT/)
  })

  it('refuses a truncated fixed VHD', async () => {
    const f = readFileSync(fixed)
    const path = variant('fixed-trunc', (b) => Buffer.concat([b.subarray(0, 4096), b.subarray(b.length - 512)]), f)
    await expect(VhdImage.open(path)).rejects.toThrow(/truncated/)
  })

  it('survives 300 seeded mutations of footer, header and BAT', async () => {
    const rnd = prngU32(1234)
    const hot = [0, 512, 1536, dynBytes.length - 512]
    // A hang is caught by the test time-out; no wall-clock assertion (machines are shared).
    for (let i = 0; i < 300; i++) {
      const b = Buffer.from(dynBytes)
      for (let k = 0, n = 1 + (rnd() % 4); k < n; k++) b[hot[rnd() % hot.length]! + (rnd() % 512)] = rnd() & 0xff
      if (rnd() % 3 === 0) for (const f of [0, b.length - 512]) fixChecksum(b, f, 512, 64)
      if (rnd() % 3 === 0) fixChecksum(b, 512, 1024, 36)
      const path = at('fuzz.vhd')
      writeFileSync(path, b)
      await expectReadOrVdsnapError((f) => VhdImage.open(f), path)
    }
  })
})
