// The job file (YAML or JSON; docs/jobs.example.yaml is the commented
// reference): repository, password source, disks with hooks, copies,
// retention, integrity checks, a cron schedule, storage settings (per
// repository and per copy) and where the run's outcome goes (summary file,
// hooks, log file) per job. Validation is
// strict: an unknown key or a wrong type is a one-line UsageError naming
// the key path, e.g. `jobs.nightly.disks[1].path: required`.
import {parseExports, type ExportSpec} from './export-step.js'
import {readFile} from 'node:fs/promises'
import {dirname, resolve} from 'node:path'
import {parse as parseYaml} from 'yaml'
import {UsageError, toVdsnapError} from '../errors.js'
import {readDuration} from '../flow/duration.js'
import {parseKeepCount, parseWithin, type RetentionPolicy} from '../prune/retention.js'
import {parseSize} from '../repo/config.js'
import type {StorageOptions} from '../repo/storage.js'

export interface PasswordSpec {
  file?: string
  command?: string
  /** Name of an environment variable holding the password. */
  env?: string
}

export interface DiskSpec {
  path: string
  name?: string
  format?: string
  tags: string[]
  preHook?: string
  postHook?: string
  /** backup --allow-in-use: a source open for writing is backed up, tagged crash-consistent (the job warns). */
  allowInUse?: boolean
  /** NBD sources: the QEMU dirty bitmap to read changes from (backup --bitmap). */
  bitmap?: string
}

/** What `storage:` may set for one repository: the `run` storage flags, by the same names. */
export type StorageSpec = Pick<StorageOptions, 'sshKey' | 'knownHostsFile' | 's3Endpoint' | 's3PathStyle' | 's3Region' | 'limitUpload' | 'limitDownload' | 'connections'>

export interface CopySpec {
  repository: string
  password?: PasswordSpec
  storage: StorageSpec
  /** The copy repository's own retention (applied there after the copy), so it does not only grow. */
  retention?: RetentionSpec
}

/** Where `run` sends this job's outcome when the matching flag is not given. */
export interface OutputSpec {
  summaryFile?: string
  onSuccess?: string
  onFailure?: string
  logFile?: string
}

export interface RetentionSpec {
  policy: RetentionPolicy
  prune: boolean
}

export interface CheckSpec {
  /** Milliseconds between checks; 0 = every run; null = never. */
  everyMs: number | null
  /** Each check reads part n of `parts`, rotating. */
  parts: number
}

export interface Job {
  name: string
  repository: string
  password?: PasswordSpec
  storage: StorageSpec
  disks: DiskSpec[]
  copies: CopySpec[]
  exports: ExportSpec[]
  retention?: RetentionSpec
  check: CheckSpec
  schedule?: string
  lockWaitMs: number
  outputs: OutputSpec
}

export interface JobFile {
  path: string
  stateFile: string
  jobs: Job[]
}

type Obj = Record<string, unknown>

function fail(key: string, what: string): never {
  throw new UsageError(`job file: ${key}: ${what}`, {hint: 'see docs/jobs.example.yaml'})
}

function obj(v: unknown, key: string, allowed: string[]): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(key, 'must be a mapping')
  for (const k of Object.keys(v)) if (!allowed.includes(k)) fail(`${key}.${k}`, `unknown key (allowed: ${allowed.join(', ')})`)
  return v as Obj
}

function str(o: Obj, k: string, key: string, required: true): string
function str(o: Obj, k: string, key: string, required?: false): string | undefined
function str(o: Obj, k: string, key: string, required = false): string | undefined {
  const v = o[k]
  if (v === undefined || v === null) return required ? fail(`${key}.${k}`, 'required') : undefined
  if (typeof v !== 'string' || v === '') fail(`${key}.${k}`, 'must be a non-empty string')
  return v
}

function list(o: Obj, k: string, key: string): unknown[] {
  const v = o[k]
  if (v === undefined || v === null) return []
  if (!Array.isArray(v)) fail(`${key}.${k}`, 'must be a list')
  return v
}

function strings(o: Obj, k: string, key: string): string[] {
  return list(o, k, key).map((s, i) => (typeof s === 'string' && s ? s : fail(`${key}.${k}[${i}]`, 'must be a non-empty string')))
}

/** Durations in job files: 30s, 10m, 2h, 1d, 1w. */
function duration(text: string, key: string): number {
  return readDuration(text, {strict: true}) ?? fail(key, `"${text}" is not a duration (e.g. 10m, 1d, 1w)`)
}

