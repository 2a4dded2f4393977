// `vdsnap run JOB|--all` as a whole: which jobs, where their status lines
// go, and where the summary goes.
//
// 1. Load the job file and pick the jobs. A job file that cannot be read or
//    parsed, or an unknown job name, still ends in a summary with `error`
//    set, no jobs and the error's exit code (2 usage, 8 not found...), so
//    the failure hook and the monitoring hear of it like of any failed run.
// 2. Run the jobs one after the other (runJob). Status lines go to the
//    run's log file (--log-file) or, without one, to the job's `log-file`.
// 3. Deliver: each target given on the command line (--summary-file,
//    --on-success, --on-failure) gets the whole run's summary. For a target
//    not given there, each job naming one in the job file (`summary-file`,
//    `on-success`, `on-failure`) gets a summary of its own (just that job,
//    its exit code). So a crontab line stays `vdsnap run JOB --jobs FILE`.
// 4. A summary file that cannot be written or a hook that fails is a
//    warning; it turns a job's (or the run's) exit 0 into 7.
import {resolve} from 'node:path'
import {EXIT_CODES} from '../errors.js'
import {findJob, loadJobFile, type Job, type JobFile, type OutputSpec} from './job-file.js'
import {errorSummary, jobNotRun, runJob, type RunDeps} from './run-job.js'
import {runExitCode, runSummaryHook, writeSummaryFile, type JobSummary, type RunSummary} from './summary.js'

export type LogLine = (line: string) => void

export interface RunJobsOptions {
  jobFile: string
  /** The job to run; undefined runs every job. */
  job?: string
  /** Targets given on the command line; they win over the job file's. */
  flags: OutputSpec
  deps: Omit<RunDeps, 'log'>
  /** Status lines for the terminal. */
  say?: LogLine
  /** Opens a log file for appending timestamped lines; throws when it cannot be written. */
  openLog: (path: string) => LogLine
}

export async function runJobs(o: RunJobsOptions): Promise<RunSummary> {
  const now = o.deps.now ?? (() => new Date())
  const started = now().toISOString()
  const results: {job: Job; summary: JobSummary; log?: LogLine}[] = []
  let runLog: LogLine | undefined
  let file: JobFile | undefined
  let error: RunSummary['error'] = null
  try {
    runLog = o.flags.logFile ? o.openLog(o.flags.logFile) : undefined
    file = await loadJobFile(o.jobFile)
    const jobs = o.job === undefined ? file.jobs : [findJob(file, o.job)]
    for (const job of jobs) results.push(await runOne(file, job, o, runLog))
  } catch (e) {
    error = errorSummary(e)
    runLog?.(`run: failed: ${error.message}`)
  }
  const summary: RunSummary = {version: 1, jobFile: file?.path ?? resolve(o.jobFile), started, finished: now().toISOString(), exitCode: 0, error, jobs: results.map((r) => r.summary)}
  summary.exitCode = error ? error.exitCode : runExitCode(summary.jobs)
  await deliver(summary, results, o, runLog)
  return summary
}

async function runOne(file: JobFile, job: Job, o: RunJobsOptions, runLog?: LogLine): Promise<{job: Job; summary: JobSummary; log?: LogLine}> {
  let log = runLog
  try {
    if (!log && job.outputs.logFile) log = o.openLog(job.outputs.logFile)
  } catch (e) {
    const summary = jobNotRun(job, e, (o.deps.now ?? (() => new Date()))())
    o.say?.(`job ${job.name}: failed: ${summary.error!.message}`)
    return {job, summary}
  }
  const say = (line: string) => {
    o.say?.(line)
    log?.(line)
  }
  say(`job ${job.name}: starting (${job.disks.length} disk${job.disks.length === 1 ? '' : 's'}, ${job.repository})`)
  const summary = await runJob(file, job, {...o.deps, log: say})
  say(`job ${job.name}: finished with exit code ${summary.exitCode}`)
  return {job, summary, log}
}

/** Steps 3 and 4 of the module comment. */
async function deliver(run: RunSummary, results: {job: Job; summary: JobSummary; log?: LogLine}[], o: RunJobsOptions, runLog?: LogLine): Promise<void> {
  const warn = (line: string, log?: LogLine) => {
    o.say?.(`warning: ${line}`)
    log?.(`warning: ${line}`)
  }
  // The jobs' own targets first: a failure there changes the run's code.
  for (const r of results) {
    const own: RunSummary = {...run, started: r.summary.started, finished: r.summary.finished, exitCode: r.summary.exitCode, jobs: [r.summary]}
    const failed = await send(own, {summaryFile: o.flags.summaryFile ? undefined : r.job.outputs.summaryFile, onSuccess: o.flags.onSuccess ? undefined : r.job.outputs.onSuccess, onFailure: o.flags.onFailure ? undefined : r.job.outputs.onFailure}, (l) => warn(l, r.log))
    if (failed && r.summary.exitCode === EXIT_CODES.ok) r.summary.exitCode = EXIT_CODES.io
  }
  if (!run.error) run.exitCode = runExitCode(run.jobs)
  if (await send(run, {summaryFile: o.flags.summaryFile, onSuccess: o.flags.onSuccess, onFailure: o.flags.onFailure}, (l) => warn(l, runLog)) && run.exitCode === EXIT_CODES.ok) {
    run.exitCode = EXIT_CODES.io
  }
}

/** Writes the summary file and runs the hook its exit code calls for; true when one of them failed. */
async function send(summary: RunSummary, to: OutputSpec, warn: LogLine): Promise<boolean> {
  let failed = false
  if (to.summaryFile) {
    await writeSummaryFile(to.summaryFile, summary).catch((e: Error) => {
      warn(e.message)
      failed = true
    })
  }
  const ok = summary.exitCode === EXIT_CODES.ok
  const hook = ok ? to.onSuccess : to.onFailure
  if (hook) {
    await runSummaryHook(ok ? 'on-success' : 'on-failure', hook, summary).catch((e: Error) => {
      warn(e.message)
      failed = true
    })
  }
  return failed
}
