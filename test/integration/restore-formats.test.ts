// Restores into image formats and overlays as change sources, through the
// CLI:
//  1. restore --format/--subformat writes images of exactly the snapshot's
//     size that qemu-img checks and compares equal to the raw restore (no
//     warning), with zero blocks left unallocated in sparse outputs, and that
//     back up again as the same disk (an incremental, nothing changed);
//  2. an overlay on a backed-up base (qcow2, VMDK delta, ESXi seSparse (one or two levels)
//     snapshot, VHD, VHDX and VDI differencing) is its own change source: the incremental reads exactly
//     the overlay's blocks, restores equal to the chain, and equals a full
//     read through the parent.
import {readFileSync, writeFileSync} from 'node:fs'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {openImage} from '../../src/disk/open.js'
import {createVhdWriter} from '../../src/disk/vhd-writer.js'
import {createVhdxWriter} from '../../src/disk/vhdx-writer.js'
import {VdiWriter} from '../../src/disk/vdi-writer.js'
import {makeDiskBytes} from '../disk/image-fixtures.js'
import {applyGrains, GRAIN, type GrainContent, writeSeSparseDisk, writeVmfsBase} from '../disk/sesparse-builder.js'
import {vdsnap, vdsnapJson} from '../helpers/cli.js'
import {makeExt4Image, sha256File} from '../helpers/images.js'
import {BLOCK, formatWorkspace, initRepo, MiB, qemuStatus, qfmt} from './format-fixtures.js'

/** An ext4 file system with some files: lots of zero blocks. */
const DISK = 16 * MiB + 64 * 1024
/** A whole number of sectors that no CHS geometry matches (6149 sectors). */
const ODD = 3 * MiB + 5 * 512
/** Not a whole number of sectors. */
const ODD_TAIL = 3 * MiB + 1000
/** The overlays' base: random data in most blocks, so a full read costs far more than the overlay. */
const DENSE = 12 * MiB
/** The largest allocation unit of the sparse outputs (a VHD block). */
const ZERO_REGION = 2 * MiB

const ws = formatWorkspace('vdsnap-restore-formats-')
const {at, env, qemuImg, qemuIo, qemuRaw, convert, restoreRaw} = ws
/** Snapshot ids by disk name. */
const snaps = new Map<string, string>()

beforeAll(async () => {
  makeExt4Image(at('disk.raw'), DISK)
  writeFileSync(at('odd.raw'), makeDiskBytes(ODD, 5))
  writeFileSync(at('odd-tail.raw'), makeDiskBytes(ODD_TAIL, 6))
  writeFileSync(at('dense.raw'), makeDiskBytes(DENSE, 9))
  await initRepo(ws)
  for (const disk of ['disk', 'odd', 'odd-tail']) snaps.set(disk, (await vdsnapJson(['backup', at(`${disk}.raw`), '--disk', disk], env)).snapshot)
})
afterAll(() => ws.cleanup())

/** The first all-zero, aligned region of `size` bytes in a raw file. */
function zeroRegion(raw: string, size: number): number {
  const data = readFileSync(raw)
  const zero = Buffer.alloc(size)
  for (let at = 0; at + size <= data.length; at += size) if (data.subarray(at, at + size).equals(zero)) return at
  throw new Error(`${raw} has no zero region of ${size} bytes`)
}

/** Whether an image allocates anything in [start, end): qemu-img map, or our reader for VHDX (qemu's vhdx driver maps everything as data). */
async function allocatesIn(out: string, format: string, start: number, end: number): Promise<boolean> {
  if (format === 'vhdx') {
    const img = await openImage(out)
    const ranges = await img.allocatedRanges()
    await img.close()
    return ranges.some((r) => r.offset < end && r.offset + r.length > start)
  }
  const map: {start: number; length: number; data: boolean}[] = JSON.parse(qemuImg('map', '-f', qfmt(format), '--output=json', out))
  const overlapping = map.filter((m) => m.start < end && m.start + m.length > start)
  expect(overlapping.length).toBeGreaterThan(0)
  return overlapping.some((m) => m.data)
}

