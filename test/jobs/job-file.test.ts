// Job file validation (one-line errors naming the key; storage and output
// settings per job), the crontab block
// edit, the rotating check state and the exit-code rules of `run`.
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {dueCheck, afterCheck} from '../../src/jobs/check-state.js'
import {replaceBlock, beginMarker, endMarker} from '../../src/jobs/crontab.js'
import {parseJobFile} from '../../src/jobs/job-file.js'
import {storageFor} from '../../src/jobs/run-job.js'
import {ROOT} from '../helpers/cli.js'
import {runExitCode, type JobSummary} from '../../src/jobs/summary.js'

const ok = 'jobs:\n  n:\n    repository: /r\n    disks:\n      - path: /d.img\n'

describe('parseJobFile', () => {
  it('fills defaults', () => {
    const f = parseJobFile(ok, '/etc/vdsnap/jobs.yaml')
    expect(f.stateFile).toBe('/etc/vdsnap/jobs.yaml.state.json')
    expect(f.jobs[0]).toMatchObject({name: 'n', copies: [], check: {everyMs: 7 * 86_400_000, parts: 4}, lockWaitMs: 600_000})
  })

  it('reads allow-in-use per disk (true or false only)', () => {
    const j = parseJobFile(`${ok}        allow-in-use: true\n`, '/j.yaml').jobs[0]!
    expect(j.disks[0]!.allowInUse).toBe(true)
    expect(parseJobFile(ok, '/j.yaml').jobs[0]!.disks[0]!.allowInUse).toBeUndefined()
    expect(() => parseJobFile(`${ok}        allow-in-use: yes please\n`, '/j.yaml')).toThrow(/allow-in-use: must be true or false/)
  })

  it('reads an NBD disk with its dirty bitmap', () => {
    const f = parseJobFile('jobs:\n  n:\n    repository: /r\n    disks:\n      - path: nbd+unix:///vda?socket=/run/s.sock\n        bitmap: backup-vda\n', '/j.yaml')
    expect(f.jobs[0]!.disks[0]).toMatchObject({path: 'nbd+unix:///vda?socket=/run/s.sock', bitmap: 'backup-vda'})
  })

  it('reads JSON by extension', () => {
    expect(parseJobFile(JSON.stringify({jobs: {n: {repository: '/r', disks: [{path: '/x'}]}}}), '/j.json').jobs).toHaveLength(1)
  })

  it('reads storage settings per repository and per copy, with paths relative to the job file', () => {
    const text = `${ok}    storage: {s3-endpoint: "http://127.0.0.1:9000", s3-path-style: true, s3-region: eu-1, limit-upload: 20MiB, limit-download: 1048576, connections: 4}
    copies:
      - repository: sftp://b@h/r
        storage: {ssh-key: keys/id, known-hosts: /k, limit-upload: 512KiB}
`
    const j = parseJobFile(text, '/etc/vdsnap/jobs.yaml').jobs[0]!
    expect(j.storage).toEqual({s3Endpoint: 'http://127.0.0.1:9000', s3PathStyle: true, s3Region: 'eu-1', limitUpload: 20 * 1024 * 1024, limitDownload: 1048576, connections: 4})
    expect(j.copies[0]!.storage).toEqual({sshKey: '/etc/vdsnap/keys/id', knownHostsFile: '/k', limitUpload: 512 * 1024})
    expect(parseJobFile(ok, '/j.yaml').jobs[0]!.storage).toEqual({})
  })

  it('reads where the outcome goes, per job; the flags of run win over these', () => {
    const j = parseJobFile(`${ok}    summary-file: last.json\n    log-file: /var/log/v.log\n    on-failure: mail -s vdsnap root\n    on-success: "true"\n`, '/etc/vdsnap/jobs.yaml').jobs[0]!
    expect(j.outputs).toEqual({summaryFile: '/etc/vdsnap/last.json', logFile: '/var/log/v.log', onFailure: 'mail -s vdsnap root', onSuccess: 'true'})
    expect(storageFor({limitUpload: 1, s3Region: 'a'}, {limitUpload: 2, s3Region: undefined, sshKey: undefined})).toEqual({limitUpload: 2, s3Region: 'a'})
  })

  it('accepts the commented example, docs/jobs.example.yaml, with every key it shows', () => {
    const f = parseJobFile(readFileSync(join(ROOT, 'docs/jobs.example.yaml'), 'utf8'), '/etc/vdsnap/jobs.yaml')
    const [nightly, archive] = f.jobs
    expect(nightly!.outputs.onFailure).toMatch(/^mail /)
    expect(nightly!.copies[0]!.storage).toMatchObject({sshKey: '/etc/vdsnap/id_ed25519', limitUpload: 20 * 1024 * 1024})
    expect(archive!.storage).toMatchObject({s3PathStyle: true})
  })

  it('a YAML error names the place without a dangling colon', () => {
    expect(() => parseJobFile('jobs: {a: [\n', '/j.yaml')).toThrow(/at line 2, column 1$/)
  })

  it.each([
    [ok + '    storage: {s3-endpont: x}\n', /jobs\.n\.storage\.s3-endpont: unknown key/],
    [ok + '    storage: {limit-upload: fast}\n', /jobs\.n\.storage\.limit-upload: "fast" is not a size/],
    [ok + '    storage: {connections: 0}\n', /jobs\.n\.storage\.connections: must be a whole number from 1 to 256/],
    [ok + '    storage: {s3-path-style: yes please}\n', /jobs\.n\.storage\.s3-path-style: must be true or false/],
    [ok + '    copies: [{repository: /c, storage: {ssh-key: ""}}]\n', /jobs\.n\.copies\[0\]\.storage\.ssh-key: must be a non-empty string/],
    [ok + '    on-failure: [mail]\n', /jobs\.n\.on-failure: must be a non-empty string/],
    ['jobs:\n  n:\n    disks: [{path: /x}]\n', /jobs\.n\.repository: required/],
    ['jobs:\n  n:\n    repository: /r\n    disks: []\n', /jobs\.n\.disks: required/],
    [ok + '    retention: {keep-daily: seven}\n', /jobs\.n\.retention\.keep-daily: "seven" is not a count/],
    [ok + '    retention: {keep-within: 7 days}\n', /jobs\.n\.retention\.keep-within/],
    [ok + '    password: {file: /a, env: B}\n', /jobs\.n\.password: give exactly one/],
    [ok + '    schedule: tomorrow\n', /jobs\.n\.schedule: "tomorrow" is not a cron time/],
    [ok + '    check: {every: sometimes}\n', /jobs\.n\.check\.every/],
    [ok + '    colour: blue\n', /jobs\.n\.colour: unknown key/],
    ['jobs: [1, 2]\n', /jobs: must be a mapping/],
    ['jobs: {a: [\n', /not valid YAML/],
  ])('rejects %j', (text, re) => {
    expect(() => parseJobFile(text, '/j.yaml')).toThrow(re)
  })
})

