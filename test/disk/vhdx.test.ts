// VHDX reader and writer against qemu-img. qemu builds fixed and dynamic
// images with several block and log sizes; 4096-byte logical sectors,
// differencing disks and dirty logs (which qemu cannot create) come from our
// writer's test options and from vhdx-test-builder.ts, and are checked
// against bytes computed here and, for logs, against qemu's own replay.
import {copyFileSync, mkdirSync, readFileSync, renameSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {FORMATS} from '../../src/disk/formats.js'
import {openImage} from '../../src/disk/open.js'
import {VhdxImage} from '../../src/disk/vhdx-reader.js'
import {createVhdxWriter, type VhdxCreateOptions} from '../../src/disk/vhdx-writer.js'
import {GUID_BAT, GUID_METADATA, decodeBatEntry, parseRegionTable} from '../../src/disk/vhdx-structures.js'
import {crc32c} from '../../src/disk/crc32c.js'
import {qemuImg, qemuRaw, rangesCoverData, readWhole, sha256 as sha, tempDir, writeRaw} from './image-fixtures.js'
import {expectReadOrVdsnapError, expectSmallerChildClipped, mixedDisk, prngU32, qemuStatus, randomBytesSeeded, sameDisk, writeThrough} from './vhd-test-helpers.js'
import {applyWrites, dirtyLog, rewriteHeaders, type LogWrite} from './vhdx-test-builder.js'

const tmp = tempDir('vdsnap-vhdx-')
afterAll(() => tmp.cleanup())
const at = (name: string) => join(tmp.path, name)

const SIZE = 6 * 1024 * 1024 + 3 * 512 + 100
const base = mixedDisk(SIZE, 11)
writeRaw(at('base.raw'), base)

describe('VHDX reader on qemu-made images', () => {
  for (const opts of [
    'subformat=dynamic',
    'subformat=dynamic,block_size=1M',
    'subformat=dynamic,block_size=8M,log_size=2M',
    'subformat=dynamic,block_size=32M',
    'subformat=fixed,block_size=1M',
    'subformat=fixed',
  ]) {
    it(`reads ${opts} like qemu`, async () => {
      const path = at(`${opts.replace(/[=,]/g, '_')}.vhdx`)
      qemuImg('convert', '-f', 'raw', '-O', 'vhdx', '-o', opts, at('base.raw'), path)
      const img = await openImage(path)
      try {
        expect(img.format).toBe('vhdx')
        const q = qemuRaw(tmp.path, path, 'vhdx')
        expect(img.virtualSize).toBe(q.length)
        expect(JSON.parse(qemuImg('info', '--output=json', path))['virtual-size']).toBe(img.virtualSize)
        const mine = await readWhole(img)
        expect(sha(mine)).toBe(sha(q))
        expect(sameDisk(mine, base)).toBe(true)
        expect(rangesCoverData(mine, await img.allocatedRanges())).toBe(true)
        expect((await img.info()).subformat).toBe(opts.includes('fixed') ? 'fixed' : 'dynamic')
      } finally {
        await img.close()
      }
    })
  }
})

it('computes CRC-32C check values', () => {
  expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283)
  expect(crc32c(Buffer.alloc(32))).toBe(0x8a9136aa)
})

describe('VHDX writer', () => {
  for (const [name, opts] of [
    ['dynamic', {}],
    ['fixed', {subformat: 'fixed'}],
    ['dynamic 4096-byte sectors 8 MiB blocks', {logicalSectorSize: 4096, blockSize: 8 * 1024 * 1024}],
  ] as [string, VhdxCreateOptions][]) {
    it(`writes a ${name} VHDX that qemu-img compare accepts`, async () => {
      const out = at(`written-${name.replace(/ /g, '-')}.vhdx`)
      const w = opts.logicalSectorSize ? await createVhdxWriter(out, SIZE, opts) : await FORMATS.find((f) => f.name === 'vhdx')!.create!(out, SIZE, opts)
      await writeThrough(w, base)
      // qemu 7.2 cannot open 4096-byte logical sectors ("Operation not supported"): round trip only
      const qemuCan = !opts.logicalSectorSize
      if (qemuCan) {
        const chk = qemuStatus('check', '-f', 'vhdx', out)
        expect(chk.status, chk.out).toBe(0)
        const cmp = qemuStatus('compare', '-f', 'raw', '-F', 'vhdx', at('base.raw'), out)
        expect(cmp.status, cmp.out).toBe(0)
      }
      const img = await openImage(out)
      const mine = await readWhole(img)
      expect(sameDisk(mine, base)).toBe(true)
      if (qemuCan) expect(sha(mine)).toBe(sha(qemuRaw(tmp.path, out, 'vhdx')))
      expect((await img.info()).logicalSectorSize).toBe(opts.logicalSectorSize ?? 512)
      if (!opts.subformat) {
        const zeroMiB = [...Array(Math.floor(SIZE / 1048576)).keys()].filter((i) => base.subarray(i * 1048576, (i + 1) * 1048576).equals(Buffer.alloc(1048576)))
        for (const i of zeroMiB) if (!opts.blockSize) expect((await img.allocatedRanges()).some((r) => r.offset <= i * 1048576 && r.offset + r.length > i * 1048576)).toBe(false)
      }
      await img.close()
    })
  }

  it('abort() removes the partial file', async () => {
    const out = at('aborted.vhdx')
    const w = await createVhdxWriter(out, SIZE)
    await w.write(0, base.subarray(0, 65536))
    await w.abort()
    expect(() => readFileSync(out)).toThrow()
  })
})

