// Where passwords come from, in order: VDSNAP_PASSWORD, --password-file /
// VDSNAP_PASSWORD_FILE, VDSNAP_PASSWORD_COMMAND, and a prompt only when both
// stdin and stderr are terminals. Never hang in cron: without a TTY and
// without a source, fail with the "password" exit code; a password command
// gets VDSNAP_PASSWORD_COMMAND_TIMEOUT (default 60 s) to print the password.
import {spawn} from 'node:child_process'
import {readFile} from 'node:fs/promises'
import {PasswordError, UsageError, toVdsnapError} from '../errors.js'
import {parseDuration} from './durations.js'

export const PASSWORD_COMMAND_TIMEOUT_MS = 60_000
const PASSWORD_COMMAND_MAX_OUTPUT = 1 << 16

function stripNewline(s: string): string {
  return s.replace(/\r?\n$/, '')
}

export async function readPasswordFile(path: string): Promise<string> {
  try {
    return stripNewline(await readFile(path, 'utf8'))
  } catch (e) {
    throw toVdsnapError(e, `reading password file ${path}`)
  }
}

/** VDSNAP_PASSWORD_COMMAND_TIMEOUT (30s, 2m...; plain numbers are seconds), else 60 s. */
export function passwordCommandTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  const text = env.VDSNAP_PASSWORD_COMMAND_TIMEOUT
  if (text === undefined || text.trim() === '') return PASSWORD_COMMAND_TIMEOUT_MS
  try {
    return parseDuration(text)
  } catch {
    throw new UsageError(`VDSNAP_PASSWORD_COMMAND_TIMEOUT="${text}" is not a duration`, {hint: 'write e.g. 30s or 2m'})
  }
}

/**
 * Runs a password command with /bin/sh; its stdout, less one trailing
 * newline, is the password. `what` names it in errors. Without a terminal
 * it runs in its own process group, so a time-out kills the shell and
 * everything it started; on a terminal it keeps the terminal (pinentry,
 * /dev/tty prompts) and only the shell is killed. Either way the call
 * returns at the time-out instead of waiting for the pipes to close.
 */
export function runPasswordCommand(command: string, what: string, timeoutMs = passwordCommandTimeoutMs()): Promise<string> {
  const ownGroup = !(process.stdin.isTTY || process.stdout.isTTY || process.stderr.isTTY)
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', command], {stdio: ['ignore', 'pipe', 'pipe'], detached: ownGroup})
    const out: Buffer[] = []
    const err: Buffer[] = []
    let outBytes = 0
    let settled = false
    const finish = (error: PasswordError | null, password = '') => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (error) {
        try {
          if (ownGroup && child.pid !== undefined) process.kill(-child.pid, 'SIGKILL')
          else child.kill('SIGKILL')
        } catch {} // already gone
        child.stdout.destroy()
        child.stderr.destroy()
        reject(error)
      } else resolve(password)
    }
    const timer = setTimeout(
      () => finish(new PasswordError(`${what} did not finish within ${timeoutMs / 1000} s`, {hint: 'make it print the password and exit, or raise VDSNAP_PASSWORD_COMMAND_TIMEOUT'})),
      timeoutMs,
    )
    child.stdout.on('data', (d: Buffer) => {
      outBytes += d.length
      if (outBytes > PASSWORD_COMMAND_MAX_OUTPUT) finish(new PasswordError(`${what} printed more than ${PASSWORD_COMMAND_MAX_OUTPUT} bytes; a password is expected`))
      else out.push(d)
    })
    child.stderr.on('data', (d: Buffer) => err.push(d))
    child.on('error', (e) => finish(new PasswordError(`${what} could not be started: ${e.message}`)))
    child.on('close', (code, signal) => {
      if (code === 0) return finish(null, stripNewline(Buffer.concat(out).toString('utf8')))
      const status = signal ? `killed by ${signal}` : `exit ${code}`
      const firstLine = Buffer.concat(err).toString('utf8').split('\n').map((l) => l.trim()).find((l) => l.length > 0)
      finish(new PasswordError(`${what} failed (${status})${firstLine ? `: ${firstLine}` : ''}`, {hint: 'run it by hand to see why'}))
    })
  })
}

export function canPrompt(): boolean {
  return Boolean(process.stdin.isTTY && process.stderr.isTTY)
}

export async function prompt(question: string): Promise<string> {
  const {createInterface} = await import('node:readline')
  const rl = createInterface({input: process.stdin, output: process.stderr, terminal: true})
  const anyRl = rl as unknown as {_writeToOutput: (s: string) => void}
  process.stderr.write(question)
  anyRl._writeToOutput = () => {} // do not echo
  try {
    return await new Promise<string>((resolve) => rl.question('', resolve))
  } finally {
    rl.close()
    process.stderr.write('\n')
  }
}

/**
 * A lazy password source for opening an existing repository. `prefix`
 * selects the variables: VDSNAP_PASSWORD... for the main repository,
 * VDSNAP_TO_PASSWORD... for copy's destination.
 */
export function passwordSource(passwordFile?: string, prefix = 'VDSNAP_', label = 'repository'): () => Promise<string> {
  return async () => {
    if (process.env[`${prefix}PASSWORD`] !== undefined) return process.env[`${prefix}PASSWORD`]!
    if (passwordFile) return readPasswordFile(passwordFile)
    const cmd = process.env[`${prefix}PASSWORD_COMMAND`]
    if (cmd) return runPasswordCommand(cmd, `${prefix}PASSWORD_COMMAND`)
    if (canPrompt()) return prompt(`${label} password: `)
    throw new PasswordError(`the ${label} is encrypted and no password was given`, {
      hint: `set ${prefix}PASSWORD, ${prefix}PASSWORD_FILE or ${prefix}PASSWORD_COMMAND`,
    })
  }
}

/** A new password (init, key add, key passwd): the same sources, or a prompt asked twice. */
export async function newPassword(fileFlag: string | undefined, envName: string): Promise<string> {
  if (process.env[envName] !== undefined) return process.env[envName]!
  if (fileFlag) return readPasswordFile(fileFlag)
  if (canPrompt()) {
    const a = await prompt('new password: ')
    const b = await prompt('repeat the new password: ')
    if (a !== b) throw new PasswordError('the two passwords differ')
    if (a.length === 0) throw new PasswordError('an empty password is not allowed', {hint: 'use "init --no-encryption" for a plaintext repository'})
    return a
  }
  throw new PasswordError('no new password given', {hint: `set ${envName} or use the password-file flag`})
}
