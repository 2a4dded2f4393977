// Every container format and subformat end to end, through the CLI, on
// images qemu-img builds at test time: each is detected by content, backs up
// (to no new chunk when it holds the same guest bytes as a raw disk already
// backed up: dedup across containers), and restores to a raw file equal to
// `qemu-img convert -O raw` of the image. Restores into each format and the
// overlay change sources are in restore-formats.test.ts.
import {copyFileSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {makeDiskBytes} from '../disk/image-fixtures.js'
import {GRAIN, type GrainContent, writeSeSparseDisk, writeVmfsBase} from '../disk/sesparse-builder.js'
import {vdsnapJson} from '../helpers/cli.js'
import {makeExt4Image, sha256File} from '../helpers/images.js'
import {formatWorkspace, initRepo, MiB} from './format-fixtures.js'

/** The main disk: an ext4 file system with some files, lots of zero blocks. */
const DISK = 16 * MiB + 64 * 1024
/** A whole number of sectors that no CHS geometry matches (6149 sectors). */
const ODD = 3 * MiB + 5 * 512
/** Not a whole number of sectors: image formats round it up to one. */
const ODD_TAIL = 3 * MiB + 1000

const ws = formatWorkspace('vdsnap-formats-')
const {at, env, qemuImg, qemuIo, qemuRaw, convert, restoreRaw} = ws
interface Source {
  name: string
  /** The format vdsnap must detect. */
  format: string
  /** Images in the chain, this one included. */
  layers?: number
  /** Holds exactly the guest bytes of this raw disk (already backed up): no new chunk. */
  sameAs?: 'disk' | 'odd'
  backupArgs?: string[]
  /** Builds the image (the extension says nothing: detection is by content); returns its path. */
  make(file: string): string
  /** qemu's raw view, when it is not `qemu-img convert` of the image's active layer. */
  expected?(img: string, out: string): string
}

const SOURCES: Source[] = [
  {name: 'qcow2', format: 'qcow2', sameAs: 'disk', make: convert('qcow2')},
  {name: 'qcow2-v2', format: 'qcow2', sameAs: 'disk', make: convert('qcow2', ['-o', 'compat=0.10'])},
  {name: 'qcow2-512', format: 'qcow2', sameAs: 'disk', make: convert('qcow2', ['-o', 'cluster_size=512'])},
  {name: 'qcow2-2M', format: 'qcow2', sameAs: 'disk', make: convert('qcow2', ['-o', 'cluster_size=2M'])},
  {name: 'qcow2-extended-l2', format: 'qcow2', sameAs: 'disk', make: convert('qcow2', ['-o', 'extended_l2=on,cluster_size=128K'])},
  {name: 'qcow2-zlib', format: 'qcow2', sameAs: 'disk', make: convert('qcow2', ['-c', '-o', 'compression_type=zlib'])},
  {name: 'qcow2-zstd', format: 'qcow2', sameAs: 'disk', make: convert('qcow2', ['-c', '-o', 'compression_type=zstd'])},
  {name: 'qcow2-data-file', format: 'qcow2', sameAs: 'disk', make: convert('qcow2', ['-o', 'data_file=qcow2-data-file.data'])},
  {
    // top.img → (absolute path, set by rebase) chain/mid.qcow2 → (relative) chain/base.raw
    name: 'qcow2-chain',
    format: 'qcow2',
    layers: 3,
    make: (file) => {
      mkdirSync(at('chain'))
      copyFileSync(at('disk.raw'), at('chain/base.raw'))
      qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', 'chain/mid.qcow2')
      qemuIo(at('chain/mid.qcow2'), 'qcow2', 'write -P 0x21 1M 256k', 'write -P 0x22 7M 4k')
      qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', '-b', 'chain/mid.qcow2', '-F', 'qcow2', file)
      qemuImg('rebase', '-u', '-b', at('chain/mid.qcow2'), '-F', 'qcow2', file)
      qemuIo(at(file), 'qcow2', 'write -P 0x43 5M 64k', 'write -z 1M 64k')
      return at(file)
    },
  },
  {
    name: 'qcow2-snapshot',
    format: 'qcow2',
    sameAs: 'disk',
    backupArgs: ['--image-snapshot', 'before'],
    make: (file) => {
      convert('qcow2')(file)
      qemuImg('snapshot', '-c', 'before', file)
      qemuIo(at(file), 'qcow2', 'write -P 0x77 0 1M') // the active layer differs; the snapshot is the disk
      return at(file)
    },
    expected: (img, out) => qemuRaw(img, 'qcow2', out, 'before'),
  },
  {name: 'vmdk-sparse', format: 'vmdk', sameAs: 'disk', make: convert('vmdk', ['-o', 'subformat=monolithicSparse'])},
  {name: 'vmdk-stream', format: 'vmdk', sameAs: 'disk', make: convert('vmdk', ['-o', 'subformat=streamOptimized'])},
  {name: 'vmdk-flat', format: 'vmdk', sameAs: 'disk', make: convert('vmdk', ['-o', 'subformat=monolithicFlat'])},
  {name: 'vmdk-split-sparse', format: 'vmdk', sameAs: 'disk', make: convert('vmdk', ['-o', 'subformat=twoGbMaxExtentSparse'])},
  {name: 'vmdk-split-flat', format: 'vmdk', sameAs: 'disk', make: convert('vmdk', ['-o', 'subformat=twoGbMaxExtentFlat'])},
  {name: 'vhd', format: 'vhd', sameAs: 'disk', make: convert('vhd', ['-o', 'subformat=dynamic,force_size=on'])},
  {name: 'vhd-fixed', format: 'vhd', sameAs: 'disk', make: convert('vhd', ['-o', 'subformat=fixed,force_size=on'])},
  {name: 'vhdx', format: 'vhdx', sameAs: 'disk', make: convert('vhdx')},
  {name: 'vhdx-fixed', format: 'vhdx', sameAs: 'disk', make: convert('vhdx', ['-o', 'subformat=fixed'])},
  {name: 'vhdx-1M', format: 'vhdx', sameAs: 'disk', make: convert('vhdx', ['-o', 'block_size=1M'])},
  {name: 'vdi', format: 'vdi', sameAs: 'disk', make: convert('vdi')},
  {name: 'vdi-static', format: 'vdi', sameAs: 'disk', make: convert('vdi', ['-o', 'static=on'])},
  {
    // an ESXi snapshot: a seSparse delta (hand-built, qemu cannot write it) over a vmfs base
    name: 'vmdk-sesparse',
    format: 'vmdk',
    layers: 2,
    make: (file) => {
      writeVmfsBase(at('esx-base.vmdk'), readFileSync(at('disk.raw')))
      const cid = /CID=([0-9a-f]+)/.exec(readFileSync(at('esx-base.vmdk'), 'latin1'))![1]
      const grains = new Map<number, GrainContent>([[10, Buffer.alloc(GRAIN, 0x61)], [11, 'zero'], [2050, Buffer.alloc(GRAIN, 0x62)]])
      writeSeSparseDisk(at(file), {size: DISK, grains, grainBase: 4000}, 'esx-base.vmdk', cid)
      return at(file)
    },
  },
  {name: 'odd-qcow2', format: 'qcow2', sameAs: 'odd', make: convert('qcow2', [], 'odd.raw')},
  {name: 'odd-vdi', format: 'vdi', sameAs: 'odd', make: convert('vdi', [], 'odd.raw')},
  {name: 'odd-vmdk', format: 'vmdk', sameAs: 'odd', make: convert('vmdk', [], 'odd.raw')},
  {name: 'odd-vhdx', format: 'vhdx', sameAs: 'odd', make: convert('vhdx', [], 'odd.raw')},
  {name: 'odd-vhd', format: 'vhd', sameAs: 'odd', make: convert('vhd', ['-o', 'force_size=on'], 'odd.raw')},
  // qemu rounds these sizes up (to a CHS geometry, to a sector): we must read the same size qemu does
  {name: 'odd-vhd-chs', format: 'vhd', make: convert('vhd', [], 'odd.raw')},
  {name: 'odd-tail-qcow2', format: 'qcow2', make: convert('qcow2', [], 'odd-tail.raw')},
  {name: 'odd-tail-vdi', format: 'vdi', make: convert('vdi', [], 'odd-tail.raw')},
]

beforeAll(async () => {
  makeExt4Image(at('disk.raw'), DISK)
  writeFileSync(at('odd.raw'), makeDiskBytes(ODD, 5))
  writeFileSync(at('odd-tail.raw'), makeDiskBytes(ODD_TAIL, 6))
  await initRepo(ws)
  for (const disk of ['disk', 'odd']) await vdsnapJson(['backup', at(`${disk}.raw`), '--disk', disk], env)
})
afterAll(() => ws.cleanup())

describe('every format and subformat: backup, then restore raw equal to qemu-img convert', () => {
  it.each(SOURCES.map((s) => [s.name, s] as const))('%s', async (name, s) => {
    const img = s.make(`${name}.img`)
    const res = await vdsnapJson(['backup', img, '--disk', name, ...(s.backupArgs ?? [])], env)
    if (s.sameAs) expect(res.newChunks, 'dedup across containers').toBe(0)
    const expected = s.expected ? s.expected(img, at(`expected-${name}.raw`)) : qemuRaw(img, s.format, at(`expected-${name}.raw`))
    const out = await restoreRaw(res.snapshot, at(`restored-${name}.raw`))
    expect(sha256File(out)).toBe(sha256File(expected))
  })

  it('each was detected by content, with its whole chain, and has qemu\'s virtual size', async () => {
    const all: {disk: string; virtualSize: number; source: {format: string; layers: unknown[]}}[] = await vdsnapJson(['snapshots'], env)
    for (const s of SOURCES) {
      const snap = all.find((m) => m.disk === s.name)!
      expect(snap.source.format, s.name).toBe(s.format)
      expect(snap.source.layers, s.name).toHaveLength(s.layers ?? 1)
      expect(snap.virtualSize, s.name).toBe(readFileSync(at(`expected-${s.name}.raw`)).length)
    }
  })

  it('info --json: parents, internal snapshots, subformat, cluster size', async () => {
    const chain = await vdsnapJson(['info', at('qcow2-chain.img')])
    expect(chain).toMatchObject({format: 'qcow2', virtualSize: DISK, parents: [at('chain/mid.qcow2'), at('chain/base.raw')]})
    const snap = await vdsnapJson(['info', at('qcow2-snapshot.img')])
    expect(snap.snapshots.map((x: {name: string}) => x.name)).toEqual(['before'])
    expect(await vdsnapJson(['info', at('vmdk-split-flat.img')])).toMatchObject({format: 'vmdk', subformat: 'twoGbMaxExtentFlat', virtualSize: DISK})
    expect(await vdsnapJson(['info', at('vhdx-1M.img')])).toMatchObject({format: 'vhdx', subformat: 'dynamic', clusterSize: MiB})
    expect(await vdsnapJson(['info', at('vhd-fixed.img')])).toMatchObject({format: 'vhd', subformat: 'fixed', virtualSize: DISK})
    expect(await vdsnapJson(['info', at('vdi-static.img')])).toMatchObject({format: 'vdi', subformat: 'fixed', virtualSize: DISK, clusterSize: MiB})
    expect(await vdsnapJson(['info', at('vmdk-sesparse.img')])).toMatchObject({format: 'vmdk', subformat: 'seSparse', clusterSize: GRAIN, parents: [at('esx-base.vmdk')]})
  })
})
