// --quiet as cron runs it: the very command line `schedule` installs, run
// with /bin/sh. Cron mails whatever a job prints, so a success prints
// nothing, and a partial failure (exit 3) or a failure prints exactly one
// line on stderr.
import {execFile} from 'node:child_process'
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {promisify} from 'node:util'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {vdsnap, vdsnapJson} from '../helpers/cli.js'
import {randomAt, tempDir} from '../helpers/images.js'

const MiB = 1024 * 1024
const dir = tempDir()
afterAll(() => dir.cleanup())

/** Runs a crontab line's command (after its five time fields) as cron would: /bin/sh -c. */
async function asCron(line: string): Promise<{code: number; stdout: string; stderr: string}> {
  const command = line.split(' ').slice(5).join(' ')
  const env: NodeJS.ProcessEnv = {PATH: '/usr/bin:/bin', HOME: dir.path}
  try {
    const {stdout, stderr} = await promisify(execFile)('/bin/sh', ['-c', command], {env})
    return {code: 0, stdout, stderr}
  } catch (e) {
    const err = e as {code: number; stdout: string; stderr: string}
    return {code: err.code, stdout: err.stdout, stderr: err.stderr}
  }
}

describe('the crontab line of "schedule" (run ... --quiet)', () => {
  const repo = join(dir.path, 'repo')
  const good = join(dir.path, 'good.img')
  const missing = join(dir.path, 'missing.img')
  const jobs = join(dir.path, 'jobs.yaml')
  const env = {VDSNAP_PASSWORD: undefined, VDSNAP_REPOSITORY: undefined}
  let lines: Record<string, string> = {}

  beforeAll(async () => {
    writeFileSync(good, Buffer.alloc(0))
    randomAt(good, 0, 1 * MiB)
    expect((await vdsnap(['init', '--repo', repo, '--no-encryption', '--block-size', '64KiB'], env)).code).toBe(0)
    const job = (name: string, disks: string[]) =>
      `  ${name}:\n    repository: ${repo}\n    schedule: "30 2 * * *"\n    disks:\n${disks.map((d, i) => `      - {path: ${d}, name: d${i}}`).join('\n')}\n`
    writeFileSync(jobs, `jobs:\n${job('ok', [good])}${job('partial', [good, missing])}${job('failing', [missing])}`)
    const printed = await vdsnapJson<{lines: string[]}>(['schedule', '--jobs', jobs], env)
    lines = Object.fromEntries(printed.lines.map((l) => [/ run '([^']+)'/.exec(l)![1]!, l]))
    expect(Object.keys(lines).sort()).toEqual(['failing', 'ok', 'partial'])
    for (const l of Object.values(lines)) expect(l).toMatch(/ --quiet$/)
  })

  it('a success prints nothing at all', async () => {
    const r = await asCron(lines.ok!)
    expect(r).toEqual({code: 0, stdout: '', stderr: ''})
  })

  it('a partial failure (exit 3) prints one line on stderr, naming the disk and why', async () => {
    const r = await asCron(lines.partial!)
    expect(r.code).toBe(3)
    expect(r.stdout).toBe('')
    expect(r.stderr).toMatch(new RegExp(`^vdsnap: warning: job partial exited 3: disk d1 failed: .*${missing}.*\\n$`))
  })

  it('a failure prints one line on stderr with its exit code', async () => {
    const r = await asCron(lines.failing!)
    expect(r.code).toBe(8)
    expect(r.stdout).toBe('')
    expect(r.stderr).toMatch(new RegExp(`^vdsnap: error: job failing exited 8: disk d0 failed: .*${missing}.*\\n$`))
  })
})
