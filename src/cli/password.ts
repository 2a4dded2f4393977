// Where passwords come from, in order: VDSNAP_PASSWORD, --password-file /
// VDSNAP_PASSWORD_FILE, VDSNAP_PASSWORD_COMMAND, and a prompt only when both
// stdin and stderr are terminals. Never hang in cron: without a TTY and
// without a source, fail with the "password" exit code.
import {execFile} from 'node:child_process'
import {readFile} from 'node:fs/promises'
import {promisify} from 'node:util'
import {PasswordError, toVdsnapError} from '../errors.js'

const exec = promisify(execFile)

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
    if (cmd) {
      try {
        return stripNewline((await exec('/bin/sh', ['-c', cmd], {maxBuffer: 1 << 16})).stdout)
      } catch (e) {
        throw new PasswordError(`${prefix}PASSWORD_COMMAND failed: ${(e as Error).message.split('\n')[0]}`)
      }
    }
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