describe('crontab block', () => {
  it('replaces only its own block, idempotently, and removes it', () => {
    const base = 'MAILTO=root\n0 1 * * * backup-other\n'
    const once = replaceBlock(base, '/j.yaml', ['1 2 * * * a'])
    expect(replaceBlock(once, '/j.yaml', ['1 2 * * * a'])).toBe(once)
    expect(once).toBe(`${base}${beginMarker('/j.yaml')}\n1 2 * * * a\n${endMarker('/j.yaml')}\n`)
    const two = replaceBlock(once, '/k.yaml', ['3 4 * * * b'])
    expect(replaceBlock(replaceBlock(two, '/j.yaml', null), '/k.yaml', null)).toBe(base)
  })
})

describe('rotating check', () => {
  const now = new Date('2026-11-25T02:00:00Z')
  it('walks the parts and waits `every` between checks', () => {
    expect(dueCheck(undefined, 7 * 86_400_000, 4, now)).toEqual({part: 1, parts: 4})
    let state = afterCheck(1, 4, now)
    expect(dueCheck(state, 7 * 86_400_000, 4, new Date('2026-11-30T02:00:00Z'))).toBeNull()
    expect(dueCheck(state, 7 * 86_400_000, 4, new Date('2026-12-02T01:30:00Z'))).toEqual({part: 2, parts: 4})
    state = afterCheck(4, 4, now)
    expect(state.nextPart).toBe(1)
    expect(dueCheck(state, null, 4, now)).toBeNull()
    expect(dueCheck(state, 0, 4, now)).toEqual({part: 1, parts: 4})
  })
})

describe('runExitCode', () => {
  const job = (exitCode: number) => ({exitCode}) as JobSummary
  it.each([
    [[0], 0], [[3], 3], [[8], 8], [[0, 8], 3], [[3, 8], 3], [[8, 5], 8], [[0, 6], 6],
  ])('%j → %i', (codes, want) => {
    expect(runExitCode(codes.map(job))).toBe(want)
  })
})
