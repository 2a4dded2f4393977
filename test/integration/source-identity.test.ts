// A disk's lineage belongs to one source (issue 8 point 6): a backup whose
// source path, host or stable image identity (VHD unique id, VHDX
// VirtualDiskId) differs from the disk's previous snapshot is refused with
// exit 2 unless --allow-source-change; the same path with a new inode (an
// LVM snapshot recreated every night), a VMDK rewritten (new CID) or a VHD
// written to (same unique id) is the same disk. Another host is a real
// other hostname: the CLI runs in its own UTS namespace (unshare --uts).
// Filters (--host, --source, --tag) and forget --group-by disk,host are
// checked on snapshots made that way.
import {execFileSync, spawnSync} from 'node:child_process'
import {copyFileSync, renameSync, rmSync, writeFileSync} from 'node:fs'
import {hostname} from 'node:os'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {BIN, oneLine, vdsnap, vdsnapJson, type RunResult} from '../helpers/cli.js'
import {makeDiskBytes} from '../disk/image-fixtures.js'
import {treeDigest} from '../helpers/tree-digest.js'
import {formatWorkspace, initRepo, MiB} from './format-fixtures.js'

const ws = formatWorkspace('vdsnap-identity-')
const {at, env, qemuImg} = ws
const HERE = hostname()
const OTHER = `${HERE.slice(0, 40)}-other`

/** vdsnap run with another hostname, in a UTS namespace of its own. */
function vdsnapOn(host: string, args: string[]): RunResult {
  const r = spawnSync('unshare', ['--uts', 'sh', '-c', 'hostname "$0" && exec "$@"', host, process.execPath, BIN, ...args], {
    env: {...process.env, ...env, VDSNAP_PASSWORD: ''},
    encoding: 'utf8',
  })
  return {code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr}
}

const repoState = () => treeDigest(env.VDSNAP_REPOSITORY!)

beforeAll(async () => {
  await initRepo(ws)
  writeFileSync(at('disk.raw'), makeDiskBytes(2 * MiB, 5))
  copyFileSync(at('disk.raw'), at('other.raw'))
}, 60_000)
afterAll(() => ws.cleanup())

async function refusedUnchanged(args: string[], ...fragments: string[]): Promise<void> {
  const before = repoState()
  const r = await vdsnap(args, env)
  expect(r.code, r.stderr).toBe(2)
  const line = oneLine(r.stderr)
  for (const f of fragments) expect(line).toContain(f)
  expect(line).toContain('--allow-source-change')
  expect(repoState()).toEqual(before)
}

describe('a disk\'s source is checked against its previous snapshot', () => {
  it('another source path under the same --disk is refused (exit 2, repository unchanged); --allow-source-change or a new --disk name takes it', async () => {
    await vdsnapJson(['backup', at('disk.raw'), '--disk', 'web'], env)
    await refusedUnchanged(['backup', at('other.raw'), '--disk', 'web'], 'disk "web" was last backed up from another source', `source ${at('disk.raw')} → ${at('other.raw')}`)
    const allowed = await vdsnapJson(['backup', at('other.raw'), '--disk', 'web', '--allow-source-change'], env)
    expect(allowed.notices.join('\n')).toContain('allowed by --allow-source-change')
    await vdsnapJson(['backup', at('other.raw'), '--disk', 'web2'], env)
  })

  it('the same path with a new inode (a recreated LVM snapshot) is accepted, and the size-change notice stays', async () => {
    await vdsnapJson(['backup', at('disk.raw'), '--disk', 'lv'], env)
    copyFileSync(at('disk.raw'), at('disk.new'))
    renameSync(at('disk.new'), at('disk.raw'))
    const same = await vdsnapJson(['backup', at('disk.raw'), '--disk', 'lv'], env)
    expect(same.parent).not.toBeNull()
    execFileSync('truncate', ['-s', String(3 * MiB), at('disk.raw')])
    const grown = await vdsnapJson(['backup', at('disk.raw'), '--disk', 'lv'], env)
    expect(grown.notices.join('\n')).toMatch(/virtual size changed from 2\.00 MiB to 3\.00 MiB/)
    expect(grown.sizeChange).toEqual({fromBytes: 2 * MiB, toBytes: 3 * MiB})
  })

  it('another host is refused; --allow-source-change takes it', () => {
    const before = repoState()
    const r = vdsnapOn(OTHER, ['backup', at('disk.raw'), '--disk', 'lv'])
    expect(r.code, r.stderr).toBe(2)
    expect(oneLine(r.stderr)).toContain(`host ${HERE} → ${OTHER}`)
    expect(repoState()).toEqual(before)
    expect(vdsnapOn(OTHER, ['backup', at('disk.raw'), '--disk', 'lv', '--allow-source-change']).code).toBe(0)
  })

  it.each([
    ['vpc', 'vhd', 'vhd:'],
    ['vhdx', 'vhdx', 'vhdx:'],
  ])('a %s image replaced by another at the same path is refused (identity differs); written to, it is the same disk', async (qfmt, ext, prefix) => {
    const img = at(`id.${ext}`)
    qemuImg('convert', '-f', 'raw', '-O', qfmt, 'disk.raw', img)
    const first = await vdsnapJson(['backup', img, '--disk', `id-${ext}`], env)
    const snaps = await vdsnapJson(['snapshots', '--disk', `id-${ext}`], env)
    expect(snaps[0].source.identity).toMatch(new RegExp(`^${prefix}[0-9a-f-]{32,36}$`))
    ws.qemuIo(img, qfmt, 'write -P 7 0 64k')
    const written = await vdsnapJson(['backup', img, '--disk', `id-${ext}`], env)
    expect(written.parent).toBe(first.snapshot)
    rmSync(img)
    qemuImg('convert', '-f', 'raw', '-O', qfmt, 'disk.raw', img)
    await refusedUnchanged(['backup', img, '--disk', `id-${ext}`], `image identity ${snaps[0].source.identity} → ${prefix}`)
  })

  it('a VMDK rewritten (its CID changes) is the same disk: VMDK has no stable identity', async () => {
    const img = at('id.vmdk')
    qemuImg('convert', '-f', 'raw', '-O', 'vmdk', 'disk.raw', img)
    await vdsnapJson(['backup', img, '--disk', 'id-vmdk'], env)
    ws.qemuIo(img, 'vmdk', 'write -P 9 0 64k')
    const again = await vdsnapJson(['backup', img, '--disk', 'id-vmdk'], env)
    expect(again.parent).not.toBeNull()
  })
})

