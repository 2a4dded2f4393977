// vdsnap serve --from-archive: a snapshot served straight from a
// `vdsnap export` ZIP file, with no repository, to real NBD clients on a unix
// socket:
//  1. qemu-img convert from the export equals the disk; nbdinfo --map shows
//     the snapshot's zero blocks as holes, the same as when served from the
//     repository;
//  2. an encrypted archive needs the password (VDSNAP_PASSWORD): without it,
//     wrong, one line and exit 5; with it, the disk;
//  3. --overlay makes it writable: qemu-io writes read back, the archive file
//     is unchanged, and restore --overlay from the repository it came from
//     (or one it was imported into) applies them;
//  4. a split ZIP archive is served from all its volumes;
//  5. refusals, one line each: "-" (exit 2), a missing file (exit 8), a tar
//     archive and a portable archive (exit 2, naming the path and what to do).
import {spawnSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {readdirSync, readFileSync, writeFileSync} from 'node:fs'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {oneLine, vdsnap, vdsnapJson} from '../helpers/cli.js'
import {makeExt4Image, prng} from '../helpers/images.js'
import {startServe} from '../helpers/serve.js'
import {formatWorkspace, initRepo, MiB} from './format-fixtures.js'

const DISK = 16 * MiB
const PW = 'tape-pw'
const ws = formatWorkspace('vdsnap-serve-archive-')
const {at, env} = ws
const encEnv = {VDSNAP_REPOSITORY: at('enc-repo'), VDSNAP_PASSWORD: PW}
let snap = ''
let encSnap = ''
let original: Buffer

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, {cwd: ws.dir, encoding: 'utf8'})
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`)
  return r.stdout
}

const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex')

/** The holes nbdinfo --map reports, as [start, length]. */
const holes = (uri: string) =>
  run('nbdinfo', ['--map', uri])
    .split('\n')
    .filter((l) => /hole,zero/.test(l))
    .map((l) => l.trim().split(/\s+/).slice(0, 2).map(Number))

beforeAll(async () => {
  makeExt4Image(at('disk.raw'), DISK)
  const rnd = prng(11)
  const disk = readFileSync(at('disk.raw'))
  for (let i = 10 * MiB; i < 13 * MiB; i++) disk[i] = Math.floor(rnd() * 256)
  writeFileSync(at('disk.raw'), disk)
  original = disk
  await initRepo(ws)
  snap = (await vdsnapJson(['backup', at('disk.raw'), '--disk', 'web'], env)).snapshot
  expect((await vdsnap(['export', snap, '--to', at('a.zip')], env)).code).toBe(0)
  expect((await vdsnap(['init', '--block-size', '64KiB'], encEnv)).code).toBe(0)
  encSnap = (await vdsnapJson(['backup', at('disk.raw'), '--disk', 'web'], encEnv)).snapshot
  expect((await vdsnap(['export', encSnap, '--to', at('enc.zip')], encEnv)).code).toBe(0)
})
afterAll(() => ws.cleanup())

describe('serve --from-archive', () => {
  it('qemu-img convert from the export equals the disk; nbdinfo --map shows the same holes as the repository export', async () => {
    const repoHoles = await (async () => {
      const s = await startServe([snap, '--socket', at('repo.sock')], env)
      try {
        return holes(s.uri)
      } finally {
        expect((await s.stop()).code).toBe(0)
      }
    })()
    expect(repoHoles.reduce((n, [, len]) => n + len!, 0)).toBeGreaterThan(4 * MiB)
    const s = await startServe(['--from-archive', at('a.zip'), '--socket', at('a.sock'), '--name', 'tape'], {VDSNAP_REPOSITORY: at('nowhere')})
    try {
      expect(s.uri).toBe(`nbd+unix:///tape?socket=${at('a.sock')}`)
      run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', s.uri, at('out.raw')])
      expect(readFileSync(at('out.raw')).equals(original)).toBe(true)
      expect(holes(s.uri)).toEqual(repoHoles)
      for (const [start, len] of holes(s.uri)) expect(original.subarray(start, start! + len!).equals(Buffer.alloc(len!)), `hole at ${start}`).toBe(true)
      expect(run('nbdinfo', ['--json', s.uri])).toMatch(/"is_read_only": true/)
    } finally {
      const r = await s.stop('SIGINT')
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout).toMatch(new RegExp(`until SIGINT; \\d+ chunks read; from ${at('a.zip')}`))
    }
  })

  it('an encrypted archive needs the password: a wrong one is one line and exit 5; with VDSNAP_PASSWORD it serves the disk', async () => {
    const bad = await vdsnap(['serve', '--from-archive', at('enc.zip'), '--socket', at('bad.sock')], {VDSNAP_PASSWORD: 'nope', VDSNAP_REPOSITORY: ''})
    expect(bad.code).toBe(5)
    expect(oneLine(bad.stderr)).toMatch(/wrong password.*enc\.zip/)
    const s = await startServe(['--from-archive', at('enc.zip'), '--socket', at('enc.sock')], {VDSNAP_PASSWORD: PW, VDSNAP_REPOSITORY: ''})
    try {
      expect(s.uri).toBe(`nbd+unix:///web?socket=${at('enc.sock')}`)
      run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', s.uri, at('enc-out.raw')])
      expect(readFileSync(at('enc-out.raw')).equals(original)).toBe(true)
    } finally {
      expect((await s.stop()).code).toBe(0)
    }
  })

  it('--overlay: writes read back, the archive is unchanged, restore --overlay from the source repository (or one it was imported into) applies them', async () => {
    const before = sha(at('a.zip'))
    const s = await startServe(['--from-archive', at('a.zip'), '--socket', at('ov.sock'), '--overlay', at('web.vdov')], {VDSNAP_REPOSITORY: ''})
    try {
      expect(s.stderr()).toMatch(/writable, overlay/)
      run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 1M 64k', '-c', 'write -z 10M 4k', s.uri])
      run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', s.uri, at('ov-seen.raw')])
    } finally {
      expect((await s.stop()).code).toBe(0)
    }
    const want = Buffer.from(original)
    want.fill(0x5a, MiB, MiB + 64 * 1024)
    want.fill(0, 10 * MiB, 10 * MiB + 4096)
    expect(readFileSync(at('ov-seen.raw')).equals(want)).toBe(true)
    expect(sha(at('a.zip'))).toBe(before)
    const r = await vdsnap(['restore', snap, '--overlay', at('web.vdov'), '--to', at('ov-restored.raw')], env)
    expect(r.code, r.stderr).toBe(0)
    expect(readFileSync(at('ov-restored.raw')).equals(want)).toBe(true)
    // the archive imported into another repository keeps the snapshot id, so the overlay applies there too
    const other = {VDSNAP_REPOSITORY: at('imported'), VDSNAP_PASSWORD: undefined}
    expect((await vdsnap(['init', '--no-encryption'], other)).code).toBe(0)
    expect((await vdsnap(['import', at('a.zip')], other)).code).toBe(0)
    const i = await vdsnap(['restore', snap, '--overlay', at('web.vdov'), '--to', at('ov-imported.raw')], other)
    expect(i.code, i.stderr).toBe(0)
    expect(readFileSync(at('ov-imported.raw')).equals(want)).toBe(true)
  })

  it('serves a split ZIP archive from all its volumes (given in any order); one volume alone is refused with one line', async () => {
    const split = await vdsnap(['export', snap, '--to', at('v.zip'), '--split', '2MiB'], env)
    expect(split.code, split.stderr).toBe(0)
    const vols = readdirSync(ws.dir).filter((n) => /^v\.zip\.\d{3}$/.test(n)).map((n) => at(n))
    expect(vols.length).toBeGreaterThan(1)
    const alone = await vdsnap(['serve', '--from-archive', vols[0]!], {VDSNAP_REPOSITORY: ''})
    expect(alone.code).toBe(2)
    expect(oneLine(alone.stderr)).toMatch(/volume 1 of a split archive/)
    const s = await startServe(['--from-archive', ...vols.reverse(), '--socket', at('v.sock')], {VDSNAP_REPOSITORY: ''})
    try {
      run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', s.uri, at('v-out.raw')])
      expect(readFileSync(at('v-out.raw')).equals(original)).toBe(true)
    } finally {
      expect((await s.stop()).code).toBe(0)
    }
  })

  it('refuses -, a missing file, a tar and a portable archive with one line naming what to do', async () => {
    const none = {VDSNAP_REPOSITORY: ''}
    const pipe = await vdsnap(['serve', '--from-archive', '-'], none)
    expect(pipe.code).toBe(2)
    expect(oneLine(pipe.stderr)).toMatch(/pipe \(-\) cannot be read at random offsets/)
    const missing = await vdsnap(['serve', '--from-archive', at('missing.zip')], none)
    expect(missing.code).toBe(8)
    expect(oneLine(missing.stderr)).toContain(at('missing.zip'))
    expect((await vdsnap(['export', snap, '--to', at('a.tar'), '--archive-format', 'tar'], env)).code).toBe(0)
    const tar = await vdsnap(['serve', '--from-archive', at('a.tar')], none)
    expect(tar.code).toBe(2)
    expect(oneLine(tar.stderr)).toMatch(new RegExp(`${at('a.tar')} is a tar archive`))
    expect((await vdsnap(['export', snap, '--to', at('p.zip'), '--portable'], env)).code).toBe(0)
    const portable = await vdsnap(['serve', '--from-archive', at('p.zip')], none)
    expect(portable.code).toBe(2)
    expect(oneLine(portable.stderr)).toMatch(new RegExp(`${at('p.zip')} is a portable archive`))
    expect(portable.stderr).toMatch(/unzip|vdsnap import/)
    const both = await vdsnap(['serve', snap, '--from-archive', at('a.zip')], none)
    expect(both.code).toBe(2)
    expect(oneLine(both.stderr)).toMatch(/give no snapshot argument/)
  })
})