describe('VHDX differencing', () => {
  for (const sectorSize of [512, 4096] as const) {
    it(`reads a child over its parent (${sectorSize}-byte sectors) and reports the overlay`, async () => {
      const parent = at(`dparent-${sectorSize}.vhdx`)
      const child = at(`dchild-${sectorSize}.vhdx`)
      await writeThrough(await createVhdxWriter(parent, SIZE, {logicalSectorSize: sectorSize}), base)
      const pimg = await VhdxImage.open(parent)
      const expected = Buffer.alloc(pimg.virtualSize)
      base.copy(expected)
      await pimg.close()
      const edits: [number, Buffer][] = [
        [sectorSize, randomBytesSeeded(sectorSize * 2, 1)],
        [1024 * 1024, randomBytesSeeded(1024 * 1024, 2)],
        [3 * 1024 * 1024 - sectorSize, Buffer.alloc(sectorSize * 3)],
      ]
      const w = await createVhdxWriter(child, expected.length, {parent, logicalSectorSize: sectorSize})
      for (const [off, d] of edits) {
        await w.write(off, d)
        d.copy(expected, off)
      }
      await w.close()
      const img = await openImage(child)
      expect(img.parent?.path).toBe(parent)
      expect(sha(await readWhole(img, [300 * 1024 + 512]))).toBe(sha(expected))
      expect(await img.overlayRanges!()).toEqual([
        {offset: sectorSize, length: sectorSize * 2},
        {offset: 1024 * 1024, length: 1024 * 1024},
        {offset: 3 * 1024 * 1024 - sectorSize, length: sectorSize * 3},
      ])
      expect(rangesCoverData(expected, await img.allocatedRanges())).toBe(true)
      expect((await img.info()).subformat).toBe('differencing')
      await img.close()
    })
  }

  it('resolves absolute and volume paths by file name, names a missing parent, refuses a wrong parent', async () => {
    const dir = at('vmoved')
    mkdirSync(dir)
    const parent = join(dir, 'p.vhdx')
    qemuImg('convert', '-f', 'raw', '-O', 'vhdx', '-o', 'block_size=1M', at('base.raw'), parent)
    const child = join(dir, 'c.vhdx')
    const w = await createVhdxWriter(child, SIZE, {parent, parentPaths: {volume: '\\\\?\\Volume{26a21bda-a627-11d7-9931-806e6f6e6963}\\vms\\p.vhdx', absolute: 'D:\\vms\\p.vhdx'}})
    await w.write(0, Buffer.alloc(4096, 9))
    await w.close()
    const img = await VhdxImage.open(child)
    const buf = Buffer.alloc(8192)
    await img.read(buf, 0)
    expect(buf.subarray(0, 4096).equals(Buffer.alloc(4096, 9))).toBe(true)
    expect(buf.subarray(4096).equals(base.subarray(4096, 8192))).toBe(true)
    await img.close()
    qemuImg('convert', '-f', 'raw', '-O', 'vhdx', at('base.raw'), join(dir, 'other.vhdx'))
    renameSync(parent, join(dir, 'gone.vhdx'))
    await expect(VhdxImage.open(child)).rejects.toThrow(/parent image .*p\.vhdx not found/)
    copyFileSync(join(dir, 'other.vhdx'), parent)
    await expect(VhdxImage.open(child)).rejects.toThrow(/parent_linkage/)
  })

  it('refuses a parent loop', async () => {
    const p = at('loop-p.vhdx')
    const c = at('loop-c.vhdx')
    qemuImg('convert', '-f', 'raw', '-O', 'vhdx', '-o', 'block_size=1M', at('base.raw'), p)
    await (await createVhdxWriter(c, SIZE, {parent: p})).close()
    await (await createVhdxWriter(at('loop-p2.vhdx'), SIZE, {parent: c})).close()
    renameSync(at('loop-p2.vhdx'), p)
    await expect(VhdxImage.open(c)).rejects.toThrow(/loop/)
  })

  it('a child smaller than its parent lists no allocated range past its own end', async () => {
    await expectSmallerChildClipped(createVhdxWriter, at('big-parent.vhdx'), at('small-child.vhdx'))
  })
})

