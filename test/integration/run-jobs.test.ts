// `vdsnap run` and `vdsnap schedule` end to end through the CLI: a job file
// with two disks and a copy where one disk fails (the failure hook fires, the
// other disk is still backed up), schedule --install against the real
// crontab of a throw-away user; a job file that fails to parse or names no
// such job still ending in a summary, hook and log line; a job's own summary
// file, hooks and log file.
import {execFileSync} from 'node:child_process'
import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {vdsnap, vdsnapJson} from '../helpers/cli.js'
import {makeExt4Image, randomAt, sha256File, tempDir} from '../helpers/images.js'

const MiB = 1024 * 1024
const dir = tempDir()
afterAll(() => dir.cleanup())

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
