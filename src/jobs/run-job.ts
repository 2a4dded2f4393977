// `vdsnap run`: one job from the job file, unattended, calling the engines
// directly (never the CLI).
//
// 1. Open the job's repository with its password source and storage
//    settings: the job file's `storage:` for that repository, overridden
//    setting by setting by the storage flags given to `run` (which apply to
//    every repository of the run, copies included).
// 2. Back up each disk under a shared lock (checked before commit, see
//    prune.ts). A failing disk is recorded and the next one still runs.
// 3. Copy the job's disks' snapshots to each copy repository (shared locks
//    on both sides; copySnapshots skips what the destination has).
//    A copy with its own retention sends only what that policy keeps (over
//    both repositories' snapshots), then applies it in the copy repository
//    (forget per disk + prune, exclusive lock there), as step 4 does here.
// 3b. Exports (export-step.ts), when due: the newest snapshot of each disk
//    as an archive at a path made from a template.
// 4. Retention: forget by the policy for each of the job's disks, then
//    prune, under the exclusive lock (waiting up to lock-wait).
// 5. When due (check.every), check --read-data-subset n/m with the next
//    part n from the state file, then advance it.
// 6. The summary: per disk the snapshot and its figures, per step its
//    outcome, and the exit code (jobExitCode): the failure's own code when
//    the job could not start or every disk failed; 6 when the check found
//    damage; 3 (partial) when some disk, copy, retention or check failed or
//    a disk warned; else 0.
import {EXIT_CODES, toVdsnapError} from '../errors.js'
import {runBackup, defaultDiskName} from '../backup/backup.js'
import {runCheck} from '../check/check.js'
import {runForget} from '../prune/run-forget.js'
import {runPrune} from '../prune/prune.js'
import {applyPolicy} from '../prune/retention.js'
import type {Manifest} from '../repo/manifest.js'
import {RepoLock} from '../repo/lock.js'
import {Repository, type PasswordSource} from '../repo/repository.js'
import {openStorage, type StorageOptions} from '../repo/storage.js'
import {afterCheck, dueCheck, readState, writeState} from './check-state.js'
import {exportStep} from './export-step.js'
import type {Job, JobFile, PasswordSpec, RetentionSpec, StorageSpec} from './job-file.js'
import type {CopySummary, DiskSummary, ErrorSummary, JobSummary, StepSummary} from './summary.js'

export interface RunDeps {
  /** Turns a job's password spec into a password source (the CLI supplies it). */
  passwordFor: (spec: PasswordSpec | undefined) => PasswordSource
  /** Storage settings from the command line (unset ones undefined); they win over the job file's. */
  storage?: StorageOptions
  now?: () => Date
  log?: (line: string) => void
  /** `run --lock-wait`: wins over every job's lock-wait. */
  lockWaitMs?: number
}

