// Bad input and bad days, through the CLI: each gets a one-line error, its
// documented exit code, and leaves the repository's snapshots as they were.
import {execFileSync, spawn} from 'node:child_process'
import {existsSync, mkdirSync, readdirSync, readFileSync, truncateSync, writeFileSync} from 'node:fs'
import {hostname} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {BIN, vdsnap, vdsnapJson} from '../helpers/cli.js'
import {makeExt4Image, prng, randomAt, sha256File, tempDir} from '../helpers/images.js'

const MiB = 1024 * 1024

function files(dir: string): string[] {
  const out: string[] = []
  const walk = (d: string) => {
    for (const e of readdirSync(d, {withFileTypes: true})) {
      const p = join(d, e.name)
      if (e.isDirectory()) walk(p)
      else out.push(p)
    }
  }
  if (existsSync(dir)) walk(dir)
  return out.sort()
}

function oneLine(stderr: string): string {
  const lines = stderr.trim().split('\n').filter((l) => l.includes('vdsnap: error'))
  expect(lines.length).toBe(1)
  return lines[0]!
}

describe('bad input and failures', () => {
  const dir = tempDir()
  const repo = join(dir.path, 'repo')
  const img = join(dir.path, 'disk.img')
  const env = {VDSNAP_REPOSITORY: repo, VDSNAP_PASSWORD: 'right'}
  let first = ''

  beforeAll(async () => {
    makeExt4Image(img, 32 * MiB)
    expect((await vdsnap(['init', '--block-size', '64KiB'], env)).code).toBe(0)
    first = (await vdsnapJson(['backup', img], env)).snapshot
  })
  afterAll(() => dir.cleanup())

  it('wrong password: exit 5, one line', async () => {
    const r = await vdsnap(['snapshots'], {...env, VDSNAP_PASSWORD: 'wrong'})
    expect(r.code).toBe(5)
    expect(oneLine(r.stderr)).toMatch(/wrong password/)
  })

  it('no password and no TTY: exit 5 without waiting for a prompt', async () => {
    const r = await vdsnap(['snapshots'], {VDSNAP_REPOSITORY: repo, VDSNAP_PASSWORD: undefined})
    expect(r.code).toBe(5)
    expect(oneLine(r.stderr)).toMatch(/VDSNAP_PASSWORD/)
  })

  it('password from a file and from a command', async () => {
    const pw = join(dir.path, 'pw')
    writeFileSync(pw, 'right\n')
    expect((await vdsnap(['snapshots', '--password-file', pw], {VDSNAP_REPOSITORY: repo, VDSNAP_PASSWORD: undefined})).code).toBe(0)
    expect((await vdsnap(['snapshots'], {VDSNAP_REPOSITORY: repo, VDSNAP_PASSWORD: undefined, VDSNAP_PASSWORD_COMMAND: `cat ${pw}`})).code).toBe(0)
  })

  it('missing source: exit 8; missing repository: exit 8; no --repo: exit 2', async () => {
    const r = await vdsnap(['backup', join(dir.path, 'nope.img')], env)
    expect(r.code).toBe(8)
    expect(oneLine(r.stderr)).toMatch(/nope\.img does not exist/)
    const r2 = await vdsnap(['snapshots'], {...env, VDSNAP_REPOSITORY: join(dir.path, 'norepo')})
    expect(r2.code).toBe(8)
    expect(oneLine(r2.stderr)).toMatch(/no vdsnap repository/)
    const r3 = await vdsnap(['snapshots'], {VDSNAP_REPOSITORY: undefined})
    expect(r3.code).toBe(2)
  })

  it('usage errors: exit 2, and --json puts the error on stdout too', async () => {
    const r = await vdsnap(['restore', 'latest', '--to', join(dir.path, 'x.img'), '--format', 'bogus'], env)
    expect(r.code).toBe(2)
    const j = await vdsnap(['restore', 'ffffffff', '--to', join(dir.path, 'x.img'), '--json'], env)
    expect(j.code).toBe(8)
    expect(JSON.parse(j.stdout).error.exitCode).toBe(8)
  })

  it('a lock held by a live process: exit 4 after --lock-wait; unlock keeps live locks, --remove-all breaks them', async () => {
    mkdirSync(join(repo, 'locks'), {recursive: true})
    const stamp = new Date().toISOString()
    const lock = {host: hostname(), pid: process.pid, exclusive: true, command: 'prune', created: stamp, refreshed: stamp}
    writeFileSync(join(repo, 'locks', 'live'), JSON.stringify(lock))
    const t0 = Date.now()
    const r = await vdsnap(['backup', img, '--lock-wait', '2s'], env)
    expect(r.code).toBe(4)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2000)
    expect(oneLine(r.stderr)).toMatch(/locked exclusively by "prune"/)
    expect((await vdsnapJson(['unlock'], env)).removed).toEqual([])
    expect((await vdsnapJson(['unlock', '--remove-all'], env)).removed.length).toBe(1)
    // a lock whose process is gone is stale: ignored by backup, removed by unlock
    writeFileSync(join(repo, 'locks', 'dead'), JSON.stringify({...lock, pid: 2 ** 22 + 12345}))
    const b = await vdsnap(['backup', img, '--dry-run'], env)
    expect(b.code, b.stderr).toBe(0)
    expect((await vdsnapJson(['unlock'], env)).removed.length).toBe(1)
  })

  it('--dry-run stores nothing', async () => {
    const before = files(repo)
    randomAt(img, 5 * MiB, 300_000)
    const r = await vdsnapJson(['backup', img, '--dry-run'], env)
    expect(r.snapshot).toBeNull()
    expect(r.bytesNew).toBeGreaterThan(0)
    expect(files(repo)).toEqual(before)
  })

  it('a corrupt chunk is found by check and refused by restore, naming the snapshot', async () => {
    const snap = await vdsnapJson(['backup', img], env)
    const chunks = files(join(repo, 'chunks'))
    const victim = chunks[Math.floor(chunks.length / 2)]!
    const saved = readFileSync(victim)
    const bad = Buffer.from(saved)
    bad[bad.length - 20] ^= 0xff
    writeFileSync(victim, bad)
    try {
      const c = await vdsnap(['check', '--read-data'], env)
      expect(c.code).toBe(6)
      expect(c.stdout).toMatch(/corrupt/)
      expect(c.stdout).toContain(snap.snapshot.slice(0, 8))
      const out = join(dir.path, 'restored.img')
      const r = await vdsnap(['restore', snap.snapshot, '--to', out], env)
      expect(r.code).toBe(6)
      expect(oneLine(r.stderr)).toMatch(/failed authentication|corrupt/)
      expect(existsSync(out)).toBe(false)
      expect(readdirSync(dir.path).filter((n) => n.includes('vdsnap-'))).toEqual([])
    } finally {
      writeFileSync(victim, saved)
    }
    expect((await vdsnap(['check', '--read-data'], env)).code).toBe(0)
  })

  it('a missing chunk and a truncated index are found by check (exit 6)', async () => {
    const chunk = files(join(repo, 'chunks'))[0]!
    const saved = readFileSync(chunk)
    execFileSync('rm', [chunk])
    const c = await vdsnap(['check'], env)
    expect(c.code).toBe(6)
    expect(c.stdout).toMatch(/missing/)
    writeFileSync(chunk, saved)
    const index = files(join(repo, 'indexes'))[0]!
    const ix = readFileSync(index)
    truncateSync(index, Math.floor(ix.length / 2))
    const c2 = await vdsnap(['check'], env)
    expect(c2.code).toBe(6)
    const r = await vdsnap(['restore', first, '--to', join(dir.path, 'r2.img')], env)
    expect([6]).toContain(r.code)
    writeFileSync(index, ix)
    expect((await vdsnap(['check'], env)).code).toBe(0)
  })

  it('pre-hook failure stores nothing (exit 7); the post-hook still runs', async () => {
    const marker = join(dir.path, 'post-ran')
    const before = (await vdsnapJson<any[]>(['snapshots'], env)).length
    const r = await vdsnap(['backup', img, '--pre-hook', 'exit 3', '--post-hook', `echo "$VDSNAP_DISK" > ${marker}`], env)
    expect(r.code).toBe(7)
    expect(oneLine(r.stderr)).toMatch(/pre-hook/)
    expect(readFileSync(marker, 'utf8').trim()).toBe('disk')
    expect((await vdsnapJson<any[]>(['snapshots'], env)).length).toBe(before)
  })

  it('a lying --changed-blocks file is caught by the sample check (exit 3) and the snapshot is still right', async () => {
    await vdsnapJson(['backup', img], env)
    randomAt(img, 20 * MiB, 2 * MiB) // a big change the file does not mention
    const cb = join(dir.path, 'changes.json')
    writeFileSync(cb, JSON.stringify([{offset: 0, length: 4096}]))
    const r = await vdsnap(['backup', img, '--changed-blocks', cb, '--json'], env)
    expect(r.code).toBe(3)
    const res = JSON.parse(r.stdout)
    expect(res.warnings.join(' ')).toMatch(/missed a change/)
    const out = join(dir.path, 'lied.img')
    expect((await vdsnap(['restore', res.snapshot, '--to', out], env)).code).toBe(0)
    expect(sha256File(out)).toBe(sha256File(img))
  })

  it('an honest --changed-blocks file narrows the read', async () => {
    randomAt(img, 3 * MiB, 100_000)
    const cb = join(dir.path, 'changes2.json')
    writeFileSync(cb, JSON.stringify([{offset: 3 * MiB, length: 100_000}]))
    const res = await vdsnapJson(['backup', img, '--changed-blocks', cb], env)
    expect(res.bytesRead).toBeLessThanOrEqual(3 * 64 * 1024)
    expect(res.changedBlocks).toBe(2)
    const out = join(dir.path, 'honest.img')
    expect((await vdsnap(['restore', res.snapshot, '--to', out], env)).code).toBe(0)
    expect(sha256File(out)).toBe(sha256File(img))
  })
})

