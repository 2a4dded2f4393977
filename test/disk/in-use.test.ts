// Reading the kernel's lock table for QEMU's write-permission byte (101):
// table-driven on /proc/locks lines as Linux prints them, plus the real
// table while this process holds nothing on a fresh file.
import {statSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {findWriter, holdsQemuWriteLock, readLockTable} from '../../src/disk/in-use.js'
import {tempDir} from '../helpers/images.js'

// st_dev 0xfe00 is major 0xfe, minor 0x00: /proc/locks prints "fe:00".
const DEV = 0xfe00
const INO = 2147650

describe('holdsQemuWriteLock', () => {
  it.each([
    ['qemu-nbd without -r: perm bytes 100-101', '4: OFDLCK ADVISORY  READ -1 fe:00:2147650 100 101', true],
    ['the write byte alone', '1: OFDLCK ADVISORY  READ -1 fe:00:2147650 101 101', true],
    ['a lock to EOF from 0', '1: POSIX  ADVISORY  WRITE 4242 fe:00:2147650 0 EOF', true],
    ['qemu-nbd -r: consistent-read byte only', '4: OFDLCK ADVISORY  READ -1 fe:00:2147650 100 100', false],
    ['shared-permission bytes (201, 203) are not the write permission', '2: OFDLCK ADVISORY  READ -1 fe:00:2147650 201 203', false],
    ['another inode', '4: OFDLCK ADVISORY  READ -1 fe:00:2147651 100 101', false],
    ['another device', '4: OFDLCK ADVISORY  READ -1 fe:01:2147650 100 101', false],
    ['a blocked waiter holds nothing', '4: -> OFDLCK ADVISORY  WRITE -1 fe:00:2147650 100 101', false],
  ])('%s', (_name, line, expected) => {
    expect(holdsQemuWriteLock(`1: FLOCK  ADVISORY  WRITE 77 08:01:5 0 EOF\n${line}\n`, DEV, INO)).toBe(expected)
  })

  it('large major/minor numbers are decoded as glibc encodes them', () => {
    // major 259, minor 0x12345: dev = (minor & 0xff) | (major << 8 & 0xfff00) | (minor & ~0xff) << 12
    const major = 259
    const minor = 0x12345
    const dev = (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)
    expect(holdsQemuWriteLock(`1: OFDLCK ADVISORY READ -1 103:12345:7 100 101`, dev, 7)).toBe(true)
  })
})

describe('findWriter', () => {
  it('a file nobody holds is not in use; the table is readable here', async () => {
    const dir = tempDir('vdsnap-in-use-unit-')
    try {
      const f = join(dir.path, 'free.img')
      writeFileSync(f, Buffer.alloc(4096))
      expect(statSync(f).size).toBe(4096)
      expect(await readLockTable()).not.toBeNull()
      expect(await findWriter([f])).toBeNull()
    } finally {
      dir.cleanup()
    }
  })
})
