// Passwords and flags as an operator types them, through the CLI: a flag
// beats the environment (--password-file and --password-command over
// VDSNAP_PASSWORD); flags a command would ignore are refused; the prompt
// in a real pseudo-terminal stays on the screen and does not echo; key
// remove; key add without a new password names the flag to use.
import {execFileSync} from 'node:child_process'
import {readdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {BIN, oneLine, vdsnap, vdsnapJson} from '../helpers/cli.js'
import {randomAt, tempDir} from '../helpers/images.js'
import {repoState} from '../helpers/repo-state.js'

const MiB = 1024 * 1024
const dir = tempDir()
afterAll(() => dir.cleanup())

const repo = join(dir.path, 'repo')
const img = join(dir.path, 'p.img')
const rightFile = join(dir.path, 'right')
const env = (password: string | undefined, extra: Record<string, string | undefined> = {}) => ({
  VDSNAP_REPOSITORY: repo,
  VDSNAP_PASSWORD: password,
  VDSNAP_PASSWORD_FILE: undefined,
  VDSNAP_PASSWORD_COMMAND: undefined,
  ...extra,
})

beforeAll(async () => {
  writeFileSync(img, Buffer.alloc(0))
  randomAt(img, 0, 1 * MiB)
  writeFileSync(rightFile, 'right\n')
  expect((await vdsnap(['init', '--block-size', '64KiB'], env('right'))).code).toBe(0)
  await vdsnapJson(['backup', img, '--disk', 'p'], env('right'))
})

describe('a flag beats the environment', () => {
  it('--password-file and --password-command win over a wrong VDSNAP_PASSWORD', async () => {
    expect(await vdsnapJson(['snapshots', '--password-file', rightFile], env('wrong'))).toHaveLength(1)
    expect(await vdsnapJson(['snapshots', '--password-command', `cat ${rightFile}`], env('wrong', {VDSNAP_PASSWORD_FILE: '/nonexistent'}))).toHaveLength(1)
    const both = await vdsnap(['snapshots', '--password-file', rightFile, '--password-command', 'true'], env('right'))
    expect(both.code).toBe(2)
    expect(oneLine(both.stderr)).toMatch(/--password-command=true cannot also be provided when using --password-file|cannot also be provided/)
    const failing = await vdsnap(['snapshots', '--password-command', 'echo nope >&2; exit 3'], env('right'))
    expect(failing.code).toBe(5)
    expect(oneLine(failing.stderr)).toBe('vdsnap: error: --password-command failed (exit 3): nope; run it by hand to see why')
  })
})

describe('flags that would do nothing are refused', () => {
  it('a malformed --lock-wait: exit 2, one line (a command that takes no lock refuses --lock-wait at all, see errors.test.ts)', async () => {
    for (const args of [['check'], ['backup', img, '--disk', 'p']]) {
      const before = repoState(repo)
      const r = await vdsnap([...args, '--lock-wait', '5 minutes'], env('right'))
      expect(r.code).toBe(2)
      expect(oneLine(r.stderr)).toBe('vdsnap: error: --lock-wait "5 minutes" is not a duration; write e.g. 30s, 5m or 1h')
      expect(repoState(repo)).toEqual(before)
    }
  })

  it('run --repo (and --password-file): the job names its own; VDSNAP_REPOSITORY in the environment is fine', async () => {
    const jobs = join(dir.path, 'jobs.yaml')
    writeFileSync(jobs, `jobs:\n  j:\n    repository: ${repo}\n    password: {file: ${rightFile}}\n    disks:\n      - {path: ${img}, name: p}\n`)
    const before = repoState(repo)
    for (const [flag, value, key] of [['--repo', '/elsewhere', 'repository'], ['--password-file', rightFile, 'password']]) {
      const r = await vdsnap(['run', 'j', '--jobs', jobs, flag!, value!], env(undefined))
      expect(r.code).toBe(2)
      expect(oneLine(r.stderr)).toBe(`vdsnap: error: ${flag} does nothing with "run": each job sets its own ${key} in the job file; set "${key}:" in ${jobs}, or drop ${flag}`)
    }
    expect(repoState(repo)).toEqual(before)
    const ok = await vdsnap(['run', 'j', '--jobs', jobs, '--quiet'], env(undefined, {VDSNAP_REPOSITORY: '/elsewhere'}))
    expect(ok.code, ok.stderr).toBe(0)
  })
})

/** Drives `node bin/run.js ARGS` in a pseudo-terminal: waits for `prompt`, types `answer` and Enter, reads to the end. */
function inPty(args: string[], prompt: string, answer: string, extraEnv: Record<string, string>): {transcript: string; status: number} {
  const script = `
import json, os, pty, select, sys, time
node, args, prompt, answer, env = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3].encode(), sys.argv[4].encode(), json.loads(sys.argv[5])
pid, fd = pty.fork()
if pid == 0:
    os.execve(node, [node] + args, env)
buf = b''
def read_until(done, limit):
    global buf
    end = time.time() + limit
    while not done() and time.time() < end:
        if select.select([fd], [], [], 1)[0]:
            try:
                d = os.read(fd, 4096)
            except OSError:
                return
            if not d:
                return
            buf += d
read_until(lambda: prompt in buf, 120)
os.write(fd, answer + b'\\r')
read_until(lambda: False, 180)
_, status = os.waitpid(pid, 0)
print(json.dumps({'transcript': buf.decode('utf8', 'replace'), 'status': os.waitstatus_to_exitcode(status)}))
`
  const childEnv = {PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir.path, TERM: 'xterm', ...extraEnv}
  const out = execFileSync('python3', ['-c', script, process.execPath, JSON.stringify([BIN, ...args]), prompt, answer, JSON.stringify(childEnv)], {encoding: 'utf8', timeout: 400_000})
  return JSON.parse(out) as {transcript: string; status: number}
}

describe('the password prompt in a terminal', () => {
  it('stays on the screen (no erase, no carriage return after it), does not echo, and opens the repository', () => {
    const {transcript, status} = inPty(['snapshots', '--repo', repo], 'repository password: ', 'right', {})
    expect(status, transcript).toBe(0)
    const at = transcript.indexOf('repository password: ')
    expect(at, transcript).toBeGreaterThanOrEqual(0)
    // From the prompt to the line break that Enter gives: nothing at all, so
    // nothing moved the cursor back or cleared the line (readline's refresh
    // wrote ESC[1G ESC[0J there and erased it).
    const rest = transcript.slice(at + 'repository password: '.length)
    expect(JSON.stringify(rest.slice(0, rest.search(/\r?\n/)))).toBe('""')
    expect(transcript).not.toContain('\u001b')
    expect(transcript).not.toContain('right')
    expect(transcript).toMatch(/ p /) // the snapshot of disk p is listed
  })

  it('Ctrl-C at the prompt interrupts like anywhere else: exit 130, one line, no lock left', () => {
    const {transcript, status} = inPty(['restore', 'latest', '--to', join(dir.path, 'never.img'), '--repo', repo], 'repository password: ', '\u0003', {})
    expect(status, transcript).toBe(130)
    expect(transcript.match(/vdsnap: error: .*/g)).toEqual(['vdsnap: error: interrupted by SIGINT: stopped; locks released and temporary files removed (run the command again to finish)'])
    expect(readdirSync(dir.path)).not.toContain('never.img')
    expect(readdirSync(join(repo, 'locks'))).toEqual([])
  })
})

describe('key remove, and key add without a new password', () => {
  it('key add with no new password names --new-password-file', async () => {
    const r = await vdsnap(['key', 'add'], env('right', {VDSNAP_NEW_PASSWORD: undefined, VDSNAP_NEW_PASSWORD_FILE: undefined}))
    expect(r.code).toBe(5)
    expect(oneLine(r.stderr)).toBe('vdsnap: error: no new password given; use --new-password-file FILE, or set VDSNAP_NEW_PASSWORD or VDSNAP_NEW_PASSWORD_FILE')
  })

  it('removes another slot by prefix; refuses the slot in use and an unknown one, changing nothing', async () => {
    const keys = () => readdirSync(join(repo, 'keys')).sort()
    // counted here, not assumed from what earlier tests left
    const slots = keys().length
    const snapshots = (await vdsnapJson<unknown[]>(['snapshots'], env('right'))).length
    const added = await vdsnapJson<{added: string}>(['key', 'add'], env('right', {VDSNAP_NEW_PASSWORD: 'second'}))
    expect(keys()).toHaveLength(slots + 1)
    const current = (await vdsnapJson<{id: string; current: boolean}[]>(['key', 'list'], env('right'))).find((k) => k.current)!.id
    const before = repoState(repo)
    const self = await vdsnap(['key', 'remove', current.slice(0, 8)], env('right'))
    expect(self.code).toBe(2)
    expect(oneLine(self.stderr)).toBe(`vdsnap: error: key slot ${current} is the one this password opened; open the repository with another password to remove it, or use "vdsnap key passwd" to replace it`)
    const unknown = await vdsnap(['key', 'remove', 'zz'], env('right'))
    expect(unknown.code).toBe(8)
    expect(oneLine(unknown.stderr)).toBe(`vdsnap: error: no key slot "zz" in ${repo}; see "vdsnap key list"`)
    expect(repoState(repo)).toEqual(before)
    const removed = await vdsnapJson<{removed: string}>(['key', 'remove', added.added.slice(0, 6)], env('right'))
    expect(removed.removed).toBe(added.added)
    expect(keys()).toHaveLength(slots)
    expect(keys()).toContain(current)
    expect(keys()).not.toContain(added.added)
    expect((await vdsnap(['snapshots'], env('second'))).code).toBe(5)
    expect(await vdsnapJson(['snapshots'], env('right'))).toHaveLength(snapshots) // key commands touch no snapshot
  })
})
