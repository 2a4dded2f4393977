// Job files: a copy has its own retention (copies[].retention), applied in
// the copy repository after each copy, so an offsite repository does not
// only grow; a bad one is a one-line usage error that changes nothing; and
// docs/jobs.example.yaml ships in the package and states the same defaults
// as --help.
import {execFileSync} from 'node:child_process'
import {readFileSync, readdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {parseJobFile} from '../../src/jobs/job-file.js'
import {oneLine, ROOT, vdsnap, vdsnapJson} from '../helpers/cli.js'
import {makeExt4Image, randomAt, sha256File, tempDir} from '../helpers/images.js'

const MiB = 1024 * 1024

function listing(dir: string): string[] {
  return (readdirSync(dir, {recursive: true}) as string[]).filter((f) => !f.startsWith('locks')).sort()
}

describe('copies[].retention', () => {
  const dir = tempDir()
  const main = join(dir.path, 'main')
  const offsite = join(dir.path, 'offsite')
  const img = join(dir.path, 'a.img')
  const jobs = join(dir.path, 'jobs.yaml')
  const env = {VDSNAP_PASSWORD: 'pw', VDSNAP_REPOSITORY: undefined}

  beforeAll(async () => {
    makeExt4Image(img, 6 * MiB)
    for (const r of [main, offsite]) expect((await vdsnap(['init', '--repo', r, '--block-size', '64KiB'], env)).code).toBe(0)
  })
  afterAll(() => dir.cleanup())

  it('the copy repository keeps what its own policy says, the main one what the job says; the kept copy restores', async () => {
    writeFileSync(jobs, `jobs:
  n:
    repository: ${main}
    disks: [{path: ${img}, name: a}]
    copies:
      - repository: ${offsite}
        retention: {keep-last: 1}
    retention: {keep-last: 3}
    check: {every: never}
`)
    for (let i = 0; i < 3; i++) {
      randomAt(img, (1 + i) * MiB, 256 * 1024)
      const s = await vdsnapJson(['run', 'n', '--jobs', jobs], env)
      expect(s.exitCode).toBe(0)
      expect(s.jobs[0].copies[0]).toMatchObject({ok: true, copied: 1, retention: {ok: true, detail: {snapshotsRemoved: i === 0 ? 0 : 1}}})
    }
    const inMain = await vdsnapJson<{id: string}[]>(['snapshots', '--repo', main], env)
    const inOffsite = await vdsnapJson<{id: string}[]>(['snapshots', '--repo', offsite], env)
    expect(inMain).toHaveLength(3)
    expect(inOffsite.map((m) => m.id)).toEqual([inMain[2]!.id])
    const out = join(dir.path, 'restored.img')
    expect((await vdsnap(['restore', 'latest', '--repo', offsite, '--to', out], env)).code).toBe(0)
    expect(sha256File(out)).toBe(sha256File(img))
    expect((await vdsnap(['check', '--read-data', '--repo', offsite], env)).code).toBe(0)
  })

  it('a bad copy retention is one usage line naming the key; no repository changes', async () => {
    writeFileSync(jobs, `jobs:
  n:
    repository: ${main}
    disks: [{path: ${img}, name: a}]
    copies: [{repository: ${offsite}, retention: {keep-daily: seven}}]
`)
    const before = [listing(main), listing(offsite)]
    const r = await vdsnap(['run', 'n', '--jobs', jobs], env)
    expect(r.code).toBe(2)
    expect(oneLine(r.stderr)).toMatch(/jobs\.n\.copies\[0\]\.retention\.keep-daily: "seven" is not a count/)
    expect([listing(main), listing(offsite)]).toEqual(before)
  })
})

describe('docs/jobs.example.yaml', () => {
  it('ships in the package', () => {
    const packed = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {cwd: ROOT, encoding: 'utf8'})) as {files: {path: string}[]}[]
    expect(packed[0]!.files.map((f) => f.path)).toContain('docs/jobs.example.yaml')
  })

  it('shows a copy retention and states the defaults --help states', async () => {
    const text = readFileSync(join(ROOT, 'docs/jobs.example.yaml'), 'utf8')
    const f = parseJobFile(text, '/etc/vdsnap/jobs.yaml')
    expect(f.jobs[0]!.copies[0]!.retention).toMatchObject({policy: {daily: 14, monthly: 24}, prune: true})
    const help = (await vdsnap(['run', '--help'])).stdout.replace(/\s+/g, ' ')
    const connections = /Transfers in flight at once \((default [^)]*)\)/.exec(help)?.[1]
    expect(connections).toBe('default 8 locally, 16 for S3, 32 for SFTP')
    expect(text).toContain(`(${connections})`)
    expect(help).toContain(`(default: each job's "lock-wait", 10m when unset)`)
    expect(text).toMatch(/lock-wait: 10m .*\(default 10m/)
    expect(parseJobFile('jobs:\n  n:\n    repository: /r\n    disks: [{path: /d}]\n', '/j.yaml').jobs[0]!.lockWaitMs).toBe(10 * 60_000)
  })
})
