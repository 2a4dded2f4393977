// device-guard names what holds a block device (device-mapper/LVM, MD, a
// mounted partition). This machine has no dm driver and no loop partition
// scan, so the holder search runs on a fixture /sys and /proc tree; the
// device node is stood in for by a plain file (O_EXCL without O_CREAT
// changes nothing on a regular file) with the fixture's major:minor.
import {mkdirSync, statSync, symlinkSync, writeFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {IoError} from '../../src/errors.js'
import {openDeviceExclusive} from '../../src/restore/device-guard.js'
import {tempDir} from '../helpers/images.js'

const dir = tempDir()
afterAll(() => dir.cleanup())

function put(path: string, text: string): void {
  mkdirSync(dirname(path), {recursive: true})
  writeFileSync(path, text)
}

/** A fixture sysfs/procfs for loop5 (7:5) and a target file standing in for /dev/loop5. */
function fixture(name: string, build: (sys: string, loop: string, proc: string) => void) {
  const root = join(dir.path, name)
  const sys = join(root, 'sys')
  const proc = join(root, 'proc')
  const loop = join(sys, 'devices/virtual/block/loop5')
  put(join(loop, 'dev'), '7:5\n')
  mkdirSync(join(loop, 'holders'), {recursive: true})
  mkdirSync(join(sys, 'dev/block'), {recursive: true})
  symlinkSync('../../devices/virtual/block/loop5', join(sys, 'dev/block/7:5'))
  put(join(proc, 'self/mountinfo'), '22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n')
  build(sys, loop, proc)
  const target = join(root, 'loop5')
  writeFileSync(target, '')
  const st = Object.assign(statSync(target), {rdev: (7 << 8) | 5})
  return {target, st, roots: {sys, proc}}
}

async function refusal(f: ReturnType<typeof fixture>): Promise<IoError> {
  const err = await openDeviceExclusive(f.target, f.st, f.roots).then(
    async (fh) => {
      await fh.close()
      throw new Error('not refused')
    },
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(IoError)
  expect((err as IoError).message).toMatch(/^\S*loop5 is in use \(.*\); refusing to overwrite it, even with --force$/)
  return err as IoError
}

describe('device-guard on a fixture /sys and /proc', () => {
  it('opens a device nothing holds', async () => {
    const f = fixture('free', () => {})
    const fh = await openDeviceExclusive(f.target, f.st, f.roots)
    await fh.close()
  })

  it('refuses a device held by device-mapper/LVM, naming the dm device and its name', async () => {
    const f = fixture('dm', (sys, loop) => {
      mkdirSync(join(loop, 'holders/dm-0'))
      put(join(sys, 'block/dm-0/dm/name'), 'vg0-root\n')
    })
    expect((await refusal(f)).message).toContain('(held by dm-0 (device-mapper/LVM vg0-root))')
  })

  it('refuses a device held by MD RAID, naming the array', async () => {
    const f = fixture('md', (_sys, loop) => mkdirSync(join(loop, 'holders/md0')))
    expect((await refusal(f)).message).toContain('(held by md0 (MD RAID))')
  })

  it('refuses a device whose partition is mounted, naming the partition and mount point', async () => {
    const f = fixture('part', (_sys, loop, proc) => {
      put(join(loop, 'loop5p1/dev'), '259:0\n')
      put(join(loop, 'loop5p1/partition'), '1\n')
      mkdirSync(join(loop, 'loop5p1/holders'))
      put(join(proc, 'self/mountinfo'), '22 1 8:1 / / rw - ext4 /dev/sda1 rw\n36 22 259:0 / /mnt/my\\040data rw,relatime - ext4 /dev/loop5p1 rw\n')
    })
    expect((await refusal(f)).message).toContain('(partition loop5p1 mounted at /mnt/my data)')
  })

  it('names every holder at once: a held partition and the device itself mounted', async () => {
    const f = fixture('both', (sys, loop, proc) => {
      put(join(loop, 'loop5p2/dev'), '259:1\n')
      put(join(loop, 'loop5p2/partition'), '2\n')
      mkdirSync(join(loop, 'loop5p2/holders/dm-3'), {recursive: true})
      put(join(sys, 'block/dm-3/dm/name'), 'crypt-home\n')
      put(join(proc, 'self/mountinfo'), '40 22 7:5 / /media/whole rw - ext4 /dev/loop5 rw\n')
    })
    const m = (await refusal(f)).message
    expect(m).toContain('mounted at /media/whole')
    expect(m).toContain('partition loop5p2 held by dm-3 (device-mapper/LVM crypt-home)')
  })
})
