// Unattended operation end to end through the CLI: a job file with two
// disks and a copy where one disk fails (the failure hook fires, the other
// disk is still backed up), schedule --install against the real crontab of
// a throw-away user; a job file that fails to parse or names no such job
// still ending in a summary, hook and log line; a job's own summary file,
// hooks and log file; storage settings from the job file and from run's
// flags against s3rver and sshd; prune refusing or waiting while a backup
// holds its lock (before its first chunk, and mid-upload), a backup paused
// past the staleness limit while a prune ran committing nothing, and a
// prune killed with -9 mid-way then run again.
import {execFileSync, spawn} from 'node:child_process'
import {existsSync, readdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {BIN, vdsnap, vdsnapJson} from '../helpers/cli.js'
import {makeExt4Image, prng, randomAt, sha256File, tempDir} from '../helpers/images.js'
import {S3RVER_ENV, startS3, type TestS3} from '../helpers/s3.js'
import {haveSshd, startSshd, type TestSshd} from '../helpers/sshd.js'

const MiB = 1024 * 1024
const dir = tempDir()
afterAll(() => dir.cleanup())

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function countFiles(dir: string): number {
  return existsSync(dir) ? readdirSync(dir).filter((f) => !f.startsWith('.')).length : 0
}

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

describe('run: failures before any job, and outcome targets from the job file', () => {
  const repo = join(dir.path, 'targets-repo')
  const img = join(dir.path, 't.img')
  const env = {VDSNAP_PASSWORD: undefined, VDSNAP_REPOSITORY: undefined}
  const okJobs = () => `jobs:\n  x:\n    repository: ${repo}\n    disks: [{path: ${img}}]\n`

  beforeAll(async () => {
    makeExt4Image(img, 4 * MiB)
    expect((await vdsnap(['init', '--repo', repo, '--no-encryption', '--block-size', '64KiB'], env)).code).toBe(0)
  })

  it.each([
    ['a job file that is not YAML', 2, 'x', 'jobs: {a: [\n', /is not valid YAML: .*at line 2, column 1; see docs/],
    ['a misspelt key', 2, 'x', 'jobs:\n  x:\n    repository: /r\n    disks: [{path: /i, pre_hook: 1}]\n', /jobs\.x\.disks\[0\]\.pre_hook: unknown key/],
    ['an unknown job', 2, 'nope', null, /no job "nope" in .*; jobs there: x/],
    ['a missing job file', 8, 'x', undefined, /reading job file .*: no such file/],
  ] as const)('%s: exit %i, and the summary carries the error to stdout, --summary-file, --on-failure and the log', async (what, code, name, text, re) => {
    const tag = what.replace(/\W+/g, '-')
    const jobs = join(dir.path, `${tag}.yaml`)
    if (text !== undefined) writeFileSync(jobs, text ?? okJobs())
    const [sum, hook, log] = ['sum.json', 'hook.json', 'run.log'].map((f) => join(dir.path, `${tag}-${f}`))
    const r = await vdsnap(['run', name, '--jobs', jobs, '--json', '--quiet', '--summary-file', sum!, '--on-failure', `cat > ${hook}`, '--log-file', log!], env)
    expect(r.code, r.stderr).toBe(code)
    const summary = JSON.parse(r.stdout)
    expect(summary).toMatchObject({version: 1, exitCode: code, jobs: [], error: {exitCode: code, message: expect.stringMatching(re)}})
    expect(summary.error.message).not.toMatch(/:$|: ;/)
    expect(JSON.parse(readFileSync(sum!, 'utf8'))).toEqual(summary)
    expect(JSON.parse(readFileSync(hook!, 'utf8'))).toEqual(summary)
    expect(readFileSync(log!, 'utf8')).toMatch(new RegExp(`^\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z run: failed: ${summary.error.message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'))
    expect(r.stderr.trim().split('\n')).toEqual([`vdsnap: error: ${summary.error.message}`])
  })

  it('a job\'s own summary-file, hooks and log-file serve a plain "run JOB --jobs FILE"; the flags win over them', async () => {
    const jobs = join(dir.path, 'own-targets.yaml')
    // relative paths are relative to the job file's directory
    writeFileSync(jobs, `jobs:
  good:
    repository: ${repo}
    disks: [{path: ${img}, name: t}]
    summary-file: good.json
    log-file: good.log
    on-success: cat > ${join(dir.path, 'good-hook.json')}
    on-failure: "echo should not run > ${join(dir.path, 'good-fail')}"
  bad:
    repository: ${repo}
    disks: [{path: ${join(dir.path, 'no-such.img')}}]
    summary-file: bad.json
    log-file: bad.log
    on-failure: cat > ${join(dir.path, 'bad-hook.json')}
`)
    const read = (f: string) => JSON.parse(readFileSync(join(dir.path, f), 'utf8'))
    const good = await vdsnap(['run', 'good', '--jobs', jobs, '--quiet'], env)
    expect(good.code, good.stderr).toBe(0)
    expect(read('good.json')).toMatchObject({exitCode: 0, error: null, jobs: [{job: 'good', exitCode: 0}]})
    expect(read('good-hook.json')).toEqual(read('good.json'))
    expect(readFileSync(join(dir.path, 'good.log'), 'utf8')).toMatch(/Z job good: starting[\s\S]*Z good: disk t: snapshot [0-9a-f]{8}[\s\S]*finished with exit code 0/)
    expect(existsSync(join(dir.path, 'good-fail'))).toBe(false)

    const bad = await vdsnap(['run', 'bad', '--jobs', jobs, '--quiet'], env)
    expect(bad.code).toBe(8)
    expect(read('bad-hook.json')).toMatchObject({exitCode: 8, jobs: [{job: 'bad', exitCode: 8}]})
    expect(read('bad.json')).toEqual(read('bad-hook.json'))
    expect(readFileSync(join(dir.path, 'bad.log'), 'utf8')).toMatch(/Z bad: disk no-such: failed: /)

    // --all: each job's targets get a summary of that job alone
    const all = await vdsnap(['run', '--all', '--jobs', jobs, '--quiet'], env)
    expect(all.code).toBe(3)
    expect(read('good.json').jobs.map((j: any) => j.job)).toEqual(['good'])
    expect(read('bad.json').jobs.map((j: any) => j.job)).toEqual(['bad'])

    // a flag replaces the job's key for that target only
    const flagSum = join(dir.path, 'flag.json')
    writeFileSync(join(dir.path, 'good.json'), '"untouched"')
    expect((await vdsnap(['run', 'good', '--jobs', jobs, '--quiet', '--summary-file', flagSum], env)).code).toBe(0)
    expect(read('good.json')).toBe('untouched')
    expect(JSON.parse(readFileSync(flagSum, 'utf8')).jobs[0].job).toBe('good')
    expect(read('good-hook.json').jobs[0].disks[0].snapshot).toBe(JSON.parse(readFileSync(flagSum, 'utf8')).jobs[0].disks[0].snapshot) // its own on-success still fired
  })

  it('schedule prints a bare "run JOB --jobs FILE" line for such a job', async () => {
    const jobs = join(dir.path, 'sched.yaml')
    writeFileSync(jobs, `${okJobs()}    schedule: "@daily"\n    on-failure: mail root\n    log-file: /var/log/x.log\n`)
    const r = await vdsnap(['schedule', '--jobs', jobs])
    expect(r.stdout).toMatch(new RegExp(`^@daily '.+' '.+run\\.js' run 'x' --jobs '${jobs}' --quiet$`, 'm'))
  })
})

describe.skipIf(!haveSshd)('run: storage settings from the job file and from the flags (s3rver, sshd)', () => {
  let s3: TestS3
  let sshd: TestSshd
  const img = join(dir.path, 's.img')
  // no endpoint, agent or ssh files from the environment: only what the job file or the flags say
  const env = {...S3RVER_ENV, AWS_ENDPOINT_URL: undefined, AWS_ENDPOINT_URL_S3: undefined, SSH_AUTH_SOCK: undefined, VDSNAP_PASSWORD: 'pw', VDSNAP_REPOSITORY: undefined}
  let s3Repo = ''
  let sftpRepo = ''

  beforeAll(async () => {
    s3 = await startS3('vdsnap-jobs')
    sshd = await startSshd()
    s3Repo = `s3://${s3.bucket}/jobs`
    sftpRepo = `sftp://${sshd.user}@127.0.0.1:${sshd.port}${sshd.rootDir}/copy`
    makeExt4Image(img, 4 * MiB)
    expect((await vdsnap(['init', '--repo', s3Repo, '--block-size', '64KiB', '--s3-endpoint', s3.endpoint], env)).code).toBe(0)
    expect((await vdsnap(['init', '--repo', sftpRepo, '--block-size', '64KiB', '--ssh-key', sshd.userKeyPath, '--known-hosts', sshd.knownHostsPath], env)).code).toBe(0)
  })
  afterAll(async () => {
    await s3?.stop()
    await sshd?.stop()
  })

  it('a job whose s3:// repository and sftp:// copy get their endpoint, key and known_hosts from the job file', async () => {
    const jobs = join(dir.path, 'storage.yaml')
    writeFileSync(jobs, `jobs:
  remote:
    repository: ${s3Repo}
    storage: {s3-endpoint: "${s3.endpoint}", s3-path-style: true, connections: 4}
    disks: [{path: ${img}, name: s}]
    copies:
      - repository: ${sftpRepo}
        storage: {ssh-key: ${sshd.userKeyPath}, known-hosts: ${sshd.knownHostsPath}, limit-upload: 64MiB}
    retention: {keep-last: 1}
    check: {every: run, parts: 1}
`)
    const r = await vdsnap(['run', 'remote', '--jobs', jobs, '--json'], env)
    expect(r.code, r.stderr).toBe(0)
    const job = JSON.parse(r.stdout).jobs[0]
    expect(job.disks[0].ok).toBe(true)
    expect(job.copies).toEqual([expect.objectContaining({ok: true, copied: 1})])
    expect(job.retention.ok).toBe(true)
    expect(job.check).toMatchObject({ok: true, detail: {subset: '1/1'}})
    const copied = await vdsnapJson<any[]>(['snapshots', '--repo', sftpRepo, '--ssh-key', sshd.userKeyPath, '--known-hosts', sshd.knownHostsPath], env)
    expect(copied.map((m) => m.id)).toEqual([job.disks[0].snapshot])
  })

  it('the storage flags of run apply to every repository of the run, copies included', async () => {
    const jobs = join(dir.path, 'storage-flags.yaml')
    writeFileSync(jobs, `jobs:\n  bare:\n    repository: ${s3Repo}\n    disks: [{path: ${img}, name: f}]\n    copies: [{repository: ${sftpRepo}}]\n    check: {every: never}\n`)
    randomAt(img, 1 * MiB, 100_000)
    const r = await vdsnap(['run', 'bare', '--jobs', jobs, '--json', '--s3-endpoint', s3.endpoint, '--ssh-key', sshd.userKeyPath, '--known-hosts', sshd.knownHostsPath], env)
    expect(r.code, r.stderr).toBe(0)
    const job = JSON.parse(r.stdout).jobs[0]
    expect(job.copies[0]).toMatchObject({ok: true, copied: 1})
    const restored = join(dir.path, 's-restored.img')
    expect((await vdsnap(['restore', job.disks[0].snapshot, '--to', restored, '--repo', sftpRepo, '--ssh-key', sshd.userKeyPath, '--known-hosts', sshd.knownHostsPath], env)).code).toBe(0)
    expect(sha256File(restored)).toBe(sha256File(img))
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
