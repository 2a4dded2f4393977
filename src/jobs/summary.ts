// The one JSON document every `vdsnap run` writes (stdout with --json, and
// --summary-file), and what is done with it: the --on-success /
// --on-failure hook gets it on stdin. A run that could not even start (bad
// job file, unknown job) writes one too, with `error` set and no jobs.
import {spawn} from 'node:child_process'
import {writeFile} from 'node:fs/promises'
import {IoError, toVdsnapError} from '../errors.js'
import type {ExportSummary} from './export-step.js'

export interface ErrorSummary {
  message: string
  kind: string
  /** The error's code (ERROR_CODES in src/errors.ts). */
  code?: string
  exitCode: number
}

export interface DiskSummary {
  name: string
  path: string
  ok: boolean
  snapshot: string | null
  parent: string | null
  indexKind: 'full' | 'delta' | null
  bytesRead: number
  bytesNew: number
  bytesStored: number
  changedBlocks: number
  chainLength: number
  durationMs: number
  warnings: string[]
  error: ErrorSummary | null
}

export interface CopySummary {
  repository: string
  ok: boolean
  copied: number
  skipped: number
  error: ErrorSummary | null
  /** The copy repository's own retention (copies[].retention), when set and the copy succeeded. */
  retention: StepSummary | null
}

export interface StepSummary {
  ok: boolean
  detail: unknown
  error: ErrorSummary | null
}

export interface JobSummary {
  job: string
  repository: string
  started: string
  finished: string
  durationMs: number
  exitCode: number
  disks: DiskSummary[]
  copies: CopySummary[]
  exports?: ExportSummary[]
  retention: StepSummary | null
  check: StepSummary | null
  /** The job could not run at all (repository missing, wrong password...). */
  error: ErrorSummary | null
}

export interface RunSummary {
  version: 1
  jobFile: string
  started: string
  finished: string
  exitCode: number
  /** The run could not start: the job file is missing or invalid, the job unknown, the log file unwritable. */
  error: ErrorSummary | null
  jobs: JobSummary[]
}

/** The run's code: the jobs' worst, where any failure beside a success is 3 (partial). */
export function runExitCode(jobs: JobSummary[]): number {
  const codes = jobs.map((j) => j.exitCode)
  if (codes.every((c) => c === 0)) return 0
  if (codes.length > 1 && codes.some((c) => c === 0 || c === 3)) return codes.includes(6) ? 6 : 3
  return codes.find((c) => c !== 0 && c !== 3) ?? 3
}

export async function writeSummaryFile(path: string, summary: RunSummary): Promise<void> {
  await writeFile(path, JSON.stringify(summary, null, 2) + '\n').catch((e) => Promise.reject(toVdsnapError(e, `writing summary file ${path}`)))
}

/** Runs `command` with /bin/sh, the summary on stdin; throws IoError when it fails. */
export function runSummaryHook(which: string, command: string, summary: RunSummary): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', command], {stdio: ['pipe', 'ignore', 'inherit'], env: {...process.env, VDSNAP_EXIT_CODE: String(summary.exitCode)}})
    child.on('error', (e) => reject(toVdsnapError(e, `running the ${which} hook`)))
    child.on('close', (code) => (code === 0 ? resolve() : reject(new IoError(`the ${which} hook "${command}" exited with ${code}`))))
    child.stdin.on('error', () => {}) // a hook that does not read its stdin is fine
    child.stdin.end(JSON.stringify(summary) + '\n')
  })
}
