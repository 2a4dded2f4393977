// prune against running backups and kill -9, end to end through the CLI:
// prune refusing or waiting while a backup holds its lock (before its first
// chunk, and mid-upload), a backup paused past the staleness limit while a
// prune ran committing nothing, and a prune killed with -9 mid-way then run
// again.
import {spawn} from 'node:child_process'
import {existsSync, readdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {BIN, vdsnap, vdsnapJson} from '../helpers/cli.js'
import {countFiles, makeExt4Image, prng, randomAt, sha256File, tempDir} from '../helpers/images.js'

const MiB = 1024 * 1024
const dir = tempDir()
afterAll(() => dir.cleanup())

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Chunk objects in the repository (a temporary file of a save cut short is not one). */
const countChunks = (repo: string) => countFiles(join(repo, 'chunks'))

describe('prune against backups and kill -9', () => {
  const repo = join(dir.path, 'prune-repo')
  const img = join(dir.path, 'p.img')
  const env = {VDSNAP_REPOSITORY: repo, VDSNAP_PASSWORD: undefined}

  beforeAll(async () => {
    makeExt4Image(img, 8 * MiB)
    expect((await vdsnap(['init', '--no-encryption', '--block-size', '64KiB'], env)).code).toBe(0)
  })

  it('refuses (exit 4) or waits while a backup holds its lock; nothing referenced is lost', async () => {
    await vdsnapJson(['backup', img, '--disk', 'p'], env)
    randomAt(img, 2 * MiB, 3 * MiB)
    const release = join(dir.path, 'release-backup')
    // the backup holds its shared lock until the test releases its pre-hook
    const hook = `i=0; while [ ! -e ${release} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done`
    const child = spawn(process.execPath, [BIN, 'backup', img, '--disk', 'p', '--pre-hook', hook, '--json', '--repo', repo], {stdio: ['ignore', 'pipe', 'pipe']})
    const out: Buffer[] = []
    child.stdout.on('data', (d) => out.push(d))
    const done = new Promise<number>((r) => child.on('close', (c) => r(c ?? -1)))
    while (!existsSync(join(repo, 'locks')) || readdirSync(join(repo, 'locks')).filter((f) => !f.startsWith('.')).length === 0) await new Promise((r) => setTimeout(r, 50))
    const refused = await vdsnap(['prune'], env)
    expect(refused.code).toBe(4)
    expect(refused.stderr).toMatch(/locked by "backup"/)
    // prune with --lock-wait: its "waiting ... for the lock" line is the known point; the backup still holds
    // its lock (its pre-hook waits for the release file), so prune cannot have finished there
    const prune = spawn(process.execPath, [BIN, 'prune', '--lock-wait', '60s', '--json', '--repo', repo], {stdio: ['ignore', 'pipe', 'pipe'], env: {...process.env, ...env}})
    const pruneOut: Buffer[] = []
    let pruneErr = ''
    let pruneExited = false
    prune.stdout.on('data', (d) => pruneOut.push(d))
    const pruneDone = new Promise<number>((r) => prune.on('close', (c) => ((pruneExited = true), r(c ?? -1))))
    await new Promise<void>((resolve, reject) => {
      prune.stderr.on('data', (d) => {
        pruneErr += d
        if (/waiting up to \S+ for the lock held by "backup"/.test(pruneErr)) resolve()
      })
      void pruneDone.then(() => reject(new Error(`prune ended without waiting: ${pruneErr}`)))
    })
    expect(pruneExited).toBe(false)
    expect(countFiles(join(repo, 'snapshots'))).toBe(1) // the backup has not committed
    writeFileSync(release, '')
    expect(await pruneDone, pruneErr).toBe(0)
    const waited = JSON.parse(Buffer.concat(pruneOut).toString())
    expect(await done).toBe(0)
    expect(waited.snapshots).toBe(2) // it ran after the backup committed
    const check = await vdsnapJson(['check', '--read-data'], env)
    expect(check.findings).toEqual([])
    const out2 = join(dir.path, 'p-restored.img')
    expect((await vdsnap(['restore', JSON.parse(Buffer.concat(out).toString()).snapshot, '--to', out2], env)).code).toBe(0)
    expect(sha256File(out2)).toBe(sha256File(img))
  })

  /** Starts a backup slowed by an upload limit; resolves once it has stored `chunks` new chunks (and no snapshot yet). */
  async function slowBackup(chunks: number) {
    const snapshots = countFiles(join(repo, 'snapshots'))
    const before = countChunks(repo)
    const child = spawn(process.execPath, [BIN, 'backup', img, '--disk', 'p', '--json', '--repo', repo, '--limit-upload', '512KiB'], {stdio: ['ignore', 'pipe', 'pipe']})
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (d) => out.push(d))
    child.stderr.on('data', (d) => err.push(d))
    const done = new Promise<{code: number | null; stdout: string; stderr: string}>((r) =>
      child.on('close', (code) => r({code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString()})),
    )
    while (countChunks(repo) < before + chunks) {
      if (child.exitCode !== null) throw new Error(`backup ended before writing ${chunks} chunks: ${Buffer.concat(err)}`)
      await sleep(20)
    }
    expect(countFiles(join(repo, 'snapshots'))).toBe(snapshots) // mid-upload: chunks, no index or manifest yet
    return {child, done, snapshots}
  }

  it('refuses (exit 4) or waits while a backup is mid-upload (chunks written, no index or manifest yet)', async () => {
    randomAt(img, 1 * MiB, 3 * MiB) // about 48 new 64 KiB chunks: 6 s at 512 KiB/s
    const {child, done, snapshots} = await slowBackup(8)
    const chunksNow = countChunks(repo)
    const refused = await vdsnap(['prune'], env)
    expect(refused.code, refused.stderr).toBe(4)
    expect(child.exitCode).toBeNull()
    expect(countChunks(repo)).toBeGreaterThanOrEqual(chunksNow) // none of the backup's chunks went
    const waited = await vdsnapJson(['prune', '--lock-wait', '120s'], env)
    const backup = await done
    expect(backup.code, backup.stderr).toBe(0)
    expect(waited.snapshots).toBe(snapshots + 1) // it ran only after the backup committed
    expect((await vdsnapJson(['check', '--read-data'], env)).findings).toEqual([])
    const restored = join(dir.path, 'p-mid-upload.img')
    expect((await vdsnap(['restore', JSON.parse(backup.stdout).snapshot, '--to', restored], env)).code).toBe(0)
    expect(sha256File(restored)).toBe(sha256File(img))
  })

  it('a backup paused past the staleness limit while a prune removed its chunks commits nothing (exit 4)', async () => {
    randomAt(img, 4 * MiB, 3 * MiB)
    const {child, done, snapshots} = await slowBackup(8)
    child.kill('SIGSTOP')
    try {
      // what another host sees of a lock not refreshed for 16 minutes (the limit is 15)
      const lockDir = join(repo, 'locks')
      const [lock] = readdirSync(lockDir).filter((f) => !f.startsWith('.'))
      const info = JSON.parse(readFileSync(join(lockDir, lock!), 'utf8'))
      writeFileSync(join(lockDir, lock!), JSON.stringify({...info, refreshed: new Date(Date.now() - 16 * 60_000).toISOString()}))
      const pruned = await vdsnapJson(['prune'], env) // the stale lock does not stop it
      expect(pruned.chunksRemoved).toBeGreaterThanOrEqual(8)
    } finally {
      child.kill('SIGCONT')
    }
    const backup = await done
    expect(backup.code, backup.stderr).toBe(4)
    expect(backup.stderr).toMatch(/lost the shared lock on .*: its lock file was replaced by another process; stopped before committing anything/)
    expect(countFiles(join(repo, 'snapshots'))).toBe(snapshots)
    expect((await vdsnapJson(['check', '--read-data'], env)).findings).toEqual([])
    const again = await vdsnapJson(['backup', img, '--disk', 'p'], env) // the re-run uploads what prune removed
    const restored = join(dir.path, 'p-after-pause.img')
    expect((await vdsnap(['restore', again.snapshot, '--to', restored], env)).code).toBe(0)
    expect(sha256File(restored)).toBe(sha256File(img))
    expect((await vdsnapJson(['check', '--read-data'], env)).findings).toEqual([])
  })

  it('a prune killed with -9 half-way leaves a clean repository, and a re-run finishes', async () => {
    const rnd = prng(9)
    for (let i = 0; i < 6; i++) {
      randomAt(img, Math.floor(rnd() * 3 * MiB), 4 * MiB)
      await vdsnapJson(['backup', img, '--disk', 'p'], env)
    }
    await vdsnapJson(['forget', '--keep-last', '1'], env)
    const before = countChunks(repo)
    const garbage = (await vdsnapJson(['prune', '--dry-run'], env)).chunksRemoved
    expect(garbage).toBeGreaterThan(200)
    // one deletion at a time (about 1 ms each) gives the poll below a margin
    // of hundreds of ms; the prune is frozen the moment its first deletion
    // shows, so the count taken then is the one the kill leaves
    const child = spawn(process.execPath, [BIN, 'prune', '--repo', repo, '--connections', '1'], {stdio: 'ignore'})
    const exited = new Promise<NodeJS.Signals | null>((r) => child.on('close', (_code, signal) => r(signal)))
    while (countChunks(repo) === before && child.exitCode === null) await new Promise((r) => setImmediate(r))
    child.kill('SIGSTOP')
    const mid = countChunks(repo)
    child.kill('SIGKILL')
    expect(await exited).toBe('SIGKILL') // it had not finished: killed, not exited
    expect(countChunks(repo)).toBe(mid)
    expect(mid).toBeLessThan(before)
    expect(mid).toBeGreaterThan(before - garbage) // really half-way: some garbage left
    const check = await vdsnapJson(['check'], env)
    expect(check.findings).toEqual([])
    const again = await vdsnapJson(['prune'], env) // the dead prune's lock is stale: same host, pid gone
    expect(again.chunksRemoved).toBe(mid - (before - garbage))
    expect(countChunks(repo)).toBe(before - garbage)
    const final = await vdsnapJson(['check', '--read-data'], env)
    expect(final.findings).toEqual([])
    expect(final.unreferencedChunks).toBe(0)
  })
})
