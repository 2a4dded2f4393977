// Restoring to block devices, through the CLI, on loop devices (root only;
// skipped with the reason otherwise): a device needs --force like an
// existing file, and one in use — open exclusively by another process,
// mounted (here in a private mount namespace, invisible in our own
// mountinfo), a partition of it mounted, or held by device-mapper — is
// refused even with --force, naming what holds it, and left unchanged.
import {execFileSync, spawn, spawnSync, type ChildProcessWithoutNullStreams} from 'node:child_process'
import {createHash} from 'node:crypto'
import {closeSync, mkdirSync, openSync, readSync, writeFileSync, existsSync} from 'node:fs'
import {basename, join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {BIN, oneLine, vdsnap, vdsnapJson} from '../helpers/cli.js'
import {makeExt4Image, sha256File, tempDir} from '../helpers/images.js'
import {treeState} from '../helpers/repo-state.js'

const MiB = 1024 * 1024
const DISK = 16 * MiB
const root = process.getuid?.() === 0
const loopReason = !root ? 'loop devices need root' : spawnSync('losetup', ['-f']).status !== 0 ? 'no free loop device (losetup -f failed)' : ''

/** SHA-256 of the first `length` bytes of a device, read through the device itself. */
function deviceHash(dev: string, length = DISK): string {
  const fd = openSync(dev, 'r')
  const h = createHash('sha256')
  const buf = Buffer.alloc(MiB)
  try {
    for (let pos = 0; pos < length; pos += buf.length) h.update(buf.subarray(0, readSync(fd, buf, 0, buf.length, pos)))
  } finally {
    closeSync(fd)
  }
  return h.digest('hex')
}

/** Starts `cmd` and waits until it prints `ready` on stdout: the process is then stalled at a known point, until its stdin closes. */
function stalled(cmd: string, args: string[], ready: string, env: Record<string, string> = {}): Promise<ChildProcessWithoutNullStreams> {
  const child = spawn(cmd, args, {env: {...process.env, ...env}})
  return new Promise((resolve, reject) => {
    let out = ''
    let err = ''
    child.stderr.on('data', (d) => (err += d))
    child.stdout.on('data', (d) => {
      out += d
      if (out.includes(ready)) resolve(child)
    })
    child.on('exit', (code) => reject(new Error(`${cmd} exited ${code} before "${ready}": ${err}`)))
  })
}

async function release(child: ChildProcessWithoutNullStreams): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const gone = new Promise((r) => child.once('exit', r))
  child.stdin.end()
  await gone
}

