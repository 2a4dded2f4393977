// Restore in an operator's hands, through the CLI: the mistakes an operator
// makes at 3 a.m. (a bare "latest" with several VMs, the wrong --delta-from
// target, a format that contradicts the file name, a directory, a terminal,
// a read-only or immutable target, a closed pipe) each get one line, their
// documented exit code, and change neither the repository nor the target.
import {execFileSync, spawnSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {existsSync, mkdirSync, readdirSync, statSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {BIN, oneLine, vdsnap, vdsnapJson} from '../helpers/cli.js'
import {makeExt4Image, randomAt, sha256File, tempDir, writeAt} from '../helpers/images.js'
import {treeState} from '../helpers/repo-state.js'

const KiB = 1024
const MiB = 1024 * KiB
const DISK = 16 * MiB
const BLOCK = 64 * KiB

function qemuFormat(path: string): string {
  return JSON.parse(execFileSync('qemu-img', ['info', '--output=json', path], {encoding: 'utf8'})).format
}

describe('restore safety', () => {
  const dir = tempDir()
  const repo = join(dir.path, 'repo')
  const web = join(dir.path, 'web.img')
  const db = join(dir.path, 'db.img')
  const env = {VDSNAP_REPOSITORY: repo, VDSNAP_PASSWORD: 'pw'}
  let web1 = ''
  let web1Copy = ''
  const at = (name: string) => join(dir.path, name)
  /** Nothing named like a temporary restore file is left in `d`. */
  const noTemps = (d: string) => expect(readdirSync(d).filter((n) => n.includes('.vdsnap-'))).toEqual([])

  beforeAll(async () => {
    makeExt4Image(web, DISK)
    writeFileSync(db, randomBytes(DISK))
    expect((await vdsnap(['init', '--block-size', '64KiB'], env)).code).toBe(0)
    web1 = (await vdsnapJson(['backup', web], env)).snapshot
    web1Copy = at('web1.raw')
    execFileSync('cp', ['--sparse=always', web, web1Copy])
    randomAt(web, 1 * MiB, 3 * BLOCK)
    randomAt(web, 5 * MiB + 100, 10)
    await vdsnapJson(['backup', web], env)
    await vdsnapJson(['backup', db], env)
  })
  afterAll(() => dir.cleanup())

  it('a bare "latest" with two disks is a usage error listing them, for restore and diff; DISK@latest works', async () => {
    const before = treeState(repo)
    const out = at('latest.img')
    const r = await vdsnap(['restore', 'latest', '--to', out], env)
    expect(r.code).toBe(2)
    expect(oneLine(r.stderr)).toBe(`vdsnap: error: "latest" is ambiguous: ${repo} holds 2 disks (db, web); say which with DISK@latest, e.g. db@latest`)
    expect(existsSync(out)).toBe(false)
    const d = await vdsnap(['diff', web1, 'latest'], env)
    expect(d.code).toBe(2)
    expect(oneLine(d.stderr)).toMatch(/"latest" is ambiguous: .* holds 2 disks \(db, web\)/)
    expect(treeState(repo)).toEqual(before)
    expect((await vdsnap(['restore', 'web@latest', '--to', out], env)).code).toBe(0)
    expect(sha256File(out)).toBe(sha256File(web))
    const help = await vdsnap(['restore', '--help'])
    expect(help.stdout).toContain('restore web@latest --to /var/lib/libvirt/images/web.img')
    expect(help.stdout).not.toMatch(/restore latest/)
  })

  it('--delta-from refuses (exit 6) a target that does not hold that snapshot, writing nothing', async () => {
    const before = treeState(repo)
    // another disk's bytes, of the same size
    const other = at('delta-other.img')
    execFileSync('cp', [db, other])
    const r = await vdsnap(['restore', 'web@latest', '--to', other, '--delta-from', web1], env)
    expect(r.code, r.stderr).toBe(6)
    expect(oneLine(r.stderr)).toMatch(new RegExp(`${other} does not hold snapshot ${web1.slice(0, 8)}: \\d+ of \\d+ checked blocks differ .*nothing was written; restore in full without --delta-from`))
    expect(sha256File(other)).toBe(sha256File(db))
    // the right snapshot but one block the delta would not write differs (a 16 MiB disk: every such block is checked)
    const nearly = at('delta-nearly.img')
    execFileSync('cp', ['--sparse=always', web1Copy, nearly])
    writeAt(nearly, 12 * MiB + 7, Buffer.from('x'))
    const want = sha256File(nearly)
    const n = await vdsnap(['restore', 'web@latest', '--to', nearly, '--delta-from', web1], env)
    expect(n.code, n.stderr).toBe(6)
    expect(oneLine(n.stderr)).toMatch(/1 of \d+ checked blocks differ \(the first at offset 12582912\)/)
    expect(sha256File(nearly)).toBe(want)
    // a target of another size cannot hold it either: exit 6 too, naming it and both sizes
    const small = at('delta-small.img')
    execFileSync('truncate', ['-s', String(4 * MiB), small])
    const s = await vdsnap(['restore', 'web@latest', '--to', small, '--delta-from', web1], env)
    expect(s.code, s.stderr).toBe(6)
    expect(oneLine(s.stderr)).toBe(`vdsnap: error: ${small} does not hold that snapshot: it is 4.00 MiB (4194304 bytes), the snapshot's disk 16.0 MiB (${16 * MiB} bytes); nothing was written; restore in full without --delta-from`)
    expect(statSync(small).size).toBe(4 * MiB)
    expect(treeState(repo)).toEqual(before)
    noTemps(dir.path)
  })

  it('--delta-from on a target that holds the snapshot checks every block it keeps, then writes only the difference', async () => {
    const t = at('delta-good.img')
    execFileSync('cp', ['--sparse=always', web1Copy, t])
    const res = await vdsnapJson(['restore', 'web@latest', '--to', t, '--delta-from', web1], env)
    expect(sha256File(t)).toBe(sha256File(web))
    // the blocks changed between the two backups: three at 1 MiB, one at 5 MiB
    expect(res).toMatchObject({blocksWritten: 4, zeroBlocks: 0, targetBlocksChecked: DISK / BLOCK - 4})
  })

  it('--to infers the format from the extension and says so; a contradicting --format is refused', async () => {
    for (const [ext, fmt] of [['qcow2', 'qcow2'], ['vhd', 'vpc'], ['vhdx', 'vhdx'], ['vmdk', 'vmdk']]) {
      const out = at(`inferred.${ext}`)
      const r = await vdsnap(['restore', 'web@latest', '--to', out], env)
      expect(r.code, r.stderr).toBe(0)
      expect(r.stderr).toContain(`writing ${out} as ${ext} (from its .${ext} extension`)
      expect(qemuFormat(out)).toBe(fmt)
      const cmp = spawnSync('qemu-img', ['compare', '-f', 'raw', '-F', fmt, web, out], {encoding: 'utf8'})
      expect(cmp.status, cmp.stdout + cmp.stderr).toBe(0)
    }
    const before = treeState(repo)
    const raw = await vdsnap(['restore', 'web@latest', '--to', at('plain.img')], env)
    expect(raw.code).toBe(0)
    expect(qemuFormat(at('plain.img'))).toBe('raw')
    const bad = await vdsnap(['restore', 'web@latest', '--to', at('wrong.vhd'), '--format', 'qcow2'], env)
    expect(bad.code).toBe(2)
    expect(oneLine(bad.stderr)).toBe(`vdsnap: error: --format qcow2 contradicts the .vhd extension of ${at('wrong.vhd')} (vhd); leave out --format to write vhd, or name the target ${at('wrong.qcow2')}`)
    const bad2 = await vdsnap(['restore', 'web@latest', '--to', at('wrong.img'), '--format', 'vmdk'], env)
    expect(bad2.code).toBe(2)
    expect(oneLine(bad2.stderr)).toMatch(/--format vmdk contradicts the \.img extension .* \(raw\)/)
    expect(existsSync(at('wrong.vhd')) || existsSync(at('wrong.img'))).toBe(false)
    expect(treeState(repo)).toEqual(before)
    noTemps(dir.path)
  })

  it('raw bytes to a terminal are refused (stdout on a pty, through script(1))', async () => {
    const cmd = `${process.execPath} ${BIN} restore web@latest --to -`
    const r = spawnSync('script', ['-qec', cmd, '/dev/null'], {env: {...process.env, ...env}, encoding: 'utf8', timeout: 60_000})
    expect(r.status, r.stdout).toBe(2)
    expect(r.stdout).toContain('vdsnap: error: refusing to write a raw disk to a terminal (--to - with stdout on a TTY); pipe it into a command')
    expect(r.stdout.length).toBeLessThan(2000) // no disk bytes reached the terminal
  })

  it('directories and other non-files: restore --to DIR (with or without --force) or a character device, backup DIR and a Parallels bundle are usage errors', async () => {
    const before = treeState(repo)
    const d = at('a-dir')
    mkdirSync(d)
    writeFileSync(join(d, 'keep.txt'), 'keep')
    const inside = treeState(d)
    for (const force of [[], ['--force']]) {
      const r = await vdsnap(['restore', 'web@latest', '--to', d, ...force], env)
      expect(r.code, r.stderr).toBe(2)
      expect(oneLine(r.stderr)).toBe(`vdsnap: error: --to ${d} is a directory; give a file name inside it, e.g. --to ${join(d, 'web.img')}`)
    }
    const q = await vdsnap(['restore', 'web@latest', '--to', d, '--format', 'qcow2'], env)
    expect(q.code).toBe(2)
    expect(oneLine(q.stderr)).toContain(`e.g. --to ${join(d, 'web.qcow2')}`)
    expect(treeState(d)).toEqual(inside)
    for (const special of ['/dev/null', '/dev/zero']) {
      const c = await vdsnap(['restore', 'web@latest', '--to', special, '--force'], env)
      expect(c.code, c.stderr).toBe(2)
      expect(oneLine(c.stderr)).toBe(`vdsnap: error: --to ${special} is neither a regular file nor a block device; to stream the disk, use --to - and redirect or pipe stdout`)
      expect(statSync(special).isCharacterDevice()).toBe(true)
    }
    const b = await vdsnap(['backup', d], env)
    expect(b.code).toBe(2)
    expect(oneLine(b.stderr)).toBe(`vdsnap: error: ${d} is a directory, not a disk image; give the image file or block device itself`)
    const hdd = at('win.hdd')
    mkdirSync(hdd)
    writeFileSync(join(hdd, 'DiskDescriptor.xml'), '<Parallels_disk_image/>')
    writeFileSync(join(hdd, 'win.hdd.0.{5fbaabe3-6958-40ff-92a7-860e329aab41}.hds'), Buffer.alloc(4096))
    const p = await vdsnap(['backup', hdd], env)
    expect(p.code).toBe(2)
    expect(oneLine(p.stderr)).toMatch(/win\.hdd is a Parallels disk bundle \(a directory\), which vdsnap cannot read; convert it .*qemu-img convert -f parallels .*\.hds/)
    const pvm = at('win.pvm')
    mkdirSync(join(pvm, 'win.hdd'), {recursive: true})
    const v = await vdsnap(['backup', pvm], env)
    expect(v.code).toBe(2)
    expect(oneLine(v.stderr)).toMatch(/win\.pvm is a Parallels VM bundle \(a directory\) holding win\.hdd/)
    expect(treeState(repo)).toEqual(before)
  })
})