/** "1 block", "2 blocks" in log lines. */
function counted(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`
}

function waitMs(job: Job, deps: RunDeps): number {
  return deps.lockWaitMs ?? job.lockWaitMs
}

/** The job file's settings for one repository with the command line's on top. */
export function storageFor(spec: StorageSpec, flags: StorageOptions = {}): StorageOptions {
  const given = Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined))
  return {...spec, ...given}
}

export function errorSummary(e: unknown): ErrorSummary {
  const err = toVdsnapError(e)
  return {message: err.oneLine(), kind: err.kind, code: err.code, exitCode: EXIT_CODES[err.kind]}
}

async function openRepo(location: string, spec: PasswordSpec | undefined, storage: StorageSpec, deps: RunDeps): Promise<Repository> {
  const backend = await openStorage(location, storageFor(storage, deps.storage))
  try {
    return await Repository.open(backend, deps.passwordFor(spec))
  } catch (e) {
    await backend.close().catch(() => {})
    throw e
  }
}

async function withLock<T>(repo: Repository, exclusive: boolean, command: string, waitMs: number, fn: (lock: RepoLock) => Promise<T>): Promise<T> {
  const lock = await RepoLock.acquire(repo.backend, {exclusive, command, waitMs})
  try {
    return await fn(lock)
  } finally {
    await lock.release().catch(() => {})
  }
}

async function backupDisk(repo: Repository, job: Job, d: Job['disks'][number], deps: RunDeps): Promise<DiskSummary> {
  const started = Date.now()
  const name = d.name ?? defaultDiskName(d.path)
  const base: DiskSummary = {name, path: d.path, ok: false, snapshot: null, parent: null, indexKind: null, bytesRead: 0, bytesNew: 0, bytesStored: 0, changedBlocks: 0, chainLength: 0, durationMs: 0, warnings: [], error: null}
  try {
    const res = await withLock(repo, false, 'run backup', waitMs(job, deps), (lock) =>
      runBackup(repo, {source: d.path, disk: name, format: d.format, tags: d.tags, preHook: d.preHook, postHook: d.postHook, allowInUse: d.allowInUse, bitmap: d.bitmap, now: deps.now, beforeCommit: () => lock.assertHeld()}),
    )
    const s = res.snapshot
    deps.log?.(`${job.name}: disk ${name}: snapshot ${s.id.slice(0, 8)} (${counted(s.stats.blocksChanged, 'block')} changed)`)
    // a damaged manifest the backup's listing skipped is a warning of this disk (exit 3)
    const warnings = [...res.warnings, ...repo.damagedWarnings()]
    return {...base, ok: true, snapshot: s.id, parent: s.parent, indexKind: s.indexKind, bytesRead: s.stats.bytesRead, bytesNew: s.stats.bytesNew, bytesStored: s.stats.bytesStored, changedBlocks: s.stats.blocksChanged, chainLength: s.chainLength, durationMs: Date.now() - started, warnings}
  } catch (e) {
    const error = errorSummary(e)
    deps.log?.(`${job.name}: disk ${name}: failed: ${error.message}`)
    return {...base, durationMs: Date.now() - started, error}
  }
}

async function copyStep(repo: Repository, job: Job, c: Job['copies'][number], disks: string[], deps: RunDeps): Promise<CopySummary> {
  try {
    const {copySnapshots} = await import('../copy/copy.js')
    const to = await openRepo(c.repository, c.password, c.storage, deps)
    try {
      const res = await withLock(repo, false, 'run copy', waitMs(job, deps), () =>
        withLock(to, false, 'run copy', waitMs(job, deps), async (toLock) => {
          const mine = (await repo.listSnapshots()).filter((m) => disks.includes(m.disk))
          const ids = c.retention ? await keptThere(mine, to, c.retention, disks, deps) : mine.map((m) => m.id)
          return ids.length ? copySnapshots(repo, to, {ids, beforeCommit: () => toLock.assertHeld()}) : {copied: [], skipped: []}
        }),
      )
      deps.log?.(`${job.name}: copy to ${c.repository}: ${counted(res.copied.length, 'snapshot')} copied`)
      const retention = c.retention ? await retentionStep(to, job, c.retention, disks, deps, `copy to ${c.repository}: retention`) : null
      return {repository: c.repository, ok: retention?.ok ?? true, copied: res.copied.length, skipped: res.skipped.length, error: retention?.error ?? null, retention}
    } finally {
      await to.close().catch(() => {})
    }
  } catch (e) {
    const error = errorSummary(e)
    deps.log?.(`${job.name}: copy to ${c.repository}: failed: ${error.message}`)
    return {repository: c.repository, ok: false, copied: 0, skipped: 0, error, retention: null}
  }
}

/**
 * With a copy retention, only the snapshots that policy keeps (applied to
 * this repository's and the copy's snapshots together) are sent: a
 * snapshot the copy repository forgot is not sent again on the next run
 * just to be forgotten once more.
 */
async function keptThere(mine: Manifest[], to: Repository, spec: RetentionSpec, disks: string[], deps: RunDeps): Promise<string[]> {
  const theirs = (await to.listSnapshots()).filter((m) => disks.includes(m.disk))
  const union = new Map([...theirs, ...mine].map((m) => [m.id, m]))
  const kept = new Set(applyPolicy([...union.values()], spec.policy, (deps.now ?? (() => new Date()))()).keep.map((k) => k.snapshot.id))
  return mine.filter((m) => kept.has(m.id)).map((m) => m.id)
}

async function retentionStep(repo: Repository, job: Job, spec: RetentionSpec, disks: string[], deps: RunDeps, what = 'retention'): Promise<StepSummary> {
  try {
    const detail = await withLock(repo, true, 'run forget', waitMs(job, deps), async (lock) => {
      let removed = 0
      for (const disk of disks) {
        const r = await runForget(repo, {policy: spec.policy, disk, now: deps.now, assertHeld: () => lock.assertHeld()})
        removed += r.removed.length
      }
      const prune = spec.prune ? await runPrune(repo, {assertHeld: () => lock.assertHeld()}) : null
      return {snapshotsRemoved: removed, prune}
    })
    deps.log?.(`${job.name}: ${what}: ${counted(detail.snapshotsRemoved, 'snapshot')} removed${detail.prune ? `, ${counted(detail.prune.chunksRemoved, 'chunk')} pruned` : ''}`)
    return {ok: true, detail, error: null}
  } catch (e) {
    const error = errorSummary(e)
    deps.log?.(`${job.name}: ${what}: failed: ${error.message}`)
    return {ok: false, detail: null, error}
  }
}

async function checkStep(repo: Repository, job: Job, file: JobFile, now: Date, deps: RunDeps): Promise<StepSummary | null> {
  const state = await readState(file.stateFile)
  const due = dueCheck(state.jobs[job.name], job.check.everyMs, job.check.parts, now)
  if (!due) return null
  const subset = `${due.part}/${due.parts}`
  try {
    const res = await withLock(repo, false, 'run check', waitMs(job, deps), () => runCheck(repo, {readDataSubset: subset}))
    const fresh = await readState(file.stateFile)
    fresh.jobs[job.name] = afterCheck(due.part, due.parts, now, fresh.jobs[job.name])
    await writeState(file.stateFile, fresh)
    deps.log?.(`${job.name}: check ${subset}: ${res.chunksRead} chunks read, ${res.findings.length} findings`)
    const detail = {subset, snapshots: res.snapshots, chunksRead: res.chunksRead, findings: res.findings}
    if (res.findings.length === 0) return {ok: true, detail, error: null}
    return {ok: false, detail, error: {message: `check ${subset} found ${res.findings.length} problems: ${res.findings[0]!.message}`, kind: 'data', exitCode: EXIT_CODES.data}}
  } catch (e) {
    return {ok: false, detail: {subset}, error: errorSummary(e)}
  }
}

/** The job's exit code from its parts; see the module comment. */
export function jobExitCode(s: Omit<JobSummary, 'exitCode'>): number {
  const failed = s.disks.filter((d) => !d.ok)
  if (s.error) return s.error.exitCode
  if (failed.length === s.disks.length && failed.length > 0) return failed[0]!.error!.exitCode
  if (s.check && !s.check.ok && s.check.error?.kind === 'data') return EXIT_CODES.data
  const partial = failed.length > 0 || s.copies.some((c) => !c.ok) || (s.exports ?? []).some((x) => !x.ok) || (s.retention && !s.retention.ok) || (s.check && !s.check.ok)
  const warned = s.disks.some((d) => d.warnings.length > 0)
  return partial || warned ? EXIT_CODES.warning : EXIT_CODES.ok
}

/** The summary of a job that could not start at all (e.g. its log file cannot be written). */
export function jobNotRun(job: Job, e: unknown, at: Date): JobSummary {
  const error = errorSummary(e)
  return {job: job.name, repository: job.repository, started: at.toISOString(), finished: at.toISOString(), durationMs: 0, exitCode: error.exitCode, disks: [], copies: [], retention: null, check: null, error}
}

export async function runJob(file: JobFile, job: Job, deps: RunDeps): Promise<JobSummary> {
  const now = deps.now ?? (() => new Date())
  const started = now()
  const summary: Omit<JobSummary, 'exitCode'> = {job: job.name, repository: job.repository, started: started.toISOString(), finished: '', durationMs: 0, disks: [], copies: [], retention: null, check: null, error: null}
  let repo: Repository | undefined
  try {
    repo = await openRepo(job.repository, job.password, job.storage, deps)
    for (const d of job.disks) summary.disks.push(await backupDisk(repo, job, d, deps))
    const names = summary.disks.map((d) => d.name)
    for (const c of job.copies) summary.copies.push(await copyStep(repo, job, c, names, deps))
    if (job.exports.length > 0) {
      summary.exports = await exportStep(repo, {job: job.name, specs: job.exports, disks: names, stateFile: file.stateFile, lockWaitMs: waitMs(job, deps), now: now(), log: deps.log})
    }
    if (job.retention) summary.retention = await retentionStep(repo, job, job.retention, names, deps)
    summary.check = await checkStep(repo, job, file, now(), deps)
  } catch (e) {
    summary.error = errorSummary(e)
    deps.log?.(`${job.name}: failed: ${summary.error.message}`)
  } finally {
    await repo?.close().catch(() => {})
  }
  summary.finished = now().toISOString()
  summary.durationMs = Date.parse(summary.finished) - started.getTime()
  return {...summary, exitCode: jobExitCode(summary)}
}