/** Region offsets and BAT entries of a VHDX held in memory. */
function regions(file: Buffer) {
  const t = parseRegionTable(file.subarray(196608, 196608 + 65536), 'test')!
  const bat = t.find((r) => r.guid === GUID_BAT)!
  const meta = t.find((r) => r.guid === GUID_METADATA)!
  return {bat, meta, entry: (i: number) => decodeBatEntry(file, bat.offset + i * 8)}
}

describe('VHDX log replay (in memory)', () => {
  it('replays a two-entry dirty log exactly as qemu does, without touching the file', async () => {
    const clean = at('log-clean.vhdx')
    qemuImg('convert', '-f', 'raw', '-O', 'vhdx', '-o', 'block_size=1M', at('base.raw'), clean)
    const file = readFileSync(clean)
    const r = regions(file)
    const allocated = [...Array(6).keys()].filter((i) => r.entry(i) % 8 === 6)
    expect(allocated.length).toBeGreaterThanOrEqual(3)
    const blockOff = (i: number) => Math.floor(r.entry(i) / 8) * 1048576
    const batPage = Buffer.from(file.subarray(r.bat.offset, r.bat.offset + 4096))
    batPage.writeUInt32LE(2, allocated[1]! * 8) // block -> PAYLOAD_BLOCK_ZERO
    batPage.writeUInt32LE(0, allocated[1]! * 8 + 4)
    const entries: LogWrite[][] = [
      [
        {fileOffset: blockOff(allocated[0]!) + 8192, data: Buffer.alloc(4096, 0x41)},
        {fileOffset: r.bat.offset, data: batPage},
      ],
      [
        {fileOffset: blockOff(allocated[0]!) + 8192, data: randomBytesSeeded(4096, 99)},
        {fileOffset: blockOff(allocated[2]!) + 4096, zeroLength: 8192},
      ],
    ]
    const dirty = Buffer.from(file)
    dirtyLog(dirty, entries)
    writeFileSync(at('log-dirty.vhdx'), dirty)
    writeFileSync(at('log-expected.vhdx'), applyWrites(file, entries))
    expect(qemuStatus('info', at('log-dirty.vhdx')).out).toMatch(/replay|log/i)
    const img = await VhdxImage.open(at('log-dirty.vhdx'))
    const mine = await readWhole(img)
    await img.close()
    expect(sha(mine)).toBe(sha(qemuRaw(tmp.path, at('log-expected.vhdx'), 'vhdx')))
    expect(sha(mine)).not.toBe(sha(qemuRaw(tmp.path, clean, 'vhdx')))
    expect(readFileSync(at('log-dirty.vhdx')).equals(dirty)).toBe(true)
    copyFileSync(at('log-dirty.vhdx'), at('log-qemu.vhdx'))
    const chk = qemuStatus('check', '-r', 'all', '-f', 'vhdx', at('log-qemu.vhdx'))
    expect(chk.status, chk.out).toBe(0)
    expect(sha(qemuRaw(tmp.path, at('log-qemu.vhdx'), 'vhdx'))).toBe(sha(mine))
  })

  it('ignores a log whose entries do not match the header (nothing to replay)', async () => {
    const clean = readFileSync(at('log-clean.vhdx'))
    const f = Buffer.from(clean)
    dirtyLog(f, [[{fileOffset: 2 * 1048576, zeroLength: 4096}]])
    f[1048576 + 100] ^= 0xff // breaks the entry's CRC-32C
    writeFileSync(at('log-broken.vhdx'), f)
    const img = await VhdxImage.open(at('log-broken.vhdx'))
    expect(sha(await readWhole(img))).toBe(sha(qemuRaw(tmp.path, at('log-clean.vhdx'), 'vhdx')))
    await img.close()
  })
})

