// `vdsnap serve` as a child process, as a user runs it: started with
// node bin/run.js, ready when it prints its "listening on" line (never a
// sleep), stopped with a signal. Log lines can be awaited too, so a test
// waits for "client #N ended" instead of guessing how long that takes.
import {spawn, type ChildProcess} from 'node:child_process'
import {readdirSync, readFileSync, readlinkSync} from 'node:fs'
import {onTestFinished} from 'vitest'
import {BIN} from './cli.js'

export interface ServeProcess {
  child: ChildProcess
  pid: number
  /** host:port or the socket path, from the readiness line. */
  where: string
  /** The URI for qemu-img / nbdinfo / nbdcopy. */
  uri: string
  stderr(): string
  /** Resolves when stderr has a line matching `re` (rejects if the process exits first). */
  waitFor(re: RegExp): Promise<string>
  /** Sends `signal` and resolves with the exit code and everything printed. */
  stop(signal?: NodeJS.Signals): Promise<{code: number | null; stdout: string; stderr: string}>
}

export function startServe(args: string[], env: Record<string, string | undefined>): Promise<ServeProcess> {
  const childEnv: Record<string, string> = {}
  for (const [k, v] of Object.entries({...process.env, ...env})) if (v !== undefined) childEnv[k] = v
  const child = spawn(process.execPath, [BIN, 'serve', ...args], {env: childEnv, stdio: ['ignore', 'pipe', 'pipe']})
  let out = ''
  let err = ''
  const waiters: {re: RegExp; resolve(l: string): void; reject(e: Error): void}[] = []
  let exited: {code: number | null} | undefined
  const exit = new Promise<{code: number | null}>((resolve) =>
    child.on('exit', (code) => {
      exited = {code}
      resolve(exited)
    }),
  )
  const closed = new Promise<void>((resolve) => child.on('close', () => resolve()))
  // A test that failed or timed out before its stop() must not leave a server
  // running (the test's finally never runs when it times out). Outside a test
  // (beforeAll) the caller's afterAll stops it.
  try {
    onTestFinished(() => {
      if (!exited) child.kill('SIGKILL')
    })
  } catch {
    // not inside a test
  }
  const check = () => {
    for (const w of [...waiters]) {
      const line = err.split('\n').find((l) => w.re.test(l))
      if (line !== undefined) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve(line)
      } else if (exited) {
        waiters.splice(waiters.indexOf(w), 1)
        w.reject(new Error(`serve exited (${exited.code}) before printing ${w.re}: ${err}`))
      }
    }
  }
  child.stdout!.on('data', (d) => (out += d))
  child.stderr!.on('data', (d) => {
    err += d
    check()
  })
  void closed.then(check)
  const waitFor = (re: RegExp) =>
    new Promise<string>((resolve, reject) => {
      waiters.push({re, resolve, reject})
      check()
    })
  // the readiness line, not the non-loopback warning that also says "listening on"
  return waitFor(/listening on \S+ \(nbd/).then((line) => {
    const where = /listening on (\S+)/.exec(line)![1]!
    const uri = /\((nbd[^)]*)\)/.exec(line)![1]!
    return {
      child,
      pid: child.pid!,
      where,
      uri,
      stderr: () => err,
      waitFor,
      stop: async (signal = 'SIGTERM') => {
        if (!exited) child.kill(signal)
        const {code} = await exit
        await closed
        return {code, stdout: out, stderr: err}
      },
    }
  })
}

/** Open file descriptors of a process, and how many of them are sockets. */
export function openHandles(pid: number): {fds: number; sockets: number} {
  const fds = readdirSync(`/proc/${pid}/fd`)
  let sockets = 0
  for (const fd of fds) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:')) sockets++
    } catch {
      // closed while we looked
    }
  }
  return {fds: fds.length, sockets}
}

/**
 * The TCP addresses a process listens on ("0.0.0.0:10809", "[::]:10809"),
 * from its socket fds matched against /proc/net/tcp and tcp6.
 */
export function listeningAddresses(pid: number): string[] {
  const inodes = new Set<string>()
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))
      if (m) inodes.add(m[1]!)
    } catch {
      // closed while we looked
    }
  }
  const out: string[] = []
  for (const table of ['tcp', 'tcp6']) {
    for (const line of readFileSync(`/proc/net/${table}`, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      if (f.length < 10 || f[3] !== '0A' || !inodes.has(f[9]!)) continue // 0A: LISTEN
      const [hex, portHex] = f[1]!.split(':') as [string, string]
      const port = parseInt(portHex, 16)
      if (table === 'tcp') {
        // four bytes in host (little-endian) order
        const ip = [6, 4, 2, 0].map((i) => parseInt(hex.slice(i, i + 2), 16)).join('.')
        out.push(`${ip}:${port}`)
      } else out.push(`[${/^0+$/.test(hex) ? '::' : hex}]:${port}`)
    }
  }
  return out
}

/** Resident memory of a process, in bytes. */
export function residentBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return Number(m![1]) * 1024
}
