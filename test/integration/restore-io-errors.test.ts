// Restore's I/O errors in the user's terms, through the CLI: each is one line
// that names the path given with --to (never the temporary file written
// first), says what to do, exits with its documented code, and leaves the
// repository and any existing target as they were. And a chunk that fails
// to verify points to the check that finds it.
import {execFileSync, spawnSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {BIN, oneLine, vdsnap, vdsnapJson} from '../helpers/cli.js'
import {sha256File, tempDir} from '../helpers/images.js'
import {treeState} from '../helpers/repo-state.js'

const MiB = 1024 * 1024
const root = process.getuid?.() === 0
const canUnshare = root && spawnSync('unshare', ['-m', 'true']).status === 0

function chunkFiles(repo: string): string[] {
  const out: string[] = []
  for (const d of readdirSync(join(repo, 'chunks'))) for (const f of readdirSync(join(repo, 'chunks', d))) out.push(join(repo, 'chunks', d, f))
  return out.sort()
}

describe('restore I/O errors', () => {
  const dir = tempDir()
  const repo = join(dir.path, 'repo')
  const disk = join(dir.path, 'web.img')
  const env = {VDSNAP_REPOSITORY: repo, VDSNAP_PASSWORD: 'pw'}
  let snap = ''
  const noTemps = (d: string) => expect(readdirSync(d).filter((n) => n.includes('.vdsnap-'))).toEqual([])

  beforeAll(async () => {
    writeFileSync(disk, Buffer.concat([randomBytes(2 * MiB), Buffer.alloc(2 * MiB)]))
    expect((await vdsnap(['init', '--block-size', '64KiB'], env)).code).toBe(0)
    snap = (await vdsnapJson(['backup', disk], env)).snapshot
  })
  afterAll(() => dir.cleanup())

  it('a missing target directory: exit 8, naming the directory and the path given', async () => {
    const before = treeState(repo)
    const out = join(dir.path, 'nope', 'web.img')
    const r = await vdsnap(['restore', 'web@latest', '--to', out], env)
    expect(r.code).toBe(8)
    const nope = join(dir.path, 'nope')
    expect(oneLine(r.stderr)).toBe(`vdsnap: error: creating ${out}: directory ${nope} does not exist; create it first (mkdir -p ${nope}) or choose another --to`)
    const q = await vdsnap(['restore', 'web@latest', '--to', join(nope, 'web.qcow2')], env)
    expect(q.code).toBe(8)
    expect(oneLine(q.stderr)).toContain(`creating ${join(nope, 'web.qcow2')}: directory ${nope} does not exist`)
    expect(oneLine(q.stderr)).not.toContain('.vdsnap-')
    expect(treeState(repo)).toEqual(before)
  })

  it.skipIf(!canUnshare)('a read-only file system: exit 7, naming the path given (tmpfs mounted ro in a private mount namespace)', () => {
    const mnt = join(dir.path, 'ro')
    mkdirSync(mnt)
    for (const name of ['web.img', 'web.vmdk']) {
      const out = join(mnt, name)
      const script = 'mount -t tmpfs -o ro,size=1m vdsnap-ro "$MNT" && exec "$NODE" "$BIN" restore web@latest --to "$OUT"'
      const r = spawnSync('unshare', ['-m', 'sh', '-c', script], {env: {...process.env, ...env, MNT: mnt, NODE: process.execPath, BIN, OUT: out}, encoding: 'utf8'})
      expect(r.status, r.stderr).toBe(7)
      expect(oneLine(r.stderr)).toBe(`vdsnap: error: creating ${out}: read-only file system; restore to a writable file system, or remount this one read-write`)
    }
  })

  it.skipIf(!canUnshare)('a target file system that fills up (8 MiB tmpfs, 12 MiB disk): exit 7, one line naming the path, no partial file; an existing target stays as it was', async () => {
    const big = join(dir.path, 'big.img')
    writeFileSync(big, randomBytes(12 * MiB))
    await vdsnapJson(['backup', big, '--disk', 'big'], env)
    const before = treeState(repo)
    const mnt = join(dir.path, 'full')
    mkdirSync(mnt)
    // A private mount namespace: the tmpfs goes away with the process, whatever happens to this test.
    // After the restore, the script lists what is left there: name, size and a hash of each file.
    const script = [
      'mount -t tmpfs -o size=8m vdsnap-full "$MNT" || exit 99',
      'printf "kept" > "$MNT/old.img"',
      '"$NODE" "$BIN" restore big@latest --quiet --to "$MNT/$NAME" $FORCE',
      'rc=$?',
      'cd "$MNT" && for f in $(ls -A); do echo "$f $(stat -c %s "$f") $(sha256sum < "$f" | cut -c1-16)"; done',
      'exit $rc',
    ].join('\n')
    const kept = `old.img 4 ${execFileSync('sha256sum', {input: 'kept'}).toString().slice(0, 16)}`
    for (const [name, force] of [['new.img', ''], ['old.img', '--force']] as const) {
      const r = spawnSync('unshare', ['-m', 'sh', '-c', script], {env: {...process.env, ...env, MNT: mnt, NAME: name, FORCE: force, NODE: process.execPath, BIN}, encoding: 'utf8'})
      expect(r.status, r.stderr).toBe(7)
      const out = join(mnt, name)
      expect(r.stderr.trim().split('\n')).toEqual([`vdsnap: error: writing ${out}: no space left on device; free space there or choose another target; the repository is unchanged`])
      // Nothing but the file that was there before: no temporary file, nothing renamed over it.
      expect(r.stdout.trim().split('\n')).toEqual([kept])
    }
    expect(treeState(repo)).toEqual(before)
  })

  it('an immutable target (chattr +i): exit 7 with --force and with --delta-from, naming it; it stays as it was', async (ctx) => {
    const out = join(dir.path, 'immutable.img')
    writeFileSync(out, Buffer.alloc(4 * MiB, 7))
    if (spawnSync('chattr', ['+i', out]).status !== 0) ctx.skip('chattr +i is not supported here (needs root on ext4/xfs/btrfs)')
    try {
      const before = treeState(repo)
      const want = sha256File(out)
      const r = await vdsnap(['restore', 'web@latest', '--to', out, '--force'], env)
      expect(r.code, r.stderr).toBe(7)
      expect(oneLine(r.stderr)).toMatch(new RegExp(`^vdsnap: error: replacing ${out}: operation not permitted; it or its directory may be immutable or append-only \\(see lsattr -d ${out} `))
      const d = await vdsnap(['restore', 'web@latest', '--to', out, '--delta-from', snap], env)
      expect(d.code, d.stderr).toBe(7)
      expect(oneLine(d.stderr)).toMatch(new RegExp(`^vdsnap: error: opening ${out}: operation not permitted; it or its directory may be immutable`))
      expect(sha256File(out)).toBe(want)
      expect(treeState(repo)).toEqual(before)
      noTemps(dir.path)
    } finally {
      execFileSync('chattr', ['-i', out])
    }
  })

  it('stdout closed early (| head -c 1): exit 7 and one line saying the disk is incomplete', () => {
    const r = spawnSync('bash', ['-c', 'set -o pipefail; "$NODE" "$BIN" restore web@latest --to - | head -c 1 > /dev/null'], {
      env: {...process.env, ...env, NODE: process.execPath, BIN},
      encoding: 'utf8',
    })
    expect(r.status, r.stderr).toBe(7)
    expect(oneLine(r.stderr)).toBe(
      'vdsnap: error: stdout was closed before the whole disk was written (the reading command exited early); what it received is not the whole disk: let the reader take all of it (e.g. dd of=..., not head)',
    )
  })

  it.each([
    ['encrypted', true],
    ['unencrypted', false],
  ])('a chunk that fails to verify (%s): plain check passes, restore says to run check --read-data, which finds it', async (_name, encrypted) => {
    const r2 = join(dir.path, `corrupt-${encrypted}`)
    const e2 = {VDSNAP_REPOSITORY: r2, VDSNAP_PASSWORD: 'pw'}
    expect((await vdsnap(['init', '--block-size', '64KiB', ...(encrypted ? [] : ['--no-encryption'])], e2)).code).toBe(0)
    await vdsnapJson(['backup', disk], e2)
    const victim = chunkFiles(r2)[3]!
    const bytes = readFileSync(victim)
    bytes[bytes.length - 40]! ^= 0x01
    writeFileSync(victim, bytes)
    expect((await vdsnap(['check'], e2)).code).toBe(0)
    const out = join(dir.path, `corrupt-${encrypted}.img`)
    const r = await vdsnap(['restore', 'web@latest', '--to', out], e2)
    expect(r.code, r.stderr).toBe(6)
    expect(oneLine(r.stderr)).toMatch(/; run "vdsnap check --read-data" to list damaged chunks/)
    expect(existsSync(out)).toBe(false)
    expect((await vdsnap(['check', '--read-data'], e2)).code).toBe(6)
  })
})
