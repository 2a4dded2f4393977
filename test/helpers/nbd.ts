// Real NBD servers for tests, each on a unix socket in a test directory:
// qemu-nbd (--fork returns once it listens) and nbdkit (forks into the
// background once it listens), so no test waits on a timer for a server.
// stop() signals the pid from the server's own pid file and waits
// (bounded) until the process is gone.
import {execFileSync} from 'node:child_process'
import {existsSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

export interface NbdServer {
  socket: string
  /** nbd+unix URL of the export. */
  url: string
  stop(): Promise<void>
}

async function stopPid(pidFile: string): Promise<void> {
  if (!existsSync(pidFile)) return
  const pid = Number(readFileSync(pidFile, 'utf8').trim())
  try {
    process.kill(pid, 'SIGTERM')
  } catch {
    return
  }
  for (let i = 0; i < 200; i++) {
    try {
      process.kill(pid, 0)
    } catch {
      return
    }
    await sleep(50)
  }
  process.kill(pid, 'SIGKILL')
}

export function unixUrl(socket: string, exportName = ''): string {
  return `nbd+unix:///${encodeURIComponent(exportName)}?socket=${socket}`
}

/** qemu-nbd exporting `image` read-only as `exportName`, with dirty bitmap `bitmap` if given. */
export function startQemuNbd(dir: string, image: string, opts: {name?: string; exportName?: string; bitmap?: string; format?: string} = {}): NbdServer {
  const tag = opts.name ?? 'qemu'
  const socket = join(dir, `${tag}.sock`)
  const pidFile = join(dir, `${tag}.pid`)
  const exportName = opts.exportName ?? 'disk'
  const args = ['--fork', '--pid-file', pidFile, '-r', '-t', '-e', '8', '-f', opts.format ?? 'qcow2', '-x', exportName, '-k', socket]
  if (opts.bitmap) args.push('-B', opts.bitmap)
  execFileSync('qemu-nbd', [...args, image], {stdio: 'pipe'})
  return {socket, url: unixUrl(socket, exportName), stop: () => stopPid(pidFile)}
}

/** nbdkit with `plugin` and its arguments, export name "" (nbdkit serves any name). */
export function startNbdkit(dir: string, plugin: string[], name = 'nbdkit'): NbdServer {
  const socket = join(dir, `${name}.sock`)
  const pidFile = join(dir, `${name}.pid`)
  execFileSync('nbdkit', ['-U', socket, '-P', pidFile, '-r', ...plugin], {stdio: 'pipe'})
  return {socket, url: unixUrl(socket), stop: () => stopPid(pidFile)}
}
