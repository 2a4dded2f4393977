// Where a raw disk that exists only as a stream comes from: standard input
// (`backup -`), or the stdout of a command (`--source-command`, e.g.
// `rbd export POOL/IMG -` or `ssh host dd if=/dev/vg/lv`). A StreamSource
// gives the stream, says whether its producer succeeded, and stops it.
// The command runs under /bin/sh in its own process group, so stopping it
// (a failed backup, a time-out) also stops what it started (ssh, dd); its
// stderr is kept (bounded) so a failure can name its first line.
import {spawn, type ChildProcess} from 'node:child_process'
import type {Readable} from 'node:stream'
import {IoError, UsageError} from '../errors.js'

export interface StreamSource {
  /** How the manifest and messages name the source: "-" or "command: CMD". */
  readonly label: string
  readonly stream: Readable
  /** Resolves when the producer has finished well; rejects saying how it failed. */
  finished(): Promise<void>
  /** Stops the producer if it still runs; safe to call more than once. */
  stop(): Promise<void>
}

/** stderr kept from a source command, at most. */
const STDERR_BYTES = 8192
/** How long a stopped command gets between SIGTERM and SIGKILL. */
const KILL_GRACE_MS = 2000

/** Standard input as the disk; a terminal is refused (nobody types a disk). */
export function stdinSource(stream: Readable & {isTTY?: boolean} = process.stdin): StreamSource {
  if (stream.isTTY) {
    throw new UsageError('backup - reads the disk from standard input, which is a terminal', {
      hint: 'pipe the disk in (e.g. rbd export POOL/IMG - | vdsnap backup - --disk NAME) or use --source-command',
    })
  }
  return {
    label: '-',
    stream,
    finished: async () => {},
    stop: async () => {
      stream.destroy()
    },
  }
}

/** Runs `command` under /bin/sh; its stdout is the disk. */
export function commandSource(command: string): StreamSource {
  const child: ChildProcess = spawn('/bin/sh', ['-c', command], {stdio: ['ignore', 'pipe', 'pipe'], detached: true})
  let stderr = ''
  child.stderr!.on('data', (d: Buffer) => {
    if (stderr.length < STDERR_BYTES) stderr += d.toString('utf8').slice(0, STDERR_BYTES - stderr.length)
  })
  // Node resumes (drains into nowhere) a child's stdout that no one listens to when the child exits,
  // losing what a quick command wrote before the backup reads it; a 'readable' listener marks it as ours.
  child.stdout!.on('readable', () => undefined)
  const stderrDone = new Promise<void>((resolve) => child.stderr!.once('close', () => resolve()))
  let stopped = false
  // 'exit', not 'close': a stopped command's unread stdout must not keep us waiting.
  const exit = new Promise<{code: number | null; signal: NodeJS.Signals | null}>((resolve, reject) => {
    child.once('error', (e) => reject(new IoError(`source command "${command}" could not start: ${e.message}`, {cause: e})))
    child.once('exit', (code, signal) => resolve({code, signal}))
  })
  exit.catch(() => undefined)
  // In its own process group the command does not get the terminal's Ctrl-C: if vdsnap ends
  // (a signal, an uncaught error) while it runs, stop it rather than leave it reading a disk for no one.
  const onExit = () => {
    try {
      process.kill(-child.pid!, 'SIGTERM')
    } catch {
      // already gone
    }
  }
  process.once('exit', onExit)
  void exit.finally(() => process.removeListener('exit', onExit)).catch(() => undefined)
  const firstLine = () => stderr.split('\n').map((l) => l.trim()).find((l) => l !== '')
  return {
    label: `command: ${command}`,
    stream: child.stdout!,
    async finished() {
      const {code, signal} = await exit
      if (code === 0) return
      // The last of its stderr may still be in the pipe (bounded wait: a grandchild may hold it open).
      let timer: NodeJS.Timeout | undefined
      await Promise.race([stderrDone, new Promise<void>((resolve) => (timer = setTimeout(resolve, KILL_GRACE_MS)))])
      clearTimeout(timer)
      const line = firstLine()
      const how = code !== null ? `exited with status ${code}` : `was killed by ${signal}`
      throw new IoError(`source command "${command}" ${how}${line ? `: ${line}` : ''}`, {
        hint: 'run the command by hand to see why (its standard output must be the raw disk); nothing was stored',
      })
    },
    async stop() {
      if (stopped || child.exitCode !== null || child.signalCode !== null) return
      stopped = true
      const group = (sig: NodeJS.Signals) => {
        try {
          process.kill(-child.pid!, sig)
        } catch {
          // already gone
        }
      }
      group('SIGTERM')
      const timer = setTimeout(() => group('SIGKILL'), KILL_GRACE_MS)
      child.stdout!.destroy()
      await exit.catch(() => undefined)
      clearTimeout(timer)
    },
  }
}
