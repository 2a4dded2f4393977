// Source commands: a command still running when vdsnap exits (here through
// process.exit, as a signal handler ends it) is stopped with what it
// started. The child node process waits until the command has recorded its
// pid, so nothing races a timer.
import {spawnSync} from 'node:child_process'
import {existsSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {ROOT} from '../helpers/cli.js'
import {tempDir} from '../helpers/images.js'

const tmp = tempDir('vdsnap-source-cmd-')
afterAll(() => tmp.cleanup())

const alive = (pid: number) => existsSync(`/proc/${pid}`) && !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))

describe('commandSource', () => {
  it('stops the command and its children when the process exits', () => {
    const pidFile = join(tmp.path, 'pid')
    const script = `
      import {existsSync, readFileSync} from 'node:fs'
      import {commandSource} from ${JSON.stringify(join(ROOT, 'dist/src/disk/stream-source.js'))}
      commandSource(${JSON.stringify(`sleep 600 & echo $! > '${pidFile}'; wait`)})
      const deadline = Date.now() + 60000
      const poll = () => (existsSync(${JSON.stringify(pidFile)}) && readFileSync(${JSON.stringify(pidFile)}, 'utf8').endsWith('\\n')) || Date.now() > deadline ? process.exit(130) : setTimeout(poll, 20)
      poll()`
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {encoding: 'utf8', timeout: 120_000})
    expect(r.status, r.stderr).toBe(130)
    const pid = Number(readFileSync(pidFile, 'utf8'))
    expect(pid).toBeGreaterThan(0)
    // SIGTERM was sent before the parent exited; give the kernel a moment to finish the kill (bounded)
    for (let i = 0; i < 100 && alive(pid); i++) spawnSync('sleep', ['0.05'])
    expect(alive(pid), `sleep ${pid} still runs`).toBe(false)
  })
})
