// Starts OpenSSH's sshd on 127.0.0.1 for tests: a free port, a temp
// sshd_config, throw-away host and user keys made with ssh-keygen, and a
// known_hosts file naming the host key as "[127.0.0.1]:PORT". The system sshd
// and the user's ~/.ssh are never touched. Needs /usr/sbin/sshd (Debian
// package openssh-server) and ssh-keygen (openssh-client).
import {execFile, spawn, type ChildProcess} from 'node:child_process'
import {existsSync} from 'node:fs'
import {mkdir, mkdtemp, readFile, readdir, rm, writeFile} from 'node:fs/promises'
import {createServer, connect} from 'node:net'
import {tmpdir, userInfo} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'

const run = promisify(execFile)
export const SSHD = '/usr/sbin/sshd'
export const haveSshd = existsSync(SSHD) && existsSync('/usr/bin/ssh-keygen')

export interface TestSshd {
  port: number
  user: string
  userKeyPath: string
  knownHostsPath: string
  /** Empty directory the tests may use as repository roots. */
  rootDir: string
  /** Kills sshd and every session process it forked (SIGKILL): connections drop. */
  kill(): Promise<void>
  /** Starts sshd again on the same port with the same keys. */
  start(): Promise<void>
  stop(): Promise<void>
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const {port} = srv.address() as {port: number}
      srv.close(() => resolve(port))
    })
  })
}

export async function waitForPort(port: number, child: ChildProcess, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`server exited with code ${child.exitCode} before listening on ${port}`)
    const ok = await new Promise<boolean>((res) => {
      const s = connect(port, '127.0.0.1', () => {
        s.destroy()
        res(true)
      })
      s.once('error', () => res(false))
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error(`server did not listen on ${port} within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** Pids of every descendant of `pid`, found through /proc. */
async function descendants(pid: number): Promise<number[]> {
  const parents = new Map<number, number[]>()
  for (const ent of await readdir('/proc')) {
    if (!/^\d+$/.test(ent)) continue
    const stat = await readFile(`/proc/${ent}/stat`, 'utf8').catch(() => '')
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
    if (!parents.has(ppid)) parents.set(ppid, [])
    parents.get(ppid)!.push(Number(ent))
  }
  const out: number[] = []
  const walk = (p: number) => {
    for (const c of parents.get(p) ?? []) {
      out.push(c)
      walk(c)
    }
  }
  walk(pid)
  return out
}

export async function startSshd(): Promise<TestSshd> {
  await mkdir('/run/sshd', {recursive: true})
  const dir = await mkdtemp(join(tmpdir(), 'vdsnap-sshd-'))
  const hostKey = join(dir, 'host_ed25519')
  const userKeyPath = join(dir, 'user_ed25519')
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey])
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', userKeyPath])
  await writeFile(join(dir, 'authorized_keys'), await readFile(`${userKeyPath}.pub`))
  const rootDir = join(dir, 'root')
  await mkdir(rootDir)
  const port = await freePort()
  const config = join(dir, 'sshd_config')
  await writeFile(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      'UsePAM no',
      'StrictModes no',
      'MaxStartups 100',
      'MaxSessions 100',
      'Subsystem sftp internal-sftp',
      '',
    ].join('\n'),
  )
  const hostPub = (await readFile(`${hostKey}.pub`, 'utf8')).trim().split(/\s+/)
  const knownHostsPath = join(dir, 'known_hosts')
  await writeFile(knownHostsPath, `[127.0.0.1]:${port} ${hostPub[0]} ${hostPub[1]}\n`)

  let child: ChildProcess | undefined
  const start = async () => {
    const c = spawn(SSHD, ['-D', '-e', '-f', config], {stdio: ['ignore', 'ignore', 'pipe']})
    let stderr = ''
    c.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
    child = c
    try {
      await waitForPort(port, c)
    } catch (e) {
      c.kill('SIGKILL')
      throw new Error(`${(e as Error).message}\n${stderr}`)
    }
  }
  const kill = async () => {
    const c = child
    if (!c || c.exitCode !== null || c.signalCode !== null || c.pid === undefined) return
    // Stop the whole tree first, so that no process forks a child we miss
    // (a connection being accepted while we look would survive the kill).
    const signal = (pid: number, sig: NodeJS.Signals) => {
      try {
        process.kill(pid, sig)
      } catch {
        // already gone
      }
    }
    const exited = new Promise((r) => c.once('exit', r))
    signal(c.pid, 'SIGSTOP')
    const stopped = new Set<number>()
    for (let fresh = await descendants(c.pid); fresh.length > 0; fresh = (await descendants(c.pid)).filter((p) => !stopped.has(p))) {
      for (const pid of fresh) {
        signal(pid, 'SIGSTOP')
        stopped.add(pid)
      }
    }
    c.kill('SIGKILL')
    for (const pid of stopped) signal(pid, 'SIGKILL')
    await exited
  }
  await start()
  return {
    port,
    user: userInfo().username,
    userKeyPath,
    knownHostsPath,
    rootDir,
    kill,
    start,
    async stop() {
      await kill()
      await rm(dir, {recursive: true, force: true})
    },
  }
}
