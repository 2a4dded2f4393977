// Bad input and bad days, through the CLI: each gets a one-line error, its
// documented exit code, and leaves the repository as it was (every file's
// name, size, mtime and content compared before and after).
import {execFileSync, spawn} from 'node:child_process'
import {createHash} from 'node:crypto'
import {existsSync, mkdirSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync} from 'node:fs'
import {hostname} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {BIN, vdsnap, vdsnapJson, oneLine} from '../helpers/cli.js'
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

/** Every file of the repository: relative name → size, mtime and SHA-256. */
function repoState(dir: string): Record<string, string> {
  const state: Record<string, string> = {}
  for (const f of files(dir)) {
    const st = statSync(f)
    state[f.slice(dir.length + 1)] = `${st.size} ${st.mtimeMs} ${createHash('sha256').update(readFileSync(f)).digest('hex')}`
  }
  return state
}

/** Damages a file for the length of `body` and always puts it back. */
async function damaged(path: string, damage: (path: string) => void, body: () => Promise<void>): Promise<void> {
  const saved = readFileSync(path)
  damage(path)
  try {
    await body()
  } finally {
    writeFileSync(path, saved)
  }
}

function flipByte(path: string, at: (length: number) => number): void {
  const data = readFileSync(path)
  data[at(data.length)]! ^= 0x10
  writeFileSync(path, data)
}

interface CheckJson {
  findings: {kind: string; object: string; message: string; snapshots: string[]}[]
}

