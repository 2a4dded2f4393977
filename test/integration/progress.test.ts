// Progress through the CLI: without a TTY, phase and progress lines appear
// without --verbose; --json-progress gives JSON status lines on stderr while
// stdout keeps the result; on a TTY the live view names the phase on
// stderr, with --json too (stdout and stderr on two separate ptys, so the
// streams are told apart), and shows an ETA mid-read (the source stalled
// until it did).
import {execFileSync, spawnSync} from 'node:child_process'
import {readFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {BIN, vdsnap} from '../helpers/cli.js'
import {randomAt, tempDir} from '../helpers/images.js'

const MiB = 1024 * 1024
const HELPERS = join(dirname(fileURLToPath(import.meta.url)), '../helpers')
const dir2 = tempDir()

describe('progress', () => {
  const dir = tempDir()
  const repo = join(dir.path, 'repo')
  const img = join(dir.path, 'disk.img')
  const env = {VDSNAP_REPOSITORY: repo, VDSNAP_PASSWORD: 'pw'}

  beforeAll(async () => {
    execFileSync('truncate', ['-s', String(8 * MiB), img])
    expect((await vdsnap(['init', '--block-size', '64KiB'], env)).code).toBe(0)
  })
  afterAll(() => {
    dir.cleanup()
    dir2.cleanup()
  })

  it('without a TTY: the phases and a progress line, no --verbose needed; none with --quiet', async () => {
    randomAt(img, 0, 2 * MiB)
    const r = await vdsnap(['backup', img], env)
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/^\S+Z reading$/m)
    expect(r.stderr).toMatch(/^\S+Z reading: [\d.]+ \S+ of [\d.]+ \S+ \(100.0%\)/m)
    expect(r.stderr).toMatch(/^\S+Z committing$/m)
    expect(r.stderr).not.toMatch(/\x1b\[/)
    randomAt(img, 2 * MiB, 1 * MiB)
    const q = await vdsnap(['backup', img, '--quiet'], env)
    expect(q.code).toBe(0)
    expect(q.stderr).toBe('')
  })

  it('--json-progress: JSON status lines on stderr, the result alone on stdout', async () => {
    randomAt(img, 4 * MiB, 1 * MiB)
    const r = await vdsnap(['backup', img, '--json', '--json-progress'], env)
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout).snapshot).toMatch(/^[0-9a-f]{64}$/)
    const status = r.stderr.trim().split('\n').map((l) => JSON.parse(l))
    expect(status.every((s) => s.type === 'status')).toBe(true)
    const phases = [...new Set(status.map((s) => s.phase))]
    expect(phases).toEqual([`backup ${img}`, 'reading', 'committing'])
    const lastRead = status.filter((s) => s.phase === 'reading').at(-1)
    expect(lastRead.bytesTotal).toBeGreaterThan(0) // the allocated bytes to read
    expect(lastRead).toMatchObject({bytesDone: lastRead.bytesTotal, percentDone: 1, secondsRemaining: 0})
  })

  it('on a TTY with --json: stdout (its own pty) carries only the JSON document, the live view naming the phase goes to stderr', () => {
    randomAt(img, 6 * MiB, 1 * MiB)
    const {code, stdout, stderr} = onTwoPtys([process.execPath, BIN, 'backup', img, '--json'], env)
    expect(code, stderr).toBe(0)
    expect(JSON.parse(stdout).snapshot).toMatch(/^[0-9a-f]{64}$/) // pure JSON: no escape code or progress line mixed in
    expect(stdout).not.toMatch(/\x1b|reading/)
    expect(stderr).toMatch(/\x1b\[/) // the live view, not plain lines
    expect(stderr).toMatch(/reading: [\d.]+ \S+ of [\d.]+ \S+/)
    expect(stderr).not.toMatch(/"snapshot"/)
  })

  it('on a TTY the live view shows an ETA while the read is under way (the source stalled until it did)', () => {
    // the source command sends 16 MiB of 24, then waits for `release`, which
    // the pty helper creates only once stderr showed an ETA (the wait is
    // bounded, so a view without ETA fails the test instead of hanging)
    const release = join(dir2.path, 'release')
    const part = join(dir2.path, 'part')
    execFileSync('sh', ['-c', `head -c ${16 * MiB} /dev/urandom > '${part}'`])
    const source = `cat '${part}'; i=0; while [ ! -e '${release}' ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; head -c ${8 * MiB} '${part}'`
    const {code, stdout, stderr} = onTwoPtys([process.execPath, BIN, 'backup', '-', '--disk', 'stalled', '--size', '24MiB', '--source-command', source], env, ['--touch-when', 'ETA', release])
    expect(code, stderr).toBe(0)
    expect(stderr).toMatch(/reading: 16\.0 MiB of 24\.0 MiB \(66\.7%\), [\d.]+ \S+\/s, ETA \d/)
    expect(stdout).toMatch(/snapshot [0-9a-f]{8} of disk "stalled" saved/)
    expect(stdout).not.toMatch(/ETA/) // the live view is on stderr only
  })
})

/** Runs a command with stdout and stderr on two separate TTYs (test/helpers/two-ptys.py); returns what each carried. */
function onTwoPtys(cmd: string[], env: Record<string, string>, helperFlags: string[] = []): {code: number; stdout: string; stderr: string} {
  const out = join(dir2.path, 'stdout')
  const err = join(dir2.path, 'stderr')
  const r = spawnSync('python3', [join(HELPERS, 'two-ptys.py'), ...helperFlags, out, err, ...cmd], {env: {...process.env, ...env}, encoding: 'utf8'})
  const read = (p: string) => readFileSync(p, 'utf8').replace(/\r\n/g, '\n') // the pty's line discipline adds CRs
  return {code: r.status ?? -1, stdout: read(out), stderr: read(err)}
}
