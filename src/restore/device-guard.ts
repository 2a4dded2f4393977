// A block device is written only when nothing else uses it. Restoring over
// a mounted file system, a disk with a mounted partition, or a device that
// LVM, MD or device-mapper builds on destroys live data; --force does not
// change that.
//
// 1. Open the device O_RDWR|O_EXCL: the kernel refuses (EBUSY) while a file
//    system is mounted on it in any mount namespace, while dm/md/LVM claims
//    it or a partition of it, or while another process holds it open
//    exclusively. Held for the whole restore, so nothing mounts it midway.
// 2. Independently look for what holds it — /proc/self/mountinfo (the device
//    and its partitions), /sys/dev/block/M:m/holders, and on EBUSY the mount
//    namespaces and open files of other processes — so the refusal names it.
import {constants} from 'node:fs'
import {open, readFile, readdir, readlink, realpath, type FileHandle} from 'node:fs/promises'
import type {Stats} from 'node:fs'
import {join} from 'node:path'
import {IoError} from '../errors.js'
import {targetError} from './target-errors.js'

/** Processes and open files looked at when naming who holds a device (bounds the /proc scan). */
const MAX_PROCESSES = 20000
const MAX_FDS = 200000

/** Where sysfs and procfs are mounted; parameters so the holder search can be tested on a fixture tree. */
export interface SystemRoots {
  sys: string
  proc: string
}

const REAL_ROOTS: SystemRoots = {sys: '/sys', proc: '/proc'}

export async function openDeviceExclusive(path: string, st: Stats, roots: SystemRoots = REAL_ROOTS): Promise<FileHandle> {
  const dev = majorMinor(st.rdev)
  let fh: FileHandle | undefined
  let busy = false
  try {
    fh = await open(path, constants.O_RDWR | constants.O_EXCL)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EBUSY') throw targetError(e, path, 'opening')
    busy = true
  }
  const devs = await deviceAndPartitions(dev, roots)
  const holders = await staticHolders(devs, roots)
  if (busy) holders.push(...(await otherHolders(path, devs, roots)))
  if (holders.length === 0 && !busy) return fh!
  await fh?.close()
  const what = holders.length > 0 ? holders.join('; ') : 'open exclusively by another process'
  throw new IoError(`${path} is in use (${what}); refusing to overwrite it, even with --force`, {
    hint: 'unmount it, deactivate what builds on it (vgchange -an, mdadm --stop, dmsetup remove) or stop that process, then run again',
  })
}

/** "major:minor" of a dev_t, decoded as glibc's gnu_dev_major/minor do (numbers past 2^32 included). */
function majorMinor(rdev: number): string {
  const major = ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff)
  const minor = (rdev & 0xff) | ((rdev >>> 12) & ~0xff)
  return `${major}:${minor}`
}

interface BlockDev {
  /** "major:minor" */
  dev: string
  /** Its sysfs directory. */
  sys: string
  /** "" for the device itself, "partition sdb1 " for a partition: what a holder line starts with. */
  whose: string
}

/** The device and its partitions, from sysfs (just the device when sysfs does not know it). */
async function deviceAndPartitions(dev: string, roots: SystemRoots): Promise<BlockDev[]> {
  const sys = await realpath(join(roots.sys, 'dev/block', dev)).catch(() => null)
  if (!sys) return [{dev, sys: '', whose: ''}]
  const out: BlockDev[] = [{dev, sys, whose: ''}]
  for (const ent of await readdir(sys, {withFileTypes: true}).catch(() => [])) {
    if (!ent.isDirectory()) continue
    const part = await readFile(join(sys, ent.name, 'dev'), 'utf8').catch(() => null)
    const isPartition = (await readFile(join(sys, ent.name, 'partition'), 'utf8').catch(() => null)) !== null
    if (part && isPartition) out.push({dev: part.trim(), sys: join(sys, ent.name), whose: `partition ${ent.name} `})
  }
  return out
}

/** Mounts in this namespace of the device or its partitions, and the sysfs holders of either. */
async function staticHolders(devs: BlockDev[], roots: SystemRoots): Promise<string[]> {
  const out: string[] = []
  const self = await readFile(join(roots.proc, 'self/mountinfo'), 'utf8').catch(() => '')
  for (const {dev, sys, whose} of devs) {
    for (const m of mountsOf(self, dev)) out.push(`${whose}mounted at ${m}`)
    if (!sys) continue
    for (const h of await readdir(join(sys, 'holders')).catch(() => [])) out.push(`${whose}held by ${await holderName(h, roots)}`)
  }
  return out
}

async function holderName(h: string, roots: SystemRoots): Promise<string> {
  const dm = await readFile(join(roots.sys, 'block', h, 'dm/name'), 'utf8').catch(() => null)
  if (dm !== null) return `${h} (device-mapper/LVM ${dm.trim()})`
  return h.startsWith('md') ? `${h} (MD RAID)` : h
}

/** Mount points of `dev` in a mountinfo text (field 3 is major:minor, field 5 the mount point). */
function mountsOf(mountinfo: string, dev: string): string[] {
  const out: string[] = []
  for (const line of mountinfo.split('\n')) {
    const f = line.split(' ')
    if (f[2] === dev && f[4]) out.push(f[4].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
  }
  return out
}

/** Mounts in other mount namespaces, and other processes that have the device open. */
async function otherHolders(path: string, devs: BlockDev[], roots: SystemRoots): Promise<string[]> {
  const target = await realpath(path).catch(() => path)
  const proc = roots.proc
  const seenNs = new Set<string>([await readlink(`${proc}/self/ns/mnt`).catch(() => '')])
  const out: string[] = []
  let fds = 0
  const pids = (await readdir(proc).catch(() => [])).filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid).slice(0, MAX_PROCESSES)
  for (const pid of pids) {
    const ns = await readlink(`${proc}/${pid}/ns/mnt`).catch(() => null)
    if (ns && !seenNs.has(ns)) {
      seenNs.add(ns)
      const info = await readFile(`${proc}/${pid}/mountinfo`, 'utf8').catch(() => '')
      for (const {dev, whose} of devs) {
        for (const m of mountsOf(info, dev)) out.push(`${whose}mounted at ${m} in the mount namespace of process ${pid} (${await comm(proc, pid)})`)
      }
    }
    if (fds >= MAX_FDS) continue
    const list = await readdir(`${proc}/${pid}/fd`).catch(() => [])
    fds += list.length
    for (const fd of list) {
      if ((await readlink(`${proc}/${pid}/fd/${fd}`).catch(() => null)) === target) {
        out.push(`open by process ${pid} (${await comm(proc, pid)})`)
        break
      }
    }
  }
  return out
}

async function comm(proc: string, pid: string): Promise<string> {
  return (await readFile(`${proc}/${pid}/comm`, 'utf8').catch(() => '?')).trim()
}
