// Job file validation (one-line errors naming the key), the crontab block
// edit, the rotating check state and the exit-code rules of `run`.
import {describe, expect, it} from 'vitest'
import {dueCheck, afterCheck} from '../../src/jobs/check-state.js'
import {replaceBlock, beginMarker, endMarker} from '../../src/jobs/crontab.js'
import {parseJobFile} from '../../src/jobs/job-file.js'
import {runExitCode, type JobSummary} from '../../src/jobs/summary.js'

const ok = 'jobs:\n  n:\n    repository: /r\n    disks:\n      - path: /d.img\n'

describe('parseJobFile', () => {
  it('fills defaults', () => {
    const f = parseJobFile(ok, '/etc/vdsnap/jobs.yaml')
    expect(f.stateFile).toBe('/etc/vdsnap/jobs.yaml.state.json')
    expect(f.jobs[0]).toMatchObject({name: 'n', copies: [], check: {everyMs: 7 * 86_400_000, parts: 4}, lockWaitMs: 600_000})
  })

  it('reads JSON by extension', () => {
    expect(parseJobFile(JSON.stringify({jobs: {n: {repository: '/r', disks: [{path: '/x'}]}}}), '/j.json').jobs).toHaveLength(1)
  })

  it.each([
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