describe('restore --format and --subformat', () => {
  const OUTPUTS: [string, string, string | undefined][] = [
    ['qcow2', 'qcow2', undefined],
    ['vmdk', 'vmdk', undefined],
    ['vmdk streamOptimized', 'vmdk', 'streamOptimized'],
    ['vhd', 'vhd', undefined],
    ['vhd fixed', 'vhd', 'fixed'],
    ['vhdx', 'vhdx', undefined],
    ['vhdx fixed', 'vhdx', 'fixed'],
    ['vdi', 'vdi', undefined],
    ['vdi fixed', 'vdi', 'fixed'],
  ]
  let rawRestore: string
  let zero: number
  beforeAll(async () => {
    rawRestore = await restoreRaw(snaps.get('disk')!, at('disk-restored.raw'))
    zero = zeroRegion(rawRestore, ZERO_REGION)
  })

  it.each(OUTPUTS)('%s: exact size, qemu-img check and compare clean, zero blocks unallocated, backs up as the same disk', async (name, format, sub) => {
    const out = at(`out-${name.replace(/\W+/g, '-')}`)
    const r = await vdsnap(['restore', snaps.get('disk')!, '--to', out, '--format', format, ...(sub ? ['--subformat', sub] : [])], env)
    expect(r.code, r.stderr).toBe(0)
    const q = qfmt(format)
    const info = JSON.parse(qemuImg('info', '-f', q, '--output=json', out))
    expect(info['virtual-size']).toBe(DISK)
    if (format === 'vmdk') expect(info['format-specific'].data['create-type']).toBe(sub ?? 'monolithicSparse')
    if (q !== 'vpc') {
      // qemu-img check has no checks for vpc (it exits 63); every other format must be clean
      const check = qemuStatus('check', '-f', q, out)
      expect(check.status, check.out).toBe(0)
    }
    const cmp = qemuStatus('compare', '-f', 'raw', '-F', q, rawRestore, out)
    expect(cmp.status, cmp.out).toBe(0)
    expect(cmp.out).not.toMatch(/warning/i)
    if (sub !== 'fixed') expect(await allocatesIn(out, format, zero, zero + ZERO_REGION), `zero region at ${zero}`).toBe(false)
    // the restored image is the same disk (moved to another file and format): an incremental with nothing changed, not a new full
    const again = await vdsnapJson(['backup', out, '--disk', 'disk', '--allow-source-change'], env)
    expect(again).toMatchObject({changedBlocks: 0, newChunks: 0, indexKind: 'delta'})
    expect(again.parent).not.toBeNull()
  })

  it.each(['dynamic', 'fixed'])('a disk with no CHS geometry restores to a %s VHD of exactly its size', async (sub) => {
    const out = at(`odd-${sub}.vhd`)
    const r = await vdsnap(['restore', snaps.get('odd')!, '--to', out, '--format', 'vhd', '--subformat', sub], env)
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(qemuImg('info', '-f', 'vpc', '--output=json', out))['virtual-size']).toBe(ODD)
    const cmp = qemuStatus('compare', '-f', 'raw', '-F', 'vpc', at('odd.raw'), out)
    expect(cmp.status, cmp.out).toBe(0)
    expect(cmp.out).not.toMatch(/warning/i)
    const again = await vdsnapJson(['backup', out, '--disk', 'odd', '--allow-source-change'], env)
    expect(again).toMatchObject({changedBlocks: 0, newChunks: 0, indexKind: 'delta'})
  })

  it('a size that is not a whole number of sectors is rounded up to one in a VHD, the tail reading as zeros', async () => {
    const out = at('odd-tail.vhd')
    expect((await vdsnap(['restore', snaps.get('odd-tail')!, '--to', out, '--format', 'vhd'], env)).code).toBe(0)
    const rounded = Math.ceil(ODD_TAIL / 512) * 512
    expect(JSON.parse(qemuImg('info', '-f', 'vpc', '--output=json', out))['virtual-size']).toBe(rounded)
    const back = readFileSync(qemuRaw(out, 'vhd', at('odd-tail-back.raw')))
    expect(back.equals(Buffer.concat([readFileSync(at('odd-tail.raw')), Buffer.alloc(rounded - ODD_TAIL)]))).toBe(true)
  })
})

