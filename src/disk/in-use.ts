// Is a source image open for writing by another process? Reading a disk
// that a running VM writes gives a snapshot no guest ever saw.
//
// 1. QEMU (qemu-system, qemu-nbd, qemu-img, qemu-io) takes Linux open file
//    description (OFD) locks on the bytes of every image it opens: byte
//    PERM_BASE + n for each permission n it holds, byte SHARED_BASE + n for
//    each it refuses to share. The write permission is bit 1, so a lock on
//    byte 101 means "someone holds this image for writing" — the conflict
//    `qemu-img info` reports as 'Failed to get shared "write" lock'. The
//    kernel lists every lock in /proc/locks ("OFDLCK ADVISORY READ -1
//    MAJ:MIN:INODE START END"), the same table F_OFD_GETLK consults, so no
//    native helper is needed; where /proc/locks is unreadable (not Linux)
//    this check cannot tell and says nothing.
// 2. A block device that is mounted or held by another driver (device
//    mapper, md, an O_EXCL opener) refuses an O_EXCL open with EBUSY.
// Both are cheap and read-only: nothing here takes a lock or writes.
import {constants} from 'node:fs'
import {open, readFile, stat} from 'node:fs/promises'

/** QEMU's lock byte layout (block/file-posix.c); never change. */
export const QEMU_LOCK_PERM_BASE = 100
export const QEMU_PERM_WRITE_BIT = 1
const WRITE_LOCK_BYTE = QEMU_LOCK_PERM_BASE + QEMU_PERM_WRITE_BIT

export interface InUse {
  path: string
  /** How it was found: what the user is told. */
  why: string
}

/** Major and minor of a dev_t as glibc encodes it (what stat returns). */
function devParts(dev: number): [number, number] {
  const d = BigInt(dev)
  const major = Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn))
  const minor = Number((d & 0xffn) | ((d >> 12n) & ~0xffn))
  return [major, minor]
}

/** The lock table, or null where the platform has none to read. */
export async function readLockTable(): Promise<string | null> {
  return readFile('/proc/locks', 'utf8').catch(() => null)
}

/** Whether a lock in `table` covers QEMU's write-permission byte of the file with this dev/inode. */
export function holdsQemuWriteLock(table: string, dev: number, ino: number): boolean {
  const [major, minor] = devParts(dev)
  for (const line of table.split('\n')) {
    // "1: OFDLCK ADVISORY  READ -1 fe:00:2147650 100 101" (a "->" prefix marks a blocked waiter)
    const m = /^\d+:\s+(?:->\s+)?\S+\s+\S+\s+\S+\s+\S+\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s+(\d+)\s+(\d+|EOF)\s*$/.exec(line)
    if (!m || line.includes('->')) continue
    if (parseInt(m[1]!, 16) !== major || parseInt(m[2]!, 16) !== minor || Number(m[3]) !== ino) continue
    const start = Number(m[4])
    const end = m[5] === 'EOF' ? Infinity : Number(m[5])
    if (start <= WRITE_LOCK_BYTE && WRITE_LOCK_BYTE <= end) return true
  }
  return false
}

/** Whether a block device refuses an exclusive open (mounted, or claimed by another holder). */
async function blockDeviceBusy(path: string): Promise<boolean> {
  try {
    const fh = await open(path, constants.O_RDONLY | constants.O_EXCL)
    await fh.close()
    return false
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EBUSY'
  }
}

/** The first of `paths` that another process holds for writing, or null. */
export async function findWriter(paths: string[]): Promise<InUse | null> {
  const table = await readLockTable()
  for (const path of paths) {
    const st = await stat(path).catch(() => null)
    if (!st) continue
    if (table !== null && holdsQemuWriteLock(table, st.dev, st.ino)) {
      return {path, why: 'another process (QEMU, qemu-nbd...) holds its write lock'}
    }
    if (st.isBlockDevice() && (await blockDeviceBusy(path))) {
      return {path, why: 'the block device is mounted or held exclusively by another process'}
    }
  }
  return null
}