function password(v: unknown, key: string): PasswordSpec | undefined {
  if (v === undefined || v === null) return undefined
  const o = obj(v, key, ['file', 'command', 'env'])
  const spec = {file: str(o, 'file', key), command: str(o, 'command', key), env: str(o, 'env', key)}
  if (Object.values(spec).filter(Boolean).length !== 1) fail(key, 'give exactly one of file, command, env')
  return spec
}

const STORAGE_KEYS = ['ssh-key', 'known-hosts', 's3-endpoint', 's3-path-style', 's3-region', 'limit-upload', 'limit-download', 'connections']

function size(o: Obj, k: string, key: string): number | undefined {
  const v = o[k]
  if (v === undefined || v === null) return undefined
  if (typeof v === 'number' && Number.isInteger(v) && v > 0) return v
  if (typeof v !== 'string') fail(`${key}.${k}`, 'must be a size such as 20MiB')
  try {
    return parseSize(v)
  } catch {
    return fail(`${key}.${k}`, `"${v}" is not a size such as 20MiB or 512KiB`)
  }
}

/** A repository's `storage:` mapping; file names are relative to the job file's directory. */
function storage(v: unknown, key: string, dir: string): StorageSpec {
  if (v === undefined || v === null) return {}
  const o = obj(v, key, STORAGE_KEYS)
  const file = (k: string) => {
    const p = str(o, k, key)
    return p === undefined ? undefined : resolve(dir, p)
  }
  if (o['s3-path-style'] !== undefined && typeof o['s3-path-style'] !== 'boolean') fail(`${key}.s3-path-style`, 'must be true or false')
  const conns = o.connections
  if (conns !== undefined && (typeof conns !== 'number' || !Number.isInteger(conns) || conns < 1 || conns > 256)) fail(`${key}.connections`, 'must be a whole number from 1 to 256')
  const spec: StorageSpec = {
    sshKey: file('ssh-key'), knownHostsFile: file('known-hosts'), s3Endpoint: str(o, 's3-endpoint', key), s3PathStyle: o['s3-path-style'] as boolean | undefined,
    s3Region: str(o, 's3-region', key), limitUpload: size(o, 'limit-upload', key), limitDownload: size(o, 'limit-download', key), connections: conns as number | undefined,
  }
  return Object.fromEntries(Object.entries(spec).filter(([, x]) => x !== undefined)) as StorageSpec
}

function disk(v: unknown, key: string): DiskSpec {
  const o = obj(v, key, ['path', 'name', 'format', 'tags', 'pre-hook', 'post-hook', 'allow-in-use', 'bitmap'])
  if (o['allow-in-use'] !== undefined && typeof o['allow-in-use'] !== 'boolean') fail(`${key}.allow-in-use`, 'must be true or false')
  return {
    path: str(o, 'path', key, true), name: str(o, 'name', key), format: str(o, 'format', key), tags: strings(o, 'tags', key),
    preHook: str(o, 'pre-hook', key), postHook: str(o, 'post-hook', key), allowInUse: o['allow-in-use'] as boolean | undefined,
    bitmap: str(o, 'bitmap', key),
  }
}