describe('kill -9 in the middle of backups', () => {
  const dir = tempDir()
  const repo = join(dir.path, 'repo')
  const img = join(dir.path, 'big.img')
  const env = {VDSNAP_REPOSITORY: repo, VDSNAP_PASSWORD: 'pw'}
  afterAll(() => dir.cleanup())

  it('leaves check clean, and the next backup reuses what was written', async () => {
    execFileSync('truncate', ['-s', String(48 * MiB), img])
    randomAt(img, 0, 40 * MiB)
    expect((await vdsnap(['init', '--block-size', '64KiB'], env)).code).toBe(0)
    const rnd = prng(42)
    // The upload limit (16 MiB/s for 40 MiB) keeps each run going for a few
    // seconds, so the kill lands mid-backup however fast the machine is.
    for (let i = 0; i < 4; i++) {
      const child = spawn(process.execPath, [BIN, 'backup', img, '--limit-upload', '16MiB'], {env: {...process.env, ...env}, stdio: 'ignore'})
      const closed = new Promise<NodeJS.Signals | null>((r) => child.on('close', (_code, signal) => r(signal)))
      await new Promise((r) => setTimeout(r, 300 + rnd() * 1200))
      child.kill('SIGKILL')
      expect(await closed, `backup run ${i} finished before the kill`).toBe('SIGKILL')
      const c = await vdsnap(['check'], env)
      expect(c.code, c.stdout + c.stderr).toBe(0)
    }
    // Complete chunks only: a kill mid-write leaves a temporary file (prune removes it).
    const stored = files(join(repo, 'chunks')).filter((f) => /\/[0-9a-f]{64}$/.test(f)).length
    expect(stored).toBeGreaterThan(0)
    const res = await vdsnapJson(['backup', img], env)
    expect(res.newChunks).toBe(640 - stored)
    const out = join(dir.path, 'out.img')
    expect((await vdsnap(['restore', 'latest', '--to', out], env)).code).toBe(0)
    expect(sha256File(out)).toBe(sha256File(img))
    expect((await vdsnap(['check', '--read-data'], env)).code).toBe(0)
  })
})

