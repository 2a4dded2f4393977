// Locks in an operator's hands, through the CLI: a damaged lock file blocks
// nobody and `unlock` removes it by name; two commands started together
// never both fail with "locked"; a repository on a read-only mount is
// restored with --no-lock (and without it the error says so); prune and
// forget free space on a repository whose file system is full.
import {execFileSync, spawn} from 'node:child_process'
import {existsSync, mkdirSync, readdirSync, statfsSync, writeFileSync, openSync, writeSync, closeSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {BIN, oneLine, vdsnap, vdsnapJson, type RunResult} from '../helpers/cli.js'
import {randomAt, sha256File, tempDir} from '../helpers/images.js'
import {repoState} from '../helpers/repo-state.js'

const MiB = 1024 * 1024
const dir = tempDir()
afterAll(() => dir.cleanup())

const lockFiles = (repo: string) => (existsSync(join(repo, 'locks')) ? readdirSync(join(repo, 'locks')) : [])

function start(args: string[], env: Record<string, string | undefined>): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {env: {...process.env, ...env} as NodeJS.ProcessEnv, stdio: ['ignore', 'pipe', 'pipe']})
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (d) => out.push(d))
    child.stderr.on('data', (d) => err.push(d))
    child.on('close', (code) => resolve({code: code ?? -1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString()}))
  })
}

/** Null when this process may mount (root with CAP_SYS_ADMIN), else why not: those tests are skipped with it. */
function canMount(): string | null {
  const probe = join(dir.path, 'mount-probe')
  mkdirSync(probe, {recursive: true})
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', probe], {stdio: 'pipe'})
    execFileSync('umount', [probe])
    return null
  } catch (e) {
    return `cannot mount here (needs root with CAP_SYS_ADMIN): ${(e as Error).message.split('\n')[0]}`
  }
}
const mountProblem = canMount()
if (mountProblem) console.warn(`skipping the read-only and full file system tests: ${mountProblem}`)

describe('damaged lock files', () => {
  const repo = join(dir.path, 'damaged')
  const img = join(dir.path, 'd.img')
  const env = {VDSNAP_REPOSITORY: repo, VDSNAP_PASSWORD: undefined}

  beforeAll(async () => {
    writeFileSync(img, Buffer.alloc(0))
    randomAt(img, 0, 2 * MiB)
    expect((await vdsnap(['init', '--no-encryption', '--block-size', '64KiB'], env)).code).toBe(0)
    await vdsnapJson(['backup', img, '--disk', 'd'], env)
  })

  it('a fresh lock without "host" (or with a bad pid) blocks neither prune nor forget; unlock removes it and says which', async () => {
    const now = new Date().toISOString()
    mkdirSync(join(repo, 'locks'), {recursive: true})
    writeFileSync(join(repo, 'locks', 'nohost'), JSON.stringify({pid: 4242, exclusive: true, command: 'backup', created: now, refreshed: now}))
    writeFileSync(join(repo, 'locks', 'badpid'), JSON.stringify({host: 'elsewhere', pid: 'x', exclusive: false, command: 'backup', created: now, refreshed: now}))
    const pruned = await vdsnap(['prune'], env)
    expect(pruned.code, pruned.stderr).toBe(0)
    expect(pruned.stderr + pruned.stdout).not.toMatch(/undefined/)
    const forgot = await vdsnap(['forget', '--keep-last', '5'], env)
    expect(forgot.code, forgot.stderr).toBe(0)
    const check = await vdsnapJson(['check'], env)
    expect(check.staleLocks).toBe(2)
    const unlock = await vdsnap(['unlock'], env)
    expect(unlock.code, unlock.stderr).toBe(0)
    expect(unlock.stdout.trim().split('\n').sort()).toEqual([
      'removed unreadable lock locks/badpid (it has a bad "pid")',
      'removed unreadable lock locks/nohost (it has no "host")',
    ])
    expect(lockFiles(repo)).toEqual([])
    expect((await vdsnap(['unlock'], env)).stdout.trim()).toBe('no locks removed')
  })

  it('a live lock is named in full: command, pid, host and time, never "undefined"', async () => {
    const release = join(dir.path, 'release')
    const hook = `i=0; while [ ! -e ${release} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done`
    const backup = start(['backup', img, '--disk', 'd', '--pre-hook', hook, '--repo', repo], env)
    while (lockFiles(repo).filter((f) => !f.startsWith('.')).length === 0) await new Promise((r) => setTimeout(r, 50))
    const before = repoState(repo)
    const refused = await vdsnap(['prune'], env)
    writeFileSync(release, '')
    expect(refused.code).toBe(4)
    expect(oneLine(refused.stderr)).toMatch(/^vdsnap: error: repository .* is locked by "backup" \(pid \d+ on \S+, since \d{4}-\d\d-\d\dT[\d:.]+Z\); wait for it/)
    expect(refused.stderr).not.toMatch(/undefined/)
    expect(repoState(repo)).toEqual(before)
    expect((await backup).code).toBe(0)
  })
})

