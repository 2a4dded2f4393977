// A source another process holds open for writing (issue 8 point 7) is
// refused with exit 7 and a hint, the repository untouched; with
// --allow-in-use the snapshot is stored, tagged crash-consistent, and the
// run exits 3. The holders are real: qemu-nbd without -r (QEMU's write lock
// on a qcow2), qemu-io with the image open for writing on a raw file, and a
// mounted loop device (an exclusive open fails). Each holder is stalled at
// a known point before the backup runs: qemu-nbd once its socket exists,
// qemu-io once it prints its prompt and waits for input. A read-only holder
// (qemu-nbd -r) is no obstacle.
import {execFileSync, spawn, type ChildProcess} from 'node:child_process'
import {existsSync, mkdirSync, writeFileSync} from 'node:fs'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterAll, afterEach, beforeAll, describe, expect, it} from 'vitest'
import {oneLine, vdsnap, vdsnapJson} from '../helpers/cli.js'
import {makeDiskBytes} from '../disk/image-fixtures.js'
import {makeExt4Image} from '../helpers/images.js'
import {treeDigest} from '../helpers/tree-digest.js'
import {formatWorkspace, initRepo, MiB} from './format-fixtures.js'

const ws = formatWorkspace('vdsnap-in-use-')
const {at, env, qemuImg} = ws
const repoState = () => treeDigest(env.VDSNAP_REPOSITORY!)
const holders: ChildProcess[] = []
let loop: string | undefined

/** Waits (bounded in count, not racing a timer against the machine) for `ready`. */
async function until(ready: () => boolean, what: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 6000; i++) {
    if (ready()) return
    if (child.exitCode !== null) throw new Error(`${what}: the holder exited (${child.exitCode}) before it was ready`)
    await sleep(10)
  }
  throw new Error(`${what}: not ready after 6000 polls`)
}

async function qemuNbd(image: string, readOnly: boolean): Promise<ChildProcess> {
  const sock = at(`nbd-${holders.length}.sock`)
  const child = spawn('qemu-nbd', [...(readOnly ? ['-r'] : []), '-f', 'qcow2', '-k', sock, image], {stdio: 'ignore'})
  holders.push(child)
  await until(() => existsSync(sock), 'qemu-nbd', child)
  return child
}

async function qemuIoHolding(image: string): Promise<ChildProcess> {
  const child = spawn('qemu-io', ['-f', 'raw', image], {stdio: ['pipe', 'pipe', 'ignore']})
  holders.push(child)
  let out = ''
  child.stdout!.on('data', (d) => (out += d))
  await until(() => out.includes('qemu-io>'), 'qemu-io', child)
  return child
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const done = new Promise((r) => child.once('exit', r))
  child.kill('SIGTERM')
  await done
}

beforeAll(async () => {
  await initRepo(ws)
  writeFileSync(at('disk.raw'), makeDiskBytes(2 * MiB, 9))
  qemuImg('convert', '-f', 'raw', '-O', 'qcow2', 'disk.raw', 'vm.qcow2')
}, 60_000)
afterEach(async () => {
  for (const c of holders.splice(0)) await stop(c)
})
afterAll(() => {
  if (loop) {
    execFileSync('umount', [at('mnt')], {stdio: 'ignore'})
    execFileSync('losetup', ['-d', loop])
  }
  ws.cleanup()
})

describe('a source open for writing by another process', () => {
  it('qcow2 served by qemu-nbd (write lock): exit 7, one line with the hint, repository unchanged', async () => {
    await qemuNbd(at('vm.qcow2'), false)
    const before = repoState()
    const r = await vdsnap(['backup', at('vm.qcow2'), '--disk', 'vm'], env)
    expect(r.code, r.stderr).toBe(7)
    const line = oneLine(r.stderr)
    expect(line).toContain(`source ${at('vm.qcow2')} is open for writing: another process (QEMU, qemu-nbd...) holds its write lock`)
    expect(line).toContain('virsh domfsfreeze')
    expect(line).toContain('--allow-in-use')
    expect(repoState()).toEqual(before)
  })

  it('--allow-in-use stores it tagged crash-consistent and exits 3', async () => {
    await qemuNbd(at('vm.qcow2'), false)
    const res = await vdsnapJson(['backup', at('vm.qcow2'), '--disk', 'vm', '--allow-in-use'], env, 3)
    expect(res.warnings.join('\n')).toContain('tagged crash-consistent')
    const snaps = await vdsnapJson(['snapshots', '--disk', 'vm'], env)
    expect(snaps.map((s: {tags: string[]}) => s.tags)).toEqual([['crash-consistent']])
  })

  it('a raw file opened for writing by qemu-io is refused', async () => {
    await qemuIoHolding(at('disk.raw'))
    const before = repoState()
    const r = await vdsnap(['backup', at('disk.raw'), '--disk', 'raw'], env)
    expect(r.code, r.stderr).toBe(7)
    expect(oneLine(r.stderr)).toContain(`source ${at('disk.raw')} is open for writing`)
    expect(repoState()).toEqual(before)
  })

  it('a mounted block device is refused', async () => {
    makeExt4Image(at('fs.img'), 16 * MiB)
    loop = execFileSync('losetup', ['-f', '--show', at('fs.img')], {encoding: 'utf8'}).trim()
    mkdirSync(at('mnt'))
    execFileSync('mount', [loop, at('mnt')])
    const before = repoState()
    const r = await vdsnap(['backup', loop, '--disk', 'blk'], env)
    expect(r.code, r.stderr).toBe(7)
    expect(oneLine(r.stderr)).toContain(`source ${loop} is open for writing: the block device is mounted or held exclusively by another process`)
    expect(repoState()).toEqual(before)
  })

  it('a read-only holder (qemu-nbd -r) and no holder at all are no obstacle', async () => {
    await qemuNbd(at('vm.qcow2'), true)
    await vdsnapJson(['backup', at('vm.qcow2'), '--disk', 'vm-ro'], env)
    for (const c of holders.splice(0)) await stop(c)
    await vdsnapJson(['backup', at('disk.raw'), '--disk', 'raw'], env)
  })
})