function canMountTmpfs(): boolean {
  const probe = tempDir('vdsnap-mnt-')
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', probe.path], {stdio: 'ignore'})
    execFileSync('umount', [probe.path])
    return true
  } catch {
    return false
  } finally {
    probe.cleanup()
  }
}

describe.skipIf(!canMountTmpfs())('a full disk at the repository', () => {
  const dir = tempDir()
  const mnt = join(dir.path, 'small')
  const repo = join(mnt, 'repo')
  const img = join(dir.path, 'disk.img')
  const env = {VDSNAP_REPOSITORY: repo, VDSNAP_PASSWORD: 'pw'}
  afterAll(() => {
    try {
      execFileSync('umount', [mnt])
    } catch {}
    dir.cleanup()
  })

  it('fails with exit 7 and a one-line error; earlier snapshots stay whole', async () => {
    mkdirSync(mnt)
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', mnt])
    execFileSync('truncate', ['-s', String(16 * MiB), img])
    randomAt(img, 0, 2 * MiB)
    expect((await vdsnap(['init'], env)).code).toBe(0)
    const ok = await vdsnapJson(['backup', img], env)
    const hash = sha256File(img)
    randomAt(img, 4 * MiB, 10 * MiB)
    const r = await vdsnap(['backup', img], env)
    expect(r.code).toBe(7)
    expect(oneLine(r.stderr)).toMatch(/no space left/)
    const snaps = await vdsnapJson<any[]>(['snapshots'], env)
    expect(snaps.map((s) => s.id)).toEqual([ok.snapshot])
    expect(files(repo).filter((f) => f.includes('.tmp-'))).toEqual([])
    const out = join(dir.path, 'out.img')
    expect((await vdsnap(['restore', ok.snapshot, '--to', out], env)).code).toBe(0)
    expect(sha256File(out)).toBe(hash)
  })
})
