// `vdsnap schedule`: the crontab lines for a job file's scheduled jobs,
// and installing them into a user's crontab idempotently. The lines live in
// a block marked with the job file's path, so installing again replaces the
// block, --remove takes it out, and the rest of the crontab is untouched:
//
//   # BEGIN vdsnap /etc/vdsnap/jobs.yaml (managed by "vdsnap schedule")
//   30 2 * * * '/usr/bin/node' '/opt/vdsnap/bin/run.js' run 'nightly' --jobs '/etc/vdsnap/jobs.yaml' --quiet
//   # END vdsnap /etc/vdsnap/jobs.yaml
import {execFile, spawn} from 'node:child_process'
import {promisify} from 'node:util'
import {IoError, NotFoundError} from '../errors.js'
import type {JobFile} from './job-file.js'

const exec = promisify(execFile)

export interface CronCommand {
  /** The node binary and the vdsnap launcher, absolute (cron's PATH is minimal). */
  node: string
  bin: string
  logFile?: string
}

function quote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`
}

export function beginMarker(path: string): string {
  return `# BEGIN vdsnap ${path} (managed by "vdsnap schedule")`
}

export function endMarker(path: string): string {
  return `# END vdsnap ${path}`
}

/** One line per scheduled job (jobs without `schedule` are left out). */
export function cronLines(file: JobFile, cmd: CronCommand): string[] {
  return file.jobs
    .filter((j) => j.schedule)
    .map((j) => `${j.schedule} ${quote(cmd.node)} ${quote(cmd.bin)} run ${quote(j.name)} --jobs ${quote(file.path)} --quiet${cmd.logFile ? ` --log-file ${quote(cmd.logFile)}` : ''}`)
}

/** The crontab text with this job file's block replaced by `lines` (or removed when null). */
export function replaceBlock(crontab: string, path: string, lines: string[] | null): string {
  const out: string[] = []
  let inside = false
  for (const line of crontab.split('\n')) {
    if (line === beginMarker(path)) inside = true
    else if (inside && line === endMarker(path)) inside = false
    else if (!inside) out.push(line)
  }
  while (out.length > 0 && out[out.length - 1] === '') out.pop()
  if (lines) out.push(beginMarker(path), ...lines, endMarker(path))
  return out.length ? out.join('\n') + '\n' : ''
}

function userArgs(user?: string): string[] {
  return user ? ['-u', user] : []
}

export async function readCrontab(user?: string): Promise<string> {
  try {
    return (await exec('crontab', [...userArgs(user), '-l'])).stdout
  } catch (e) {
    const err = e as NodeJS.ErrnoException & {stderr?: string}
    if (err.code === 'ENOENT') throw new NotFoundError('crontab is not installed', {hint: 'install the "cron" package (apt-get install cron)'})
    if (/no crontab for/i.test(err.stderr ?? '')) return ''
    throw new IoError(`crontab -l failed: ${(err.stderr ?? err.message).trim().split('\n')[0]}`)
  }
}

export function writeCrontab(text: string, user?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('crontab', [...userArgs(user), '-'], {stdio: ['pipe', 'ignore', 'pipe']})
    let stderr = ''
    child.stderr.on('data', (d) => (stderr += d))
    child.on('error', (e) => reject(new NotFoundError(`cannot run crontab: ${e.message}`, {hint: 'install the "cron" package'})))
    child.on('close', (code) => (code === 0 ? resolve() : reject(new IoError(`crontab - failed: ${stderr.trim().split('\n')[0]}`))))
    child.stdin.end(text)
  })
}

/** Installs (lines) or removes (null) the job file's block; returns the new crontab. */
export async function updateCrontab(path: string, lines: string[] | null, user?: string): Promise<string> {
  const before = await readCrontab(user)
  const after = replaceBlock(before, path, lines)
  if (after !== before) await writeCrontab(after, user)
  return after
}
