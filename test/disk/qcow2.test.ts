// The native qcow2 reader against qemu-img's own view of images qemu-img
// built: every byte equal, allocated ranges covering all data, overlay
// ranges exactly what was written into an overlay.
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {openImage} from '../../src/disk/open.js'
import {checkImage, MiB, makeDiskBytes, qemuImg, qemuImgAt, qemuIo, qemuRaw, readWhole, sha256, tempDir, writeRaw} from './image-fixtures.js'

const SIZE = 5 * MiB + 7 * 512
let dir: string
let cleanup: () => void
let raw: string
let rawData: Buffer

beforeAll(() => {
  ;({path: dir, cleanup} = tempDir('vdsnap-qcow2-'))
  raw = join(dir, 'disk.raw')
  rawData = makeDiskBytes(SIZE)
  writeRaw(raw, rawData)
})
afterAll(() => cleanup())

describe('qcow2 reader matrix', () => {
  const cases: [string, string[]][] = [
    ['v2 64K', ['-o', 'compat=0.10']],
    ['v3 512', ['-o', 'compat=1.1,cluster_size=512']],
    ['v3 4K', ['-o', 'compat=1.1,cluster_size=4096']],
    ['v3 64K', ['-o', 'compat=1.1']],
    ['v3 2M', ['-o', 'compat=1.1,cluster_size=2M']],
    ['v2 compressed', ['-c', '-o', 'compat=0.10']],
    ['zlib compressed', ['-c', '-o', 'compression_type=zlib']],
    ['zstd compressed', ['-c', '-o', 'compression_type=zstd']],
    ['zstd compressed 4K', ['-c', '-o', 'compression_type=zstd,cluster_size=4096']],
    ['extended L2', ['-o', 'extended_l2=on']],
    ['extended L2 compressed', ['-c', '-o', 'extended_l2=on,cluster_size=128K']],
  ]
  for (const [name, opts] of cases) {
    it(name, async () => {
      const out = join(dir, `${name.replace(/\W+/g, '-')}.qcow2`)
      qemuImg('convert', '-f', 'raw', '-O', 'qcow2', ...opts, raw, out)
      expect(sha256(qemuRaw(dir, out))).toBe(sha256(rawData))
      await checkImage(out, rawData, 'qcow2')
    })
  }

  it('zero clusters and subcluster writes', async () => {
    const out = join(dir, 'zeroes.qcow2')
    qemuImg('convert', '-f', 'raw', '-O', 'qcow2', '-o', 'extended_l2=on', raw, out)
    qemuIo(out, 'qcow2', 'write -z 64k 128k')
    qemuIo(out, 'qcow2', 'write -P 0x11 300k 4k')
    const plain = join(dir, 'zeroes-v3.qcow2')
    qemuImg('convert', '-f', 'raw', '-O', 'qcow2', raw, plain)
    qemuIo(plain, 'qcow2', 'write -z 0 1M')
    for (const f of [out, plain]) await checkImage(f, qemuRaw(dir, f), 'qcow2')
  })

  it('external data file, plain and raw', async () => {
    for (const rawOpt of ['off', 'on']) {
      const out = join(dir, `ext-${rawOpt}.qcow2`)
      qemuImgAt(dir, 'convert', '-f', 'raw', '-O', 'qcow2', '-o', `data_file=ext-${rawOpt}.data,data_file_raw=${rawOpt}`, raw, out)
      await checkImage(out, rawData, 'qcow2')
      const img = await openImage(out)
      expect((await img.info()).subformat).toContain('external data file')
      await img.close()
    }
  })
})

describe('qcow2 backing chains and snapshots', () => {
  it('reads a 3-deep chain with relative names and reports overlay ranges', async () => {
    qemuImg('create', '-f', 'raw', join(dir, 'chain-base.raw'), String(SIZE))
    writeRaw(join(dir, 'chain-base.raw'), rawData)
    qemuImg('create', '-f', 'qcow2', '-b', 'chain-base.raw', '-F', 'raw', join(dir, 'chain-mid.qcow2'))
    qemuIo(join(dir, 'chain-mid.qcow2'), 'qcow2', 'write -P 0x22 1M 192k')
    qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=4096', '-b', 'chain-mid.qcow2', '-F', 'qcow2', join(dir, 'chain-top.qcow2'))
    qemuIo(join(dir, 'chain-top.qcow2'), 'qcow2', 'write -P 0xab 2M 64k')
    qemuIo(join(dir, 'chain-top.qcow2'), 'qcow2', 'write -z 1M 8k')
    const top = join(dir, 'chain-top.qcow2')
    await checkImage(top, qemuRaw(dir, top), 'qcow2')
    const img = await openImage(top)
    try {
      expect(await img.overlayRanges!()).toEqual([
        {offset: MiB, length: 8192},
        {offset: 2 * MiB, length: 65536},
      ])
      expect(await img.parent!.overlayRanges!()).toEqual([{offset: MiB, length: 192 * 1024}])
      const whole = await readWhole(img)
      const pieces = await Promise.all(
        [0, 1, 2, 3, 4].map(async (i) => {
          const b = Buffer.alloc(MiB + 512)
          await img.read(b, i * MiB, Math.min(b.length, SIZE - i * MiB))
          return b.subarray(0, Math.min(b.length, SIZE - i * MiB))
        }),
      )
      pieces.forEach((p, i) => expect(p.equals(whole.subarray(i * MiB, i * MiB + p.length))).toBe(true))
      const info = await img.info()
      expect(info.parents).toEqual([join(dir, 'chain-mid.qcow2'), join(dir, 'chain-base.raw')])
    } finally {
      await img.close()
    }
  })

  it('refuses a missing backing file, naming it', async () => {
    const out = join(dir, 'orphan.qcow2')
    qemuImg('create', '-f', 'qcow2', '-u', '-b', 'gone-base.qcow2', '-F', 'qcow2', out, '1M')
    await expect(openImage(out)).rejects.toThrow(/gone-base\.qcow2/)
  })

  it('lists internal snapshots and reads them by name and id', async () => {
    const out = join(dir, 'snap.qcow2')
    qemuImg('convert', '-f', 'raw', '-O', 'qcow2', raw, out)
    qemuImg('snapshot', '-c', 'before', out)
    qemuIo(out, 'qcow2', 'write -P 0x77 0 256k')
    await checkImage(out, qemuRaw(dir, out), 'qcow2')
    const img = await openImage(out)
    const info = await img.info()
    await img.close()
    expect(info.snapshots.map((s) => s.name)).toEqual(['before'])
    for (const sel of ['before', info.snapshots[0]!.id]) {
      const snap = await openImage(out, {imageSnapshot: sel})
      expect(sha256(await readWhole(snap))).toBe(sha256(rawData))
      await snap.close()
    }
    await expect(openImage(out, {imageSnapshot: 'nope'})).rejects.toThrow(/nope/)
  })

  it('refuses --image-snapshot on a format without internal snapshots instead of reading the live disk', async () => {
    const vmdk = join(dir, 'nosnap.vmdk')
    qemuImg('convert', '-f', 'raw', '-O', 'vmdk', raw, vmdk)
    await expect(openImage(vmdk, {imageSnapshot: 'before'})).rejects.toThrow(/vmdk images have no internal snapshots \(--image-snapshot "before"\)/)
    await expect(openImage(raw, {imageSnapshot: 'before'})).rejects.toThrow(/raw images have no internal snapshots/)
  })
})
