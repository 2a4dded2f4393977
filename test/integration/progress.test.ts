// Progress through the CLI: without a TTY, phase and progress lines appear
// without --verbose; --json-progress gives JSON status lines on stderr while
// stdout keeps the result; on a TTY (a real pty from script(1)) the live
// view names the phase, with --json too.
import {execFileSync} from 'node:child_process'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {BIN, vdsnap} from '../helpers/cli.js'
import {randomAt, tempDir} from '../helpers/images.js'

const MiB = 1024 * 1024

describe('progress', () => {
  const dir = tempDir()
  const repo = join(dir.path, 'repo')
  const img = join(dir.path, 'disk.img')
  const env = {VDSNAP_REPOSITORY: repo, VDSNAP_PASSWORD: 'pw'}

  beforeAll(async () => {
    execFileSync('truncate', ['-s', String(8 * MiB), img])
    expect((await vdsnap(['init', '--block-size', '64KiB'], env)).code).toBe(0)
  })
  afterAll(() => dir.cleanup())

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

  it('on a TTY the live view names the phase, with --json too (the document still printed)', () => {
    randomAt(img, 6 * MiB, 1 * MiB)
    const cmd = `stty cols 120 rows 40; VDSNAP_REPOSITORY='${repo}' VDSNAP_PASSWORD=pw '${process.execPath}' '${BIN}' backup '${img}' --json`
    const out = execFileSync('script', ['-qec', cmd, '/dev/null'], {encoding: 'utf8', env: {...process.env, TERM: 'xterm'}})
    expect(out).toMatch(/reading/)
    expect(out).toMatch(/\x1b\[/) // the live view, not plain lines
    expect(out).toMatch(/"snapshot": "[0-9a-f]{64}"/)
  })
})