describe('two commands whose locks collide', () => {
  const repo = join(dir.path, 'collide')
  const img = join(dir.path, 'c.img')
  const env = {VDSNAP_REPOSITORY: repo, VDSNAP_PASSWORD: undefined}

  beforeAll(async () => {
    writeFileSync(img, Buffer.alloc(0))
    randomAt(img, 0, 1 * MiB)
    expect((await vdsnap(['init', '--no-encryption', '--block-size', '64KiB'], env)).code).toBe(0)
  })

  it('backup and prune started together, 10 times: never both "locked" (exit 4)', async () => {
    const outcomes: string[] = []
    for (let i = 0; i < 10; i++) {
      const [b, p] = await Promise.all([start(['backup', img, '--disk', 'c', '--json'], env), start(['prune', '--json'], env)])
      outcomes.push(`${b.code}/${p.code}`)
      expect([b.code, p.code], `${b.stderr}${p.stderr}`).not.toEqual([4, 4])
      for (const r of [b, p]) expect([0, 4], r.stderr).toContain(r.code)
    }
    expect(lockFiles(repo)).toEqual([])
    expect((await vdsnapJson(['check', '--read-data'], env)).findings).toEqual([])
    console.log(`backup/prune exit codes: ${outcomes.join(' ')}`)
  })
})

describe.skipIf(mountProblem !== null)('a repository on a read-only mount', () => {
  const rw = join(dir.path, 'rw-repo')
  const ro = join(dir.path, 'ro-repo')
  const img = join(dir.path, 'r.img')
  const env = {VDSNAP_PASSWORD: undefined, VDSNAP_REPOSITORY: undefined}

  beforeAll(async () => {
    writeFileSync(img, Buffer.alloc(0))
    randomAt(img, 0, 2 * MiB)
    expect((await vdsnap(['init', '--no-encryption', '--block-size', '64KiB', '--repo', rw], env)).code).toBe(0)
    await vdsnapJson(['backup', img, '--disk', 'r', '--repo', rw], env)
    mkdirSync(ro)
    execFileSync('mount', ['--bind', rw, ro])
    execFileSync('mount', ['-o', 'remount,ro,bind', ro])
  })
  afterAll(() => {
    execFileSync('umount', [ro])
  })

  it('restore without --no-lock: one line suggesting it, exit 7, nothing written; with it: byte-identical', async () => {
    const before = repoState(rw)
    const target = join(dir.path, 'r-restored.img')
    const refused = await vdsnap(['restore', 'latest', '--to', target, '--repo', ro], env)
    expect(refused.code).toBe(7)
    expect(oneLine(refused.stderr)).toBe(`vdsnap: error: cannot write a lock file in ${ro}: its file system is mounted read-only; it can be read without a lock: add --no-lock`)
    expect(existsSync(target)).toBe(false)
    const restored = await vdsnap(['restore', 'latest', '--to', target, '--repo', ro, '--no-lock'], env)
    expect(restored.code, restored.stderr).toBe(0)
    expect(sha256File(target)).toBe(sha256File(img))
    expect(repoState(rw)).toEqual(before)
  })

  it('snapshots, check and stats read it with --no-lock; backup names why it cannot, and has no --no-lock', async () => {
    expect((await vdsnapJson(['check', '--read-data', '--no-lock', '--repo', ro], env)).findings).toEqual([])
    expect(await vdsnapJson(['snapshots', '--no-lock', '--repo', ro], env)).toHaveLength(1)
    expect((await vdsnapJson(['stats', '--no-lock', '--repo', ro], env)).snapshots).toBe(1)
    const backup = await vdsnap(['backup', img, '--disk', 'r', '--repo', ro], env)
    expect(backup.code).toBe(7)
    expect(oneLine(backup.stderr)).toMatch(/its file system is mounted read-only; "backup" writes to the repository: make it writable, or use a read-only command with --no-lock$/)
    const noLockBackup = await vdsnap(['backup', img, '--no-lock', '--repo', ro], env)
    expect(noLockBackup.code).toBe(2) // a flag backup does not have
  })
})

