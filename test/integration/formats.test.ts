// Every container format end to end: the same ext4 disk converted by
// qemu-img into each format backs up to the same chunks (dedup across
// containers), restores byte-identical to `qemu-img convert -O raw`, and
// restores into each writable format as images qemu-img checks and compares
// equal. A qcow2 overlay on a backed-up base is its own change source.
import {execFileSync, spawnSync} from 'node:child_process'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {vdsnap, vdsnapJson} from '../helpers/cli.js'
import {makeExt4Image, sha256File, tempDir} from '../helpers/images.js'

const MiB = 1024 * 1024
const SOURCES: [string, string[]][] = [
  ['qcow2', ['-O', 'qcow2']],
  ['qcow2-zstd', ['-O', 'qcow2', '-c', '-o', 'compression_type=zstd']],
  ['vmdk-sparse', ['-O', 'vmdk', '-o', 'subformat=monolithicSparse']],
  ['vmdk-stream', ['-O', 'vmdk', '-o', 'subformat=streamOptimized']],
  ['vhdx', ['-O', 'vhdx']],
  ['vhd', ['-O', 'vpc', '-o', 'subformat=dynamic,force_size=on']],
]

function qemuRaw(src: string, out: string): void {
  execFileSync('qemu-img', ['convert', '-O', 'raw', src, out])
}

describe('disk image formats end to end', () => {
  const dir = tempDir()
  const repo = join(dir.path, 'repo')
  const raw = join(dir.path, 'disk.raw')
  const env = {VDSNAP_REPOSITORY: repo, VDSNAP_PASSWORD: 'pw'}
  const snaps = new Map<string, string>()

  beforeAll(async () => {
    makeExt4Image(raw, 24 * MiB + 64 * 1024)
    expect((await vdsnap(['init'], env)).code).toBe(0)
    snaps.set('raw', (await vdsnapJson(['backup', raw, '--disk', 'raw'], env)).snapshot)
  })
  afterAll(() => dir.cleanup())

  it.each(SOURCES)('%s: detected by content, no new chunks, restores equal to qemu-img convert', async (name, args) => {
    const img = join(dir.path, `disk-${name}.img`) // the extension says nothing: detection is by content
    execFileSync('qemu-img', ['convert', '-f', 'raw', ...args, raw, img])
    const info = await vdsnapJson(['info', img])
    expect(info.format).toBe(name.split('-')[0])
    const res = await vdsnapJson(['backup', img, '--disk', name], env)
    expect(res.newChunks, 'dedup across containers').toBe(0)
    snaps.set(name, res.snapshot)
    const expected = join(dir.path, `expected-${name}.raw`)
    qemuRaw(img, expected)
    const out = join(dir.path, `restored-${name}.raw`)
    expect((await vdsnap(['restore', res.snapshot, '--to', out], env)).code).toBe(0)
    expect(sha256File(out)).toBe(sha256File(expected))
  })

  it.each(['qcow2', 'vmdk', 'vhd', 'vhdx'])('restore --format %s passes qemu-img check and compare', async (fmt) => {
    const out = join(dir.path, `out.${fmt}`)
    const r = await vdsnap(['restore', snaps.get('raw')!, '--to', out, '--format', fmt], env)
    expect(r.code, r.stderr).toBe(0)
    const check = spawnSync('qemu-img', ['check', out])
    // 63: the format has no consistency checks (vpc); anything else must be clean
    expect([0, 63], check.stdout.toString() + check.stderr.toString()).toContain(check.status)
    const cmp = spawnSync('qemu-img', ['compare', '-f', 'raw', raw, out])
    expect(cmp.status, cmp.stdout.toString()).toBe(0)
    // and vdsnap reads its own output back to the same chunks
    expect((await vdsnapJson(['backup', out, '--disk', `back-${fmt}`], env)).newChunks).toBeLessThanOrEqual(1)
  })

  it('a qcow2 overlay on a backed-up base is its own change source', async () => {
    const base = join(dir.path, 'base.qcow2')
    const top = join(dir.path, 'top.qcow2')
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, base])
    await vdsnapJson(['backup', base, '--disk', 'ov'], env)
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', top], {cwd: dir.path})
    execFileSync('qemu-io', ['-c', 'write -P 0x5a 3M 192k', '-c', 'write -z 0 64k', top], {stdio: 'ignore'})
    const res = await vdsnapJson(['backup', top, '--disk', 'ov'], env)
    expect(res.changeSource).toBe('overlay')
    // the overlay's 2 touched blocks plus the 64 sampled for verification at most
    expect(res.bytesRead).toBeLessThanOrEqual(66 * MiB)
    expect(res.bytesRead).toBeLessThan(24 * MiB)
    expect(res.changedBlocks).toBe(2)
    const expected = join(dir.path, 'top.raw')
    qemuRaw(top, expected)
    const out = join(dir.path, 'top-restored.raw')
    expect((await vdsnap(['restore', res.snapshot, '--to', out], env)).code).toBe(0)
    expect(sha256File(out)).toBe(sha256File(expected))
  })
})