describe('VHDX corrupt input', () => {
  const src = at('corrupt-src.vhdx')
  qemuImg('convert', '-f', 'raw', '-O', 'vhdx', '-o', 'block_size=1M', at('base.raw'), src)
  const good = readFileSync(src)
  const r = regions(good)
  const metaItem = (guidPrefix: string) => {
    for (let i = 0; i < good.readUInt16LE(r.meta.offset + 10); i++) {
      const o = r.meta.offset + 32 + i * 32
      if (good.readUInt32LE(o).toString(16).padStart(8, '0') === guidPrefix) return r.meta.offset + good.readUInt32LE(o + 16)
    }
    throw new Error('no item')
  }
  const variant = (name: string, mutate: (b: Buffer) => Buffer | void) => {
    const b = Buffer.from(good)
    const out = mutate(b) ?? b
    const path = at(`bad-${name}.vhdx`)
    writeFileSync(path, out)
    return path
  }

  it.each([
    ['truncated file', (b: Buffer) => b.subarray(0, 200000), /too small for a VHDX/],
    ['wrong identifier', (b: Buffer) => void b.write('vhdxfilX', 0, 'latin1'), /identifier/],
    ['bad header checksums', (b: Buffer) => void ((b[65536 + 200]! ^= 1), (b[131072 + 200]! ^= 1)), /both VHDX headers are corrupt/],
    ['bad region tables', (b: Buffer) => void ((b[196608 + 20]! ^= 1), (b[262144 + 20]! ^= 1)), /both VHDX region tables/],
    ['absurd virtual size', (b: Buffer) => void b.writeBigUInt64LE(2n ** 60n, metaItem('2fa54224')), /absurdly large/],
    ['virtual size too big for the BAT', (b: Buffer) => void b.writeBigUInt64LE(2n ** 40n, metaItem('2fa54224')), /BAT region holds/],
    ['bad block size', (b: Buffer) => void b.writeUInt32LE(3 * 1048576, metaItem('caa16737')), /block size/],
    ['bad sector size', (b: Buffer) => void b.writeUInt32LE(1024, metaItem('8141bf1d')), /logical sector size/],
    ['log outside the file', (b: Buffer) => rewriteHeaders(b, (h) => ({...h, logGuid: '11111111-2222-3333-4444-555555555555', logOffset: 2 ** 40})), /past the end of the file/],
  ])('refuses %s', async (_n, mutate, message) => {
    const path = variant(String(_n).replace(/ /g, '-'), mutate as (b: Buffer) => Buffer | void)
    await expect(VhdxImage.open(path)).rejects.toThrow(message as RegExp)
  })

  it('refuses a BAT entry past the end of the file when reading, mapping or describing', async () => {
    const first = [...Array(6).keys()].find((i) => r.entry(i) % 8 === 6)!
    const path = variant('bat-past-eof', (b) => void b.writeUInt32LE((6 | (4000 << 20)) >>> 0, r.bat.offset + first * 8))
    const img = await VhdxImage.open(path)
    await expect(readWhole(img)).rejects.toThrow(/past the end of the file/)
    await expect(img.allocatedRanges()).rejects.toThrow(/block \d+.*past the end of the file/)
    await expect(img.info()).rejects.toThrow(/past the end of the file/)
    await img.close()
  })

  it('survives 300 seeded mutations of headers, region table, metadata and BAT', async () => {
    const small = at('fuzz-src.vhdx')
    writeRaw(at('fuzz.raw'), base.subarray(0, 1536 * 1024))
    qemuImg('convert', '-f', 'raw', '-O', 'vhdx', '-o', 'block_size=1M', at('fuzz.raw'), small)
    const src = readFileSync(small)
    const rs = regions(src)
    const hot: [number, number][] = [[0, 16], [65536, 96], [131072, 96], [196608, 112], [rs.meta.offset, 256], [rs.meta.offset + 65536, 64], [rs.bat.offset, 64], [1048576, 256]]
    const rnd = prngU32(4321)
    // A hang is caught by the test time-out; no wall-clock assertion (machines are shared).
    for (let i = 0; i < 300; i++) {
      const b = Buffer.from(src)
      for (let k = 0, n = 1 + (rnd() % 4); k < n; k++) {
        const [o, len] = hot[rnd() % hot.length]!
        b[o + (rnd() % len)] = rnd() & 0xff
      }
      if (rnd() % 2 === 0) rewriteHeaders(b, (h) => h)
      const path = at('fuzz.vhdx')
      writeFileSync(path, b)
      await expectReadOrVdsnapError((f) => VhdxImage.open(f), path)
    }
  })
})