/** A live process (not gone, not a zombie nobody reaped: PID 1 in a container may never reap it). */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return false
  }
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

  it('wrong password: exit 5, one line, repository unchanged', async () => {
    const before = repoState(repo)
    const r = await vdsnap(['snapshots'], {...env, VDSNAP_PASSWORD: 'wrong'})
    expect(r.code).toBe(5)
    expect(oneLine(r.stderr)).toMatch(/wrong password/)
    const b = await vdsnap(['backup', img], {...env, VDSNAP_PASSWORD: 'wrong'})
    expect(b.code).toBe(5)
    expect(oneLine(b.stderr)).toMatch(/wrong password/)
    expect(repoState(repo)).toEqual(before)
  })

  it('no password and no TTY: exit 5 without waiting for a prompt, repository unchanged', async () => {
    const before = repoState(repo)
    const r = await vdsnap(['backup', img], {VDSNAP_REPOSITORY: repo, VDSNAP_PASSWORD: undefined})
    expect(r.code).toBe(5)
    expect(oneLine(r.stderr)).toMatch(/VDSNAP_PASSWORD/)
    expect(repoState(repo)).toEqual(before)
  })

  it('password from a file and from a command', async () => {
    const pw = join(dir.path, 'pw')
    writeFileSync(pw, 'right\n')
    expect((await vdsnap(['snapshots', '--password-file', pw], {VDSNAP_REPOSITORY: repo, VDSNAP_PASSWORD: undefined})).code).toBe(0)
    expect((await vdsnap(['snapshots'], {VDSNAP_REPOSITORY: repo, VDSNAP_PASSWORD: undefined, VDSNAP_PASSWORD_COMMAND: `cat ${pw}`})).code).toBe(0)
  })

  it('a password command that hangs is stopped at VDSNAP_PASSWORD_COMMAND_TIMEOUT (exit 5), with what it started', async () => {
    const before = repoState(repo)
    const pidFile = join(dir.path, 'sleeper.pid')
    const r = await vdsnap(['snapshots'], {
      VDSNAP_REPOSITORY: repo,
      VDSNAP_PASSWORD: undefined,
      VDSNAP_PASSWORD_COMMAND: `sleep 100 & echo $! > ${pidFile}; wait`,
      VDSNAP_PASSWORD_COMMAND_TIMEOUT: '1s',
    })
    expect(r.code).toBe(5)
    expect(oneLine(r.stderr)).toBe('vdsnap: error: VDSNAP_PASSWORD_COMMAND did not finish within 1 s; make it print the password and exit, or raise VDSNAP_PASSWORD_COMMAND_TIMEOUT')
    const sleeper = Number(readFileSync(pidFile, 'utf8'))
    expect(running(sleeper), "the command's child was left running").toBe(false)
    expect(repoState(repo)).toEqual(before)
  })

  it('a failing password command: exit 5 with the first line of its stderr; a bad time-out value is a usage error', async () => {
    const env2 = {VDSNAP_REPOSITORY: repo, VDSNAP_PASSWORD: undefined, VDSNAP_PASSWORD_COMMAND: 'echo; echo "vault: token expired" >&2; echo second line >&2; exit 3'}
    const r = await vdsnap(['snapshots'], env2)
    expect(r.code).toBe(5)
    expect(oneLine(r.stderr)).toBe('vdsnap: error: VDSNAP_PASSWORD_COMMAND failed (exit 3): vault: token expired; run it by hand to see why')
    const wrong = await vdsnap(['snapshots'], {...env2, VDSNAP_PASSWORD_COMMAND: 'echo wrong'})
    expect(wrong.code).toBe(5)
    expect(oneLine(wrong.stderr)).toMatch(/wrong password/)
    const t = await vdsnap(['snapshots'], {...env2, VDSNAP_PASSWORD_COMMAND_TIMEOUT: 'soon'})
    expect(t.code).toBe(2)
    expect(oneLine(t.stderr)).toMatch(/VDSNAP_PASSWORD_COMMAND_TIMEOUT="soon" is not a duration/)
  })

  it('missing source: exit 8; missing repository: exit 8; no --repo: exit 2; nothing written anywhere', async () => {
    const before = repoState(repo)
    const r = await vdsnap(['backup', join(dir.path, 'nope.img')], env)
    expect(r.code).toBe(8)
    expect(oneLine(r.stderr)).toMatch(/nope\.img does not exist/)
    const norepo = join(dir.path, 'norepo')
    const r2 = await vdsnap(['backup', img], {...env, VDSNAP_REPOSITORY: norepo})
    expect(r2.code).toBe(8)
    expect(oneLine(r2.stderr)).toMatch(/no vdsnap repository/)
    expect(existsSync(norepo)).toBe(false)
    const r3 = await vdsnap(['snapshots'], {VDSNAP_REPOSITORY: undefined})
    expect(r3.code).toBe(2)
    expect(oneLine(r3.stderr)).toMatch(/no repository given/)
    expect(repoState(repo)).toEqual(before)
  })

  it('a character device or FIFO as backup source: exit 2 with a hint to stream it with "backup -"; repository unchanged', async () => {
    const fifo = join(dir.path, 'pipe')
    execFileSync('mkfifo', [fifo])
    const before = repoState(repo)
    for (const src of ['/dev/null', fifo]) {
      const r = await vdsnap(['backup', src, '--disk', 'x'], env)
      expect(r.code, r.stderr).toBe(2)
      expect(oneLine(r.stderr)).toBe(`vdsnap: error: ${src} is neither a disk image file nor a block device; to back up a stream, pipe it in: vdsnap backup - --disk NAME --size BYTES < ${src}`)
    }
    expect(repoState(repo)).toEqual(before)
  })

  it('--lock-wait is refused (exit 2, one line) by commands that take no lock, and kept by those that do', async () => {
    const fresh = join(dir.path, 'never-created')
    const before = repoState(repo)
    for (const [argv, name] of [
      [['init'], 'init'], [['unlock'], 'unlock'], [['info', img], 'info'], [['snapshots'], 'snapshots'],
      [['key', 'list'], 'key list'], [['stats'], 'stats'],
    ] as const) {
      const r = await vdsnap([...argv, '--lock-wait', '1s'], argv[0] === 'init' ? {...env, VDSNAP_REPOSITORY: fresh} : env)
      expect(r.code, `${name}: ${r.stderr}`).toBe(2)
      expect(oneLine(r.stderr)).toBe(`vdsnap: error: --lock-wait does nothing with "${name}": it takes no repository lock; drop --lock-wait`)
    }
    expect(existsSync(fresh)).toBe(false)
    expect(repoState(repo)).toEqual(before)
    const p = await vdsnap(['prune', '--dry-run', '--lock-wait', '1s'], env)
    expect(p.code, p.stderr).toBe(0)
    const c = await vdsnap(['check', '--lock-wait', '1s'], env)
    expect(c.code, c.stderr).toBe(0)
  })

  it('usage errors: exit 2, and --json puts the error on stdout too; repository unchanged', async () => {
    const before = repoState(repo)
    const r = await vdsnap(['restore', 'latest', '--to', join(dir.path, 'x.img'), '--format', 'bogus'], env)
    expect(r.code).toBe(2)
    oneLine(r.stderr)
    const j = await vdsnap(['restore', 'ffffffff', '--to', join(dir.path, 'x.img'), '--json'], env)
    expect(j.code).toBe(8)
    expect(JSON.parse(j.stdout).error.exitCode).toBe(8)
    expect(existsSync(join(dir.path, 'x.img'))).toBe(false)
    expect(repoState(repo)).toEqual(before)
  })

  it('a lock held by a live process: exit 4 after --lock-wait; unlock keeps live locks, --remove-all breaks them', async () => {
    mkdirSync(join(repo, 'locks'), {recursive: true})
    const stamp = new Date().toISOString()
    const lock = {host: hostname(), pid: process.pid, exclusive: true, command: 'prune', created: stamp, refreshed: stamp}
    writeFileSync(join(repo, 'locks', 'live'), JSON.stringify(lock))
    const before = repoState(repo)
    randomAt(img, 9 * MiB, 70_000) // something a backup would store
    const t0 = Date.now()
    const r = await vdsnap(['backup', img, '--lock-wait', '2s'], env)
    expect(r.code).toBe(4)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2000)
    expect(oneLine(r.stderr)).toMatch(/locked exclusively by "prune"/)
    expect(repoState(repo)).toEqual(before)
    expect((await vdsnapJson(['unlock'], env)).removed).toEqual([])
    expect((await vdsnapJson(['unlock', '--remove-all'], env)).removed.length).toBe(1)
    // a lock whose process is gone is stale: ignored by backup, removed by unlock
    writeFileSync(join(repo, 'locks', 'dead'), JSON.stringify({...lock, pid: 2 ** 22 + 12345}))
    const b = await vdsnap(['backup', img, '--dry-run'], env)
    expect(b.code, b.stderr).toBe(0)
    expect((await vdsnapJson(['unlock'], env)).removed.length).toBe(1)
  })

  it('--dry-run stores nothing', async () => {
    const before = repoState(repo)
    randomAt(img, 5 * MiB, 300_000)
    const r = await vdsnapJson(['backup', img, '--dry-run'], env)
    expect(r.snapshot).toBeNull()
    expect(r.bytesNew).toBeGreaterThan(0)
    expect(repoState(repo)).toEqual(before)
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
      const before = repoState(repo)
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
      expect(repoState(repo)).toEqual(before)
    } finally {
      writeFileSync(victim, saved)
    }
    expect((await vdsnap(['check', '--read-data'], env)).code).toBe(0)
  })

  /** check finds `object` (exit 6); restoring a snapshot that needs it fails with exit 6 and one line matching `error`; nothing changes. */
  async function foundAndRefused(object: string, kind: string, why: RegExp, error: RegExp): Promise<void> {
    const before = repoState(repo)
    const c = await vdsnapJson<CheckJson>(['check'], env, 6)
    const finding = c.findings.find((f) => f.object === object)
    expect(finding, JSON.stringify(c.findings)).toBeDefined()
    expect(finding!.kind).toBe(kind)
    expect(finding!.message).toMatch(why)
    expect(finding!.snapshots.length).toBeGreaterThan(0)
    const text = await vdsnap(['check'], env)
    expect(text.code).toBe(6)
    expect(text.stdout).toContain(finding!.message)
    for (const snap of finding!.snapshots) {
      const out = join(dir.path, `refused-${snap.slice(0, 8)}.img`)
      const r = await vdsnap(['restore', snap, '--to', out], env)
      expect(r.code, r.stderr).toBe(6)
      expect(oneLine(r.stderr)).toMatch(error)
      expect(existsSync(out)).toBe(false)
    }
    expect(repoState(repo)).toEqual(before)
  }

  /** The snapshot whose index we damage, and the index file; `which` picks from the list. */
  async function indexOf(which: (snaps: {id: string; index: string}[]) => {id: string; index: string}) {
    const snap = which(await vdsnapJson<{id: string; index: string}[]>(['snapshots'], env))
    return {snap: snap.id, name: `indexes/${snap.index}`, path: join(repo, 'indexes', snap.index)}
  }

  it('a missing chunk is found by check (exit 6) and refused by restore, naming the chunk', async () => {
    const chunk = files(join(repo, 'chunks'))[0]!
    const name = chunk.slice(repo.length + 1)
    const id = name.slice(-64)
    await damaged(chunk, (p) => execFileSync('rm', [p]), () =>
      foundAndRefused(name, 'chunk-missing', /is missing/, new RegExp(`chunk ${id.slice(0, 16)}… is missing.*vdsnap check`)),
    )
    expect((await vdsnap(['check'], env)).code).toBe(0)
  })

  it('a truncated chunk (truncate -s 20) is found by a plain check (exit 6) and refused by restore', async () => {
    const chunks = files(join(repo, 'chunks'))
    const chunk = chunks[chunks.length - 1]!
    const name = chunk.slice(repo.length + 1)
    await damaged(chunk, (p) => truncateSync(p, 20), () =>
      foundAndRefused(name, 'chunk-corrupt', /is truncated \(20 bytes, .* at least \d+\)/, new RegExp(`${name} is truncated \\(20 bytes\\); run "vdsnap check --read-data"`)),
    )
    expect((await vdsnap(['check'], env)).code).toBe(0)
  })

  it('a truncated index is found by check (exit 6) and refused by restore of the snapshot that needs it', async () => {
    // The first snapshot is a full: its own index is the only one its restore reads.
    const ix = await indexOf((snaps) => snaps.find((s) => s.id === first)!)
    await damaged(ix.path, (p) => truncateSync(p, Math.floor(statSync(p).size / 2)), () =>
      foundAndRefused(ix.name, 'index', /failed authentication|truncated/, new RegExp(`${ix.name} (failed authentication \\(corrupt or tampered\\)|is truncated).*; run "vdsnap check"`)),
    )
    expect((await vdsnap(['check'], env)).code).toBe(0)
  })

  it('a bit flipped in an index is found by check (exit 6) and refused by restore', async () => {
    const ix = await indexOf((snaps) => snaps[snaps.length - 1]!)
    await damaged(ix.path, (p) => flipByte(p, (n) => Math.floor(n / 2)), async () => {
      await foundAndRefused(ix.name, 'index', /failed authentication/, new RegExp(`${ix.name} failed authentication \\(corrupt or tampered\\); run "vdsnap check"`))
    })
    expect((await vdsnap(['check', '--read-data'], env)).code).toBe(0)
  })

  it('pre-hook failure stores nothing (exit 7); the post-hook still runs', async () => {
    const marker = join(dir.path, 'post-ran')
    const before = repoState(repo)
    randomAt(img, 11 * MiB, 70_000)
    const r = await vdsnap(['backup', img, '--pre-hook', 'exit 3', '--post-hook', `echo "$VDSNAP_DISK" > ${marker}`], env)
    expect(r.code).toBe(7)
    expect(oneLine(r.stderr)).toMatch(/pre-hook/)
    expect(readFileSync(marker, 'utf8').trim()).toBe('disk')
    expect(repoState(repo)).toEqual(before)
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

describe('bad flags and arguments: exit 2 and one line saying what is wrong', () => {
  const env = {VDSNAP_REPOSITORY: '/nonexistent/vdsnap-repo', VDSNAP_PASSWORD: 'x'}
  it.each([
    [['backup', 'e.img', '--synthetic-full-every', '0'], '--synthetic-full-every must be a whole number ≥ 1 (got "0"); see "vdsnap backup --help"'],
    [['backup', 'e.img', '--synthetic-full-every=-3'], '--synthetic-full-every must be a whole number ≥ 1 (got "-3"); see "vdsnap backup --help"'],
    [['backup', 'e.img', '--synthetic-full-every', 'often'], '--synthetic-full-every must be a whole number (got "often"); see "vdsnap backup --help"'],
    [['snapshots', '--connections', '1000'], '--connections must be a whole number ≤ 256 (got "1000"); see "vdsnap snapshots --help"'],
    [['backup'], 'missing argument SOURCE (Disk image file, block device or NBD URL); see "vdsnap backup --help"'],
    [['backup', 'e.img', '--on-source-change', 'maybe'], 'Expected --on-source-change=maybe to be one of: warn, retry, fail; see "vdsnap backup --help"'],
    [['check', '--read-data', '--read-data-subset', '3/7'], '--read-data-subset=3/7 cannot also be provided when using --read-data; see "vdsnap check --help"'],
    [['key', 'add', '--bogus'], 'Nonexistent flag: --bogus; see "vdsnap key add --help"'],
  ])('vdsnap %j', async (args, message) => {
    const r = await vdsnap(args, env)
    expect(r.code).toBe(2)
    expect(r.stderr).toBe(`vdsnap: error: ${message}\n`)
    const j = await vdsnap([...args, '--json'], env)
    expect(j.code).toBe(2)
    expect(JSON.parse(j.stdout).error).toEqual({message, kind: 'usage', code: 'USAGE', exitCode: 2})
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
    // Complete chunks only: a kill mid-write leaves a temporary file (prune removes it).
    const complete = () => files(join(repo, 'chunks')).filter((f) => /\/[0-9a-f]{64}$/.test(f)).length
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
    // The upload limit (8 MiB/s for 40 MiB) keeps each run going for
    // seconds. Even runs are killed at a random moment after start (key
    // derivation, reading, hashing...); odd runs at a random moment after
    // they stored their first chunk, so some runs die mid-upload however
    // slow a loaded machine is to start them.
    for (let i = 0; i < 4; i++) {
      const before = complete()
      const child = spawn(process.execPath, [BIN, 'backup', img, '--limit-upload', '8MiB'], {env: {...process.env, ...env}, stdio: 'ignore'})
      let exited = false
      const closed = new Promise<NodeJS.Signals | null>((r) => child.on('close', (_code, signal) => ((exited = true), r(signal))))
      if (i % 2 === 1) {
        for (let t = 0; t < 600 && !exited && complete() === before; t++) await sleep(50)
        expect(complete(), `backup run ${i} stored no chunk`).toBeGreaterThan(before)
        await sleep(rnd() * 600)
      } else await sleep(300 + rnd() * 1200)
      child.kill('SIGKILL')
      expect(await closed, `backup run ${i} finished before the kill`).toBe('SIGKILL')
      const c = await vdsnap(['check'], env)
      expect(c.code, c.stdout + c.stderr).toBe(0)
    }
    const stored = complete()
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
    const before = repoState(repo)
    randomAt(img, 4 * MiB, 10 * MiB)
    const r = await vdsnap(['backup', img], env)
    expect(r.code).toBe(7)
    expect(oneLine(r.stderr)).toMatch(/no space left/)
    // Every file that was there is as it was; the only additions are whole
    // chunks the next backup reuses (prune removes them if it never comes).
    const after = repoState(repo)
    for (const [name, facts] of Object.entries(before)) expect(after[name], name).toBe(facts)
    for (const name of Object.keys(after).filter((n) => !(n in before))) expect(name).toMatch(/^chunks\/[0-9a-f]{2}\/[0-9a-f]{64}$/)
    const snaps = await vdsnapJson<any[]>(['snapshots'], env)
    expect(snaps.map((s) => s.id)).toEqual([ok.snapshot])
    expect(files(repo).filter((f) => f.includes('.tmp-'))).toEqual([])
    const out = join(dir.path, 'out.img')
    expect((await vdsnap(['restore', ok.snapshot, '--to', out], env)).code).toBe(0)
    expect(sha256File(out)).toBe(hash)
  })
})