const KEEPS = ['last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const

function retention(v: unknown, key: string): RetentionSpec | undefined {
  if (v === undefined || v === null) return undefined
  const o = obj(v, key, [...KEEPS.map((k) => `keep-${k}`), 'keep-within', 'keep-tag', 'utc', 'prune'])
  const policy: RetentionPolicy = {tags: strings(o, 'keep-tag', key)}
  for (const k of KEEPS) {
    const raw = o[`keep-${k}`]
    if (raw === undefined) continue
    if (typeof raw !== 'number' && typeof raw !== 'string') fail(`${key}.keep-${k}`, 'must be a count or "unlimited"')
    try {
      policy[k] = parseKeepCount(String(raw), `keep-${k}`)
    } catch {
      fail(`${key}.keep-${k}`, `"${raw}" is not a count or "unlimited"`)
    }
  }
  policy.within = str(o, 'keep-within', key)
  if (policy.within) {
    try {
      parseWithin(policy.within)
    } catch {
      fail(`${key}.keep-within`, `"${policy.within}" is not a duration like 7d, 2w, 1m, 1y`)
    }
  }
  for (const b of ['utc', 'prune'] as const) if (o[b] !== undefined && typeof o[b] !== 'boolean') fail(`${key}.${b}`, 'must be true or false')
  policy.utc = o.utc === true
  return {policy, prune: o.prune !== false}
}

function check(v: unknown, key: string): CheckSpec {
  if (v === undefined || v === null) return {everyMs: 7 * 86_400_000, parts: 4}
  const o = obj(v, key, ['every', 'parts'])
  const every = str(o, 'every', key) ?? '1w'
  const parts = o.parts ?? 4
  if (typeof parts !== 'number' || !Number.isInteger(parts) || parts < 1 || parts > 1000) fail(`${key}.parts`, 'must be a whole number from 1 to 1000')
  const everyMs = every === 'never' ? null : every === 'run' ? 0 : duration(every, `${key}.every`)
  return {everyMs, parts}
}

function job(name: string, v: unknown, key: string, dir: string): Job {
  if (!/^[A-Za-z0-9._-]+$/.test(name)) fail(key, 'a job name may hold only letters, digits, . _ -')
  const o = obj(v, key, ['repository', 'password', 'storage', 'disks', 'copies', 'exports', 'retention', 'check', 'schedule', 'lock-wait', 'summary-file', 'on-success', 'on-failure', 'log-file'])
  const disks = list(o, 'disks', key).map((d, i) => disk(d, `${key}.disks[${i}]`))
  if (disks.length === 0) fail(`${key}.disks`, 'required: at least one disk')
  const copies = list(o, 'copies', key).map((c, i) => {
    const ck = `${key}.copies[${i}]`
    const co = obj(c, ck, ['repository', 'password', 'storage', 'retention'])
    return {
      repository: str(co, 'repository', ck, true), password: password(co.password, `${ck}.password`), storage: storage(co.storage, `${ck}.storage`, dir),
      retention: retention(co.retention, `${ck}.retention`),
    }
  })
  const schedule = str(o, 'schedule', key)
  if (schedule !== undefined && !/^(@(hourly|daily|weekly|monthly|yearly|annually|midnight)|(\S+\s+){4}\S+)$/.test(schedule.trim())) {
    fail(`${key}.schedule`, `"${schedule}" is not a cron time (five fields, or @daily...)`)
  }
  const lockWait = str(o, 'lock-wait', key)
  const path = (k: string) => {
    const p = str(o, k, key)
    return p === undefined ? undefined : resolve(dir, p)
  }
  return {
    name, repository: str(o, 'repository', key, true), password: password(o.password, `${key}.password`), storage: storage(o.storage, `${key}.storage`, dir), disks, copies,
    exports: parseExports(o.exports, `${key}.exports`, dir, fail, duration),
    retention: retention(o.retention, `${key}.retention`), check: check(o.check, `${key}.check`), schedule: schedule?.trim(),
    lockWaitMs: lockWait ? duration(lockWait, `${key}.lock-wait`) : 10 * 60_000,
    outputs: {summaryFile: path('summary-file'), onSuccess: str(o, 'on-success', key), onFailure: str(o, 'on-failure', key), logFile: path('log-file')},
  }
}

/** Parses and validates a job file's text; `path` resolves relative paths and names the state file. */
export function parseJobFile(text: string, path: string): JobFile {
  let doc: unknown
  try {
    doc = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text)
  } catch (e) {
    // The YAML parser's first line ends in ":" before a source excerpt; keep the line, not the colon.
    const why = (e as Error).message.split('\n')[0]!.replace(/\s*:\s*$/, '')
    throw new UsageError(`job file ${path} is not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'}: ${why}`, {hint: 'see docs/jobs.example.yaml'})
  }
  const root = obj(doc, 'top level', ['jobs', 'state-file'])
  const jobs = obj(root.jobs ?? fail('jobs', 'required'), 'jobs', Object.keys(root.jobs as Obj))
  const list = Object.entries(jobs).map(([name, v]) => job(name, v, `jobs.${name}`, dirname(path)))
  if (list.length === 0) fail('jobs', 'no jobs defined')
  const stateFile = str(root, 'state-file', 'top level') ?? `${path}.state.json`
  return {path, stateFile: resolve(dirname(path), stateFile), jobs: list}
}

export async function loadJobFile(path: string): Promise<JobFile> {
  const abs = resolve(path)
  const text = await readFile(abs, 'utf8').catch((e) => Promise.reject(toVdsnapError(e, `reading job file ${abs}`)))
  return parseJobFile(text, abs)
}

export function findJob(file: JobFile, name: string): Job {
  const j = file.jobs.find((x) => x.name === name)
  if (!j) throw new UsageError(`no job "${name}" in ${file.path}`, {hint: `jobs there: ${file.jobs.map((x) => x.name).join(', ')}`})
  return j
}
