// Where passwords come from, in order: --password-file, --password-command,
// VDSNAP_PASSWORD, VDSNAP_PASSWORD_FILE, VDSNAP_PASSWORD_COMMAND, and a
// prompt only when both stdin and stderr are terminals. Never hang in cron: without a TTY and
// without a source, fail with the "password" exit code; a password command
// gets VDSNAP_PASSWORD_COMMAND_TIMEOUT (default 60 s) to print the password.
import {spawn} from 'node:child_process'
import {readFile} from 'node:fs/promises'
import {PasswordError, UsageError, toVdsnapError} from '../errors.js'
import {parseDuration} from '../flow/duration.js'

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

/**
 * Asks on the terminal without echo. The question is written once and
 * stays on the screen: the terminal is put in raw mode and the keys are
 * read here (no readline, whose line refresh erased the question). Enter
 * ends the answer, Backspace deletes, Ctrl-U clears, Ctrl-D on an empty
 * answer or Ctrl-C abort: Ctrl-C as the signal it would have been.
 */
export async function prompt(question: string): Promise<string> {
  const stdin = process.stdin
  const wasRaw = stdin.isRaw
  stdin.setRawMode(true) // before the question: keys typed as soon as it shows must not echo
  process.stderr.write(question)
  stdin.resume()
  try {
    return await new Promise<string>((resolve, reject) => {
      let answer = ''
      const onData = (d: Buffer) => {
        for (const ch of d.toString('utf8')) {
          if (ch === '\r' || ch === '\n') return done(() => resolve(answer))
          if (ch === '\u0003') return interrupt()
          if (ch === '\u0004' && answer === '') return done(() => reject(new PasswordError('no password given (end of input at the prompt)')))
          if (ch === '\u007f' || ch === '\b') answer = [...answer].slice(0, -1).join('')
          else if (ch === '\u0015') answer = ''
          else if (ch >= ' ') answer += ch
        }
      }
      const done = (settle: () => void) => {
        stdin.off('data', onData)
        settle()
      }
      // Raw mode turned Ctrl-C into a key: deliver the signal it would have
      // been (the handler cleans up and exits 130) and never settle; the
      // timer keeps the process alive until the signal arrives.
      const interrupt = () => {
        stdin.off('data', onData)
        stdin.setRawMode(wasRaw)
        stdin.pause()
        process.stderr.write('\n')
        setTimeout(() => reject(new PasswordError('password prompt interrupted')), 5000)
        process.kill(process.pid, 'SIGINT')
      }
      stdin.on('data', onData)
    })
  } finally {
    stdin.setRawMode(wasRaw)
    stdin.pause()
    process.stderr.write('\n')
  }
}

/** Password flags given on the command line; they win over every environment variable. */
export interface PasswordFlags {
  file?: string
  command?: string
}

/**
 * A lazy password source for opening an existing repository, first match
 * wins: the flags (--password-file, --password-command), then
 * PREFIX_PASSWORD, PREFIX_PASSWORD_FILE, PREFIX_PASSWORD_COMMAND, then a
 * prompt. `prefix` selects the variables: VDSNAP_ for the main repository,
 * VDSNAP_TO_ for copy's destination. An explicit flag beats the
 * environment, as with restic, so a one-off command line is not overridden
 * by a variable left in a profile.
 */
export function passwordSource(given: PasswordFlags = {}, prefix = 'VDSNAP_', label = 'repository', flagPrefix = '--'): () => Promise<string> {
  return async () => {
    if (given.file !== undefined) return readPasswordFile(given.file)
    if (given.command !== undefined) return runPasswordCommand(given.command, `${flagPrefix}password-command`)
    const env = process.env
    if (env[`${prefix}PASSWORD`] !== undefined) return env[`${prefix}PASSWORD`]!
    if (env[`${prefix}PASSWORD_FILE`]) return readPasswordFile(env[`${prefix}PASSWORD_FILE`]!)
    const cmd = env[`${prefix}PASSWORD_COMMAND`]
    if (cmd) return runPasswordCommand(cmd, `${prefix}PASSWORD_COMMAND`)
    if (canPrompt()) return prompt(`${label} password: `)
    throw new PasswordError(`the ${label} is encrypted and no password was given`, {
      hint: `use ${flagPrefix}password-file or ${flagPrefix}password-command, or set ${prefix}PASSWORD, ${prefix}PASSWORD_FILE or ${prefix}PASSWORD_COMMAND`,
    })
  }
}

/**
 * A new password (init, key add, key passwd): the flag naming its file
 * first, then ENV and ENV_FILE, or a prompt asked twice. `flag` is the
 * command's flag, named in the error when there is no source.
 */
export async function newPassword(fileFlag: string | undefined, envName: string, flag: string): Promise<string> {
  if (fileFlag) return readPasswordFile(fileFlag)
  if (process.env[envName] !== undefined) return process.env[envName]!
  if (process.env[`${envName}_FILE`]) return readPasswordFile(process.env[`${envName}_FILE`]!)
  if (canPrompt()) {
    const a = await prompt('new password: ')
    const b = await prompt('repeat the new password: ')
    if (a !== b) throw new PasswordError('the two passwords differ')
    if (a.length === 0) throw new PasswordError('an empty password is not allowed', {hint: 'use "init --no-encryption" for a plaintext repository'})
    return a
  }
  throw new PasswordError('no new password given', {hint: `use ${flag} FILE, or set ${envName} or ${envName}_FILE`})
}