/** Fills the file system of `dir` to the last byte (a file of every free block, then single bytes). */
function fill(path: string): void {
  const fd = openSync(path, 'w')
  const block = Buffer.alloc(64 * 1024, 0x5a)
  try {
    for (const size of [block.length, 4096, 1]) {
      for (let i = 0; i < 1e6; i++) {
        try {
          writeSync(fd, block, 0, size)
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOSPC') break
          throw e
        }
      }
    }
  } finally {
    closeSync(fd)
  }
}

describe.skipIf(mountProblem !== null)('a repository whose file system is full', () => {
  const mnt = join(dir.path, 'full')
  const repo = join(mnt, 'repo')
  const a = join(dir.path, 'fa.img')
  const b = join(dir.path, 'fb.img')
  const env = {VDSNAP_REPOSITORY: repo, VDSNAP_PASSWORD: undefined}
  const free = () => statfsSync(mnt).bavail * statfsSync(mnt).bsize

  beforeAll(async () => {
    mkdirSync(mnt)
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mnt])
    for (const [img, seed] of [[a, 1], [b, 2]] as const) {
      writeFileSync(img, Buffer.alloc(0))
      randomAt(img, 0, 2 * MiB + seed * 4096)
    }
    expect((await vdsnap(['init', '--no-encryption', '--block-size', '64KiB'], env)).code).toBe(0)
    await vdsnapJson(['backup', a, '--disk', 'a'], env)
    await vdsnapJson(['backup', b, '--disk', 'b'], env)
    fill(join(mnt, 'filler'))
  })
  afterAll(() => {
    execFileSync('umount', [mnt])
  })

  it('prune without the flag: one line saying how to go on, exit 7, nothing changed', async () => {
    expect(free()).toBe(0)
    const before = repoState(repo)
    const r = await vdsnap(['prune'], env)
    expect(r.code).toBe(7)
    expect(oneLine(r.stderr)).toBe(
      `vdsnap: error: cannot write a lock file in ${repo}: no space left on its file system; free a few KiB on that file system, or run again with --no-lock-if-full once you are sure no other vdsnap process uses the repository`,
    )
    expect(repoState(repo)).toEqual(before)
    const backup = await vdsnap(['backup', a, '--disk', 'a'], env)
    expect(oneLine(backup.stderr)).toMatch(/no space left on its file system; free space: "vdsnap forget --prune --no-lock-if-full" or "vdsnap prune --no-lock-if-full" work on a full repository$/)
  })

  it('forget --prune --no-lock-if-full frees the space; the other disk still restores', async () => {
    const snaps = await vdsnapJson<{id: string; disk: string}[]>(['snapshots', '--no-lock'], env)
    const idA = snaps.find((s) => s.disk === 'a')!.id
    const r = await vdsnap(['forget', idA, '--prune', '--no-lock-if-full', '--json'], env)
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/warning: cannot write a lock file in .*: no space left on its file system: going on without a lock \(--no-lock-if-full\)/)
    expect(free()).toBeGreaterThanOrEqual(2 * MiB)
    expect(lockFiles(repo)).toEqual([])
    expect((await vdsnapJson(['check', '--read-data'], env)).findings).toEqual([])
    const target = join(dir.path, 'fb-restored.img')
    expect((await vdsnap(['restore', 'b@latest', '--to', target], env)).code).toBe(0)
    expect(sha256File(target)).toBe(sha256File(b))
  })

  it('prune --no-lock-if-full on a full file system still refuses while another process holds a lock (exit 4)', async () => {
    const now = new Date().toISOString()
    writeFileSync(join(repo, 'locks', 'live'), JSON.stringify({host: 'elsewhere', pid: 7, exclusive: false, command: 'backup', created: now, refreshed: now}))
    fill(join(mnt, 'filler2'))
    const before = repoState(repo)
    const r = await vdsnap(['prune', '--no-lock-if-full'], env)
    expect(r.code).toBe(4)
    expect(oneLine(r.stderr)).toMatch(/is locked by "backup" \(pid 7 on elsewhere/)
    expect(repoState(repo)).toEqual(before)
  })
})
