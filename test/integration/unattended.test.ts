// Unattended operation end to end through the CLI: a job file with two
// disks and a copy where one disk fails (the failure hook fires, the other
// disk is still backed up), schedule --install against the real crontab of
// a throw-away user, prune refusing or waiting while a backup holds its
// lock, and a prune killed with -9 then run again.
import {execFileSync, spawn} from 'node:child_process'
import {existsSync, readdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {BIN, vdsnap, vdsnapJson} from '../helpers/cli.js'
import {makeExt4Image, prng, randomAt, sha256File, tempDir} from '../helpers/images.js'

const MiB = 1024 * 1024
const dir = tempDir()
afterAll(() => dir.cleanup())

function countChunks(repo: string): number {
  const root = join(repo, 'chunks')
  if (!existsSync(root)) return 0
  return readdirSync(root).reduce((n, d) => n + readdirSync(join(root, d)).filter((f) => !f.startsWith('.tmp-')).length, 0)
}

describe('run: a job file with two disks and a copy', () => {
  const main = join(dir.path, 'main')
  const offsite = join(dir.path, 'offsite')
  const a = join(dir.path, 'a.img')
  const b = join(dir.path, 'b.img')
  const jobs = join(dir.path, 'jobs.yaml')
  const hookOut = join(dir.path, 'hook.json')
  const log = join(dir.path, 'run.log')
  const env = {VDSNAP_PASSWORD: 'pw', VDSNAP_REPOSITORY: undefined}

  beforeAll(async () => {
    makeExt4Image(a, 8 * MiB)
    for (const r of [main, offsite]) expect((await vdsnap(['init', '--repo', r, '--block-size', '64KiB'], env)).code).toBe(0)
    writeFileSync(join(dir.path, 'pw'), 'pw\n')
    writeFileSync(jobs, `# two disks, one copy
jobs:
  nightly:
    repository: ${main}
    password: {file: ${join(dir.path, 'pw')}}
    disks:
      - {path: ${a}, name: a, tags: [nightly]}
      - {path: ${b}, name: b}
    copies:
      - repository: ${offsite}
        password: {env: OFFSITE_PW}
    retention: {keep-last: 2}
    check: {every: run, parts: 3}
    schedule: "15 3 * * *"
`)
  })

  it('backs up the good disk, copies it, fires the failure hook and exits 3', async () => {
    const r = await vdsnap(['run', 'nightly', '--jobs', jobs, '--json', '--summary-file', join(dir.path, 'summary.json'), '--on-failure', `cat > ${hookOut}`, '--log-file', log], {...env, OFFSITE_PW: 'pw'})
    expect(r.code, r.stderr).toBe(3)
    const summary = JSON.parse(r.stdout)
    expect(JSON.parse(readFileSync(join(dir.path, 'summary.json'), 'utf8'))).toEqual(summary)
    expect(JSON.parse(readFileSync(hookOut, 'utf8'))).toEqual(summary)
    const job = summary.jobs[0]
    expect(job.disks.map((d: any) => [d.name, d.ok])).toEqual([['a', true], ['b', false]])
    expect(job.disks[0]).toMatchObject({indexKind: 'full', chainLength: 0})
    expect(job.disks[0].bytesRead).toBeGreaterThan(0)
    expect(job.disks[1].error.exitCode).toBe(8)
    expect(job.copies).toEqual([expect.objectContaining({ok: true, copied: 1})])
    expect(job.check.detail.subset).toBe('1/3')
    const offsiteSnaps = await vdsnapJson<any[]>(['snapshots', '--repo', offsite], env)
    expect(offsiteSnaps.map((s) => s.id)).toEqual([job.disks[0].snapshot])
    const text = readFileSync(log, 'utf8')
    expect(text).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z job nightly: starting/m)
    expect(text).not.toMatch(/\x1b/)
  })

  it('with both disks present: exit 0, the success hook, retention and the next check part', async () => {
    makeExt4Image(b, 8 * MiB)
    for (let i = 0; i < 2; i++) {
      randomAt(a, 1 * MiB + i * 200_000, 100_000)
      const r = await vdsnap(['run', '--all', '--jobs', jobs, '--json', '--on-success', `cat > ${hookOut}`], {...env, OFFSITE_PW: 'pw'})
      expect(r.code, r.stderr).toBe(0)
      const job = JSON.parse(r.stdout).jobs[0]
      expect(job.disks.every((d: any) => d.ok)).toBe(true)
      expect(job.retention.ok).toBe(true)
      expect(job.check.detail.subset).toBe(`${i + 2}/3`)
    }
    expect(JSON.parse(readFileSync(hookOut, 'utf8')).exitCode).toBe(0)
    const snaps = await vdsnapJson<any[]>(['snapshots', '--repo', main, '--disk', 'a'], env)
    expect(snaps).toHaveLength(2) // keep-last 2
    const out = join(dir.path, 'a-restored.img')
    expect((await vdsnap(['restore', 'a@latest', '--repo', main, '--to', out], env)).code).toBe(0)
    expect(sha256File(out)).toBe(sha256File(a))
    expect((await vdsnap(['check', '--repo', main, '--read-data'], env)).code).toBe(0)
  })

  it('rejects a job file with a misspelt key, naming it', async () => {
    const bad = join(dir.path, 'bad.yaml')
    writeFileSync(bad, `jobs:\n  x:\n    repository: ${main}\n    disks:\n      - {path: ${a}, pre_hook: true}\n`)
    const r = await vdsnap(['run', 'x', '--jobs', bad], env)
    expect(r.code).toBe(2)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stderr).toMatch(/jobs\.x\.disks\[0\]\.pre_hook: unknown key/)
  })

  it('schedule --install writes the crontab of a throw-away user, idempotently; --remove takes it out', async () => {
    const user = `vdsnapt${process.pid}`
    execFileSync('useradd', ['--no-create-home', user])
    try {
      const list = () => execFileSync('crontab', ['-u', user, '-l'], {encoding: 'utf8'})
      execFileSync('crontab', ['-u', user, '-'], {input: 'MAILTO=""\n0 1 * * * true\n'})
      const printed = await vdsnap(['schedule', '--jobs', jobs])
      expect(printed.stdout).toMatch(new RegExp(`^15 3 \\* \\* \\* '.+' '.+run\\.js' run 'nightly' --jobs '${jobs}' --quiet$`, 'm'))
      for (let i = 0; i < 2; i++) expect((await vdsnap(['schedule', '--install', '--jobs', jobs, '--crontab-user', user])).code).toBe(0)
      const installed = list()
      expect(installed.startsWith('MAILTO=""\n0 1 * * * true\n')).toBe(true)
      expect(installed.match(/run 'nightly'/g)).toHaveLength(1)
      expect(installed).toContain(printed.stdout.trim())
      expect((await vdsnap(['schedule', '--remove', '--jobs', jobs, '--crontab-user', user])).code).toBe(0)
      expect(list()).toBe('MAILTO=""\n0 1 * * * true\n')
    } finally {
      execFileSync('crontab', ['-u', user, '-r'], {stdio: 'ignore'})
      execFileSync('userdel', [user])
    }
  })
})

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
    const waiting = vdsnapJson(['prune', '--lock-wait', '60s'], env)
    await new Promise((r) => setTimeout(r, 1500))
    writeFileSync(release, '')
    const waited = await waiting
    expect(await done).toBe(0)
    expect(waited.snapshots).toBe(2) // it ran after the backup committed
    const check = await vdsnapJson(['check', '--read-data'], env)
    expect(check.findings).toEqual([])
    const out2 = join(dir.path, 'p-restored.img')
    expect((await vdsnap(['restore', JSON.parse(Buffer.concat(out).toString()).snapshot, '--to', out2], env)).code).toBe(0)
    expect(sha256File(out2)).toBe(sha256File(img))
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
    const child = spawn(process.execPath, [BIN, 'prune', '--repo', repo], {stdio: 'ignore'})
    const exited = new Promise((r) => child.on('close', r))
    while (countChunks(repo) === before && child.exitCode === null) await new Promise((r) => setTimeout(r, 2))
    child.kill('SIGKILL')
    await exited
    const mid = countChunks(repo)
    expect(mid).toBeLessThan(before)
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