describe('host and source in listings, filters and --group-by', () => {
  // Disk "fleet": two snapshots from this host, two from OTHER (allowed), tagged differently.
  beforeAll(async () => {
    await vdsnapJson(['backup', at('other.raw'), '--disk', 'fleet', '--tag', 'a'], env)
    await vdsnapJson(['backup', at('other.raw'), '--disk', 'fleet', '--tag', 'b'], env)
    expect(vdsnapOn(OTHER, ['backup', at('other.raw'), '--disk', 'fleet', '--tag', 'a', '--allow-source-change']).code).toBe(0)
    expect(vdsnapOn(OTHER, ['backup', at('other.raw'), '--disk', 'fleet', '--tag', 'a', '--tag', 'b']).code).toBe(0)
  }, 60_000)

  it('snapshots shows HOST and SOURCE and filters by --host, --source and --tag', async () => {
    const r = await vdsnap(['snapshots', '--disk', 'fleet'], env)
    expect(r.code, r.stderr).toBe(0)
    const [head, ...rows] = r.stdout.trim().split('\n')
    expect(head).toMatch(/\bHOST\s+SOURCE\b/)
    expect(rows.filter((l) => l.includes(` ${OTHER} `) && l.includes(at('other.raw')))).toHaveLength(2)
    const ids = async (...f: string[]) => ((await vdsnapJson(['snapshots', '--disk', 'fleet', ...f], env)) as {host: string; tags: string[]}[])
    expect((await ids('--host', OTHER)).every((s) => s.host === OTHER)).toBe(true)
    expect(await ids('--host', OTHER)).toHaveLength(2)
    expect(await ids('--source', at('other.raw'))).toHaveLength(4)
    expect(await ids('--source', at('disk.raw'))).toHaveLength(0)
    expect(await ids('--tag', 'a')).toHaveLength(3)
    expect(await ids('--tag', 'a,b')).toHaveLength(1)
    expect(await ids('--tag', 'b', '--host', HERE)).toHaveLength(1)
  })

  it('restore fleet@latest --host picks the newest snapshot of that host; a filter nothing passes is exit 8', async () => {
    const all = await vdsnapJson(['snapshots', '--disk', 'fleet'], env)
    const mine = all.filter((s: {host: string}) => s.host === HERE)
    const r = await vdsnapJson(['restore', 'fleet@latest', '--host', HERE, '--to', at('fleet.out')], env)
    expect(r.snapshot).toBe(mine[mine.length - 1].id)
    const none = await vdsnap(['restore', 'fleet@latest', '--host', 'nowhere', '--to', at('none.out')], env)
    expect(none.code, none.stderr).toBe(8)
    expect(oneLine(none.stderr)).toContain('disk "fleet" has no snapshots matching host nowhere')
  })

  it('forget --host limits a policy to one host; --group-by disk,host keeps the newest of each host', async () => {
    const hosts = async () => ((await vdsnapJson(['snapshots', '--disk', 'fleet'], env)) as {id: string; host: string}[])
    const all = await hosts()
    const newestOf = (h: string) => all.filter((s) => s.host === h).at(-1)!.id
    const r1 = await vdsnap(['forget', '--disk', 'fleet', '--keep-last', '1', '--host', OTHER], env)
    expect(r1.code, r1.stderr).toBe(0)
    const afterHost = await hosts()
    expect(afterHost.filter((s) => s.host === HERE)).toHaveLength(2)
    expect(afterHost.filter((s) => s.host === OTHER).map((s) => s.id)).toEqual([newestOf(OTHER)])
    const r2 = await vdsnap(['forget', '--disk', 'fleet', '--keep-last', '1', '--group-by', 'disk,host'], env)
    expect(r2.code, r2.stderr).toBe(0)
    expect((await hosts()).map((s) => s.id).sort()).toEqual([newestOf(HERE), newestOf(OTHER)].sort())
    const before = repoState()
    const bad = await vdsnap(['forget', '--keep-last', '1', '--group-by', 'disk,colour'], env)
    expect(bad.code).toBe(2)
    expect(oneLine(bad.stderr)).toContain('--group-by "disk,colour" is not a list of disk, host, source')
    expect(repoState()).toEqual(before)
  })
})