describe.skipIf(loopReason !== '')(`restore to block devices${loopReason ? ` (skipped: ${loopReason})` : ''}`, () => {
  const dir = tempDir()
  const repo = join(dir.path, 'repo')
  const img = join(dir.path, 'vm.img')
  const env = {VDSNAP_REPOSITORY: repo, VDSNAP_PASSWORD: 'pw'}
  const loops: string[] = []
  let loop = ''

  const attach = (file: string, extra: string[] = []) => {
    const dev = execFileSync('losetup', [...extra, '-f', '--show', file], {encoding: 'utf8'}).trim()
    loops.push(dev)
    return dev
  }

  beforeAll(async () => {
    makeExt4Image(img, DISK)
    expect((await vdsnap(['init', '--block-size', '64KiB'], env)).code).toBe(0)
    await vdsnapJson(['backup', img], env)
    const backing = join(dir.path, 'device.img')
    writeFileSync(backing, Buffer.alloc(DISK, 0x5a))
    loop = attach(backing)
  })
  afterAll(() => {
    for (const dev of loops) spawnSync('losetup', ['-d', dev])
    dir.cleanup()
  })

  /** Restoring to `dev` with `args` is refused with `code` and a line matching `line`; device and repository unchanged. */
  async function refused(dev: string, args: string[], code: number, line: RegExp | string): Promise<void> {
    const before = treeState(repo)
    const want = deviceHash(dev)
    const r = await vdsnap(['restore', 'vm@latest', '--to', dev, ...args], env)
    expect(r.code, r.stderr).toBe(code)
    if (typeof line === 'string') expect(oneLine(r.stderr)).toBe(line)
    else expect(oneLine(r.stderr)).toMatch(line)
    expect(deviceHash(dev)).toBe(want)
    expect(treeState(repo)).toEqual(before)
  }

  it('a block device needs --force; with it the device holds the disk', async () => {
    await refused(loop, [], 2, `vdsnap: error: ${loop} is a block device: restoring overwrites all of it; add --force to overwrite it`)
    const r = await vdsnap(['restore', 'vm@latest', '--to', loop, '--force'], env)
    expect(r.code, r.stderr).toBe(0)
    expect(deviceHash(loop)).toBe(sha256File(img))
  })

  it('a device another process holds open exclusively (O_EXCL) is refused even with --force, naming the process', async () => {
    const holder = await stalled(
      process.execPath,
      ['-e', "const fs = require('fs'); fs.openSync(process.argv[1], fs.constants.O_RDONLY | fs.constants.O_EXCL); console.log('held'); process.stdin.resume()", loop],
      'held',
    )
    try {
      const line = `vdsnap: error: ${loop} is in use (open by process ${holder.pid} (node)); refusing to overwrite it, even with --force; unmount it,`
      await refused(loop, ['--force'], 7, new RegExp(`^${line.replace(/[()]/g, '\\$&')}`))
    } finally {
      await release(holder)
    }
  })

  it.skipIf(spawnSync('unshare', ['-m', 'true']).status !== 0)('a device mounted in another mount namespace is refused even with --force, naming the mount', async () => {
    const mnt = join(dir.path, 'mnt')
    mkdirSync(mnt, {recursive: true})
    execFileSync('mkfs.ext4', ['-q', '-F', loop])
    const ns = await stalled('unshare', ['-m', 'sh', '-c', 'mount -o ro,noload "$DEV" "$MNT" && echo mounted && read x'], 'mounted', {DEV: loop, MNT: mnt})
    try {
      await refused(loop, ['--force'], 7, `vdsnap: error: ${loop} is in use (mounted at ${mnt} in the mount namespace of process ${ns.pid} (sh)); refusing to overwrite it, even with --force; unmount it, deactivate what builds on it (vgchange -an, mdadm --stop, dmsetup remove) or stop that process, then run again`)
      // --delta-from writes into the device too: the same refusal
      const snap = (await vdsnapJson<{id: string}[]>(['snapshots'], env))[0]!.id
      await refused(loop, ['--delta-from', snap], 7, /is in use \(mounted at .* in the mount namespace of process/)
    } finally {
      await release(ns)
    }
  })

  it.skipIf(spawnSync('unshare', ['-m', 'true']).status !== 0)('a device mounted in its own mount namespace is named from /proc/self/mountinfo', async () => {
    const mnt = join(dir.path, 'mnt-own')
    mkdirSync(mnt, {recursive: true})
    execFileSync('mkfs.ext4', ['-q', '-F', loop])
    const want = deviceHash(loop)
    const script = 'mount -o ro,noload "$DEV" "$MNT" && exec "$NODE" "$BIN" restore vm@latest --to "$DEV" --force'
    const r = spawnSync('unshare', ['-m', 'sh', '-c', script], {env: {...process.env, ...env, DEV: loop, MNT: mnt, NODE: process.execPath, BIN}, encoding: 'utf8'})
    expect(r.status, r.stderr).toBe(7)
    expect(oneLine(r.stderr)).toMatch(new RegExp(`^vdsnap: error: ${loop} is in use \\(mounted at ${mnt}\\); refusing to overwrite it, even with --force`))
    expect(deviceHash(loop)).toBe(want)
  })

  it('a disk with a mounted partition is refused, naming the partition', async (ctx) => {
    if (spawnSync('unshare', ['-m', 'true']).status !== 0) return ctx.skip('unshare -m is not available')
    if (spawnSync('sfdisk', ['--version']).status !== 0) return ctx.skip('sfdisk (fdisk package) is not installed')
    const file = join(dir.path, 'parted.img')
    writeFileSync(file, Buffer.alloc(DISK))
    execFileSync('sfdisk', ['-q', file], {input: 'start=2048, type=83\n'})
    const disk = attach(file, ['-P'])
    const part = `${disk}p1`
    if (!existsSync(part)) return ctx.skip(`the kernel made no partition device for ${basename(disk)} (no partition scanning for loop devices here)`)
    execFileSync('mkfs.ext4', ['-q', part])
    const mnt = join(dir.path, 'pmnt')
    mkdirSync(mnt, {recursive: true})
    const ns = await stalled('unshare', ['-m', 'sh', '-c', 'mount -o ro,noload "$DEV" "$MNT" && echo mounted && read x'], 'mounted', {DEV: part, MNT: mnt})
    try {
      await refused(disk, ['--force'], 7, new RegExp(`is in use \\(partition ${basename(part)} mounted at ${mnt} in the mount namespace`))
    } finally {
      await release(ns)
    }
  })

  it('a device device-mapper builds on (LVM, dm) is refused, naming the holder', async (ctx) => {
    const name = `vdsnap-test-${process.pid}`
    const sectors = DISK / 512
    const dm = spawnSync('dmsetup', ['create', name, '--noudevsync', '--table', `0 ${sectors} linear ${loop} 0`], {encoding: 'utf8', timeout: 30_000})
    if (dm.status !== 0) return ctx.skip(`device-mapper is not available here (dmsetup create: ${(dm.stderr || String(dm.error)).split('\n')[0]})`)
    try {
      await refused(loop, ['--force'], 7, new RegExp(`is in use \\(held by dm-\\d+ \\(device-mapper/LVM ${name}\\)`))
    } finally {
      spawnSync('dmsetup', ['remove', '--noudevsync', name], {timeout: 30_000})
    }
  })
})