describe('an overlay on a backed-up base is its own change source', () => {
  // Each edit lies in one block: 0 (zeroed), 6 and 18 (patterns).
  const EDITS: [number, number, number][] = [
    [0, 64 * 1024, 0],
    [3 * MiB, 192 * 1024, 0x5a],
    [9 * MiB + 4096, 4096, 0xa5],
  ]
  const TOUCHED = 3

  /** qemu-io writes into a qcow2 or VMDK overlay; qemu reads the chain for the expected bytes. */
  const qemuOverlay = (format: string) => async (base: string, top: string, expected: string) => {
    qemuImg('create', '-q', '-f', format, '-b', base, '-F', format, top)
    qemuIo(at(top), format, ...EDITS.map(([o, n, p]) => (p === 0 ? `write -z ${o} ${n}` : `write -P ${p} ${o} ${n}`)))
    qemuRaw(at(top), format, expected)
  }
  /**
   * Our own writers make VHD/VHDX differencing disks (qemu can neither make
   * nor read them) and differencing VDIs (VDI has no sector bitmap, so each
   * touched 1 MiB block is the overlay's).
   */
  const OVERLAY_WRITERS = {vhd: createVhdWriter, vhdx: createVhdxWriter, vdi: (path: string, size: number, o: {parent: string}) => VdiWriter.create(path, size, o)}
  const writerOverlay = (format: keyof typeof OVERLAY_WRITERS) => async (base: string, top: string, expected: string) => {
    const bytes = readFileSync(qemuRaw(at(base), format, expected))
    const w = await OVERLAY_WRITERS[format](at(top), bytes.length, {parent: at(base)})
    for (const [o, n, p] of EDITS) {
      const data = Buffer.alloc(n, p)
      await w.write(o, data)
      data.copy(bytes, o)
    }
    await w.close()
    writeFileSync(expected, bytes)
  }
  /** An ESXi snapshot: a hand-built seSparse delta over the vmfs base (grain-sized edits; zeros become zero grains). */
  const seSparseOverlay = async (base: string, top: string, expected: string) => {
    const bytes = readFileSync(at('dense.raw'))
    const grains = new Map<number, GrainContent>()
    for (const [o, n, p] of EDITS) for (let g = o / GRAIN; g < (o + n) / GRAIN; g++) grains.set(g, p === 0 ? 'zero' : Buffer.alloc(GRAIN, p))
    writeSeSparseDisk(at(top), {size: bytes.length, grains, grainBase: 4090}, base)
    writeFileSync(expected, applyGrains(bytes, {size: bytes.length, grains}))
  }
  const vmfsBase = (file: string) => writeVmfsBase(at(file), readFileSync(at('dense.raw')))
  /** name, format, how to make the base, how to make the top, repository blocks the incremental reads */
  const OVERLAYS: [string, string, (base: string) => void, (base: string, top: string, expected: string) => Promise<void>, number][] = [
    ['qcow2', 'qcow2', convert('qcow2', [], 'dense.raw'), qemuOverlay('qcow2'), TOUCHED],
    ['vmdk delta', 'vmdk', convert('vmdk', [], 'dense.raw'), qemuOverlay('vmdk'), TOUCHED],
    ['vmdk seSparse', 'vmdk', vmfsBase, seSparseOverlay, TOUCHED],
    ['vhd differencing', 'vhd', convert('vhd', ['-o', 'force_size=on'], 'dense.raw'), writerOverlay('vhd'), TOUCHED],
    ['vhdx differencing', 'vhdx', convert('vhdx', [], 'dense.raw'), writerOverlay('vhdx'), TOUCHED],
    // the three touched 1 MiB VDI blocks hold six 512 KiB repository blocks
    ['vdi differencing', 'vdi', convert('vdi', [], 'dense.raw'), writerOverlay('vdi'), 2 * TOUCHED],
  ]

  it.each(OVERLAYS)('%s: the incremental reads only the overlay\'s blocks and restores equal', async (name, format, makeBase, makeTop, readBlocks) => {
    const tag = name.replace(/\W+/g, '-')
    const disk = `ov-${tag}`
    const base = `ov-${tag}-base.${format}`
    const top = `ov-${tag}-top.${format}`
    makeBase(base)
    const full = await vdsnapJson(['backup', at(base), '--disk', disk], env)
    const expected = at(`ov-${tag}-expected.raw`)
    await makeTop(base, top, expected)
    const res = await vdsnapJson(['backup', at(top), '--disk', disk], env)
    expect(res.changeSource).toBe('overlay')
    expect(res.parent).toBe(full.snapshot)
    expect(res.changedBlocks).toBe(TOUCHED)
    // exactly the overlay's blocks were read (the sample check's reads are not counted),
    // where the full backup of the base read nearly every block of the disk
    expect(res.bytesRead).toBe(readBlocks * BLOCK)
    expect(full.bytesRead).toBeGreaterThanOrEqual(DENSE / 2)
    const out = await restoreRaw(res.snapshot, at(`ov-${tag}-restored.raw`))
    expect(sha256File(out)).toBe(sha256File(expected))
    // a full read through the parent gives the same disk
    const again = await vdsnapJson(['backup', at(top), '--disk', disk, '--full'], env)
    expect(again.changeSource).toBeNull()
    expect(again.bytesRead).toBeGreaterThanOrEqual(DENSE / 2)
    expect((await vdsnapJson(['diff', res.snapshot, again.snapshot], env)).changedBlocks).toBe(0)
  })

  it('two ESXi snapshots (a seSparse delta over a seSparse delta): the second incremental reads only the top delta\'s blocks', async () => {
    vmfsBase('two-base.vmdk')
    const full = await vdsnapJson(['backup', at('two-base.vmdk'), '--disk', 'two-se'], env)
    await seSparseOverlay('two-base.vmdk', 'two-000001.vmdk', at('two-1.raw'))
    const first = await vdsnapJson(['backup', at('two-000001.vmdk'), '--disk', 'two-se'], env)
    expect(first).toMatchObject({changeSource: 'overlay', parent: full.snapshot, changedBlocks: TOUCHED})
    // the second snapshot rewrites a grain of block 6 and writes block 20: two blocks, one of them new
    const bytes = readFileSync(at('two-1.raw'))
    const grains = new Map<number, GrainContent>([[(3 * MiB) / GRAIN, Buffer.alloc(GRAIN, 0x3c)], [(10 * MiB) / GRAIN + 1, Buffer.alloc(GRAIN, 0xc3)]])
    writeSeSparseDisk(at('two-000002.vmdk'), {size: bytes.length, grains, grainBase: 17}, 'two-000001.vmdk', '2a3b4c5d', '5e6f7081')
    const expected = at('two-2.raw')
    writeFileSync(expected, applyGrains(bytes, {size: bytes.length, grains}))
    expect(sha256File(qemuRaw(at('two-000002.vmdk'), 'vmdk', at('two-2-qemu.raw')))).toBe(sha256File(expected))
    const second = await vdsnapJson(['backup', at('two-000002.vmdk'), '--disk', 'two-se'], env)
    expect(second).toMatchObject({changeSource: 'overlay', parent: first.snapshot, changedBlocks: 2})
    expect(second.bytesRead).toBe(2 * BLOCK)
    expect(sha256File(await restoreRaw(second.snapshot, at('two-2-restored.raw')))).toBe(sha256File(expected))
  })
})
