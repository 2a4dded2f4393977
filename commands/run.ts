import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../src/cli/base-command.js'
import {jobPasswordSource} from '../src/cli/job-password.js'
import {LogFile} from '../src/cli/log-file.js'
import {counted, formatBytes} from '../src/cli/output.js'
import {parseDuration} from '../src/flow/duration.js'
import {EXIT_CODES, UsageError} from '../src/errors.js'
import {runJobs} from '../src/jobs/run-jobs.js'
import type {JobSummary} from '../src/jobs/summary.js'

export default class Run extends BaseCommand<typeof Run> {
  static override summary = 'Run a job from the job file: backups, copies, retention and the rotating check.'
  static override description =
    'For each disk of the job: a backup (a failing disk does not stop the others); then copies to the other repositories, retention (forget + prune) and, when due, check --read-data-subset n/m with the next part, so that m checks read everything. Writes one JSON summary (stdout with --json, --summary-file) and exits 0, 3 when some part failed or warned, or the failure\'s code when every disk failed; a job file that cannot be read or an unknown job still gives a summary, with its error (exit 2, or 8 for a missing file). Hooks get the summary on stdin. The storage flags apply to every repository of the run, over the job file\'s "storage" settings; the job file\'s "summary-file", "on-success", "on-failure" and "log-file" apply when the flag is not given.'
  static override examples = [
    '<%= config.bin %> run nightly',
    '<%= config.bin %> run --all --jobs /etc/vdsnap/jobs.yaml --log-file /var/log/vdsnap.log',
    '<%= config.bin %> run nightly --json --summary-file /var/lib/vdsnap/last.json --on-failure "mail -s vdsnap root"',
  ]
  static override args = {
    job: Args.string({description: 'Name of the job in the job file.'}),
  }
  static override flags = {
    all: Flags.boolean({summary: 'Run every job in the job file, one after the other.', default: false}),
    jobs: Flags.string({summary: 'The job file (YAML or JSON).', env: 'VDSNAP_JOBS', default: '/etc/vdsnap/jobs.yaml'}),
    'summary-file': Flags.string({summary: 'Also write the JSON summary to this file (default: each job\'s "summary-file").'}),
    'on-success': Flags.string({summary: 'Shell command to run when everything succeeded; gets the summary on stdin (default: each job\'s "on-success").'}),
    'on-failure': Flags.string({summary: 'Shell command to run when anything failed or warned; gets the summary on stdin (default: each job\'s "on-failure").'}),
    'log-file': Flags.string({summary: 'Append timestamped status lines (no escape codes) to this file (default: each job\'s "log-file").'}),
    'lock-wait': Flags.string({summary: 'How long to wait for a conflicting lock, e.g. 30s, 5m (default: each job\'s "lock-wait", 10m when unset).', helpGroup: 'GLOBAL'}),
  }

  async run(): Promise<void> {
    const f = this.flags
    if (f.all === (this.args.job !== undefined)) throw new UsageError('name one job, or give --all')
    // Every job names its repository and password in the job file: these
    // flags would be silently ignored, so they are refused (--lock-wait is
    // not: it overrides every job's lock-wait).
    for (const [flag, key] of IGNORED) {
      if (this.given(flag)) throw new UsageError(`--${flag} does nothing with "run": each job sets its own ${key} in the job file`, {hint: `set "${key}:" in ${f.jobs}, or drop --${flag}`})
    }
    const summary = await runJobs({
      jobFile: f.jobs,
      job: f.all ? undefined : this.args.job,
      flags: {summaryFile: f['summary-file'], onSuccess: f['on-success'], onFailure: f['on-failure'], logFile: f['log-file']},
      deps: {passwordFor: jobPasswordSource, storage: this.storageOptions(), lockWaitMs: f['lock-wait'] === undefined ? undefined : parseDuration(f['lock-wait'])},
      say: (line) => this.out.log(line),
      openLog: (path) => {
        const log = new LogFile(path)
        return (line) => log.write(line)
      },
    })
    // With --quiet (cron) stderr stays empty on success, and carries one
    // line for a run that failed, or partly failed (exit 3), so cron mails it.
    if (summary.error) process.stderr.write(`vdsnap: error: ${summary.error.message}\n`)
    else if (summary.exitCode !== 0) process.stderr.write(`vdsnap: ${summary.exitCode === EXIT_CODES.warning ? 'warning' : 'error'}: ${failureLine(summary.jobs)}\n`)
    this.out.result(summary, () => summary.jobs.map(describe).join('\n'))
    if (summary.exitCode !== 0) this.exit(summary.exitCode)
  }
}

const IGNORED = [
  ['repo', 'repository'],
  ['password-file', 'password'],
  ['password-command', 'password'],
] as const

/** "job nightly: disk web: failed: ...; 1 more problem": the first problem of each job that did not succeed. */
function failureLine(jobs: JobSummary[]): string {
  return jobs
    .filter((j) => j.exitCode !== 0)
    .map((j) => {
      const problems = [
        ...j.disks.filter((d) => !d.ok).map((d) => `disk ${d.name} failed: ${d.error!.message}`),
        ...j.disks.filter((d) => d.ok && d.warnings.length > 0).map((d) => `disk ${d.name}: ${d.warnings[0]}`),
        ...j.copies.filter((c) => !c.ok).map((c) => `copy to ${c.repository} failed: ${c.error!.message}`),
        ...(j.retention && !j.retention.ok ? [`retention failed: ${j.retention.error!.message}`] : []),
        ...(j.check && !j.check.ok ? [`check failed: ${j.check.error!.message}`] : []),
        ...(j.error ? [j.error.message] : []),
      ]
      const more = problems.length > 1 ? ` (and ${problems.length - 1} more; see the summary)` : ''
      return `job ${j.job} exited ${j.exitCode}: ${problems[0] ?? 'see the summary'}${more}`
    })
    .join('; ')
}

function describe(j: JobSummary): string {
  if (j.error) return `job ${j.job}: failed: ${j.error.message}`
  const lines = j.disks.map((d) =>
    d.ok
      ? `  ${d.name}: snapshot ${d.snapshot!.slice(0, 8)}, read ${formatBytes(d.bytesRead)}, ${counted(d.changedBlocks, 'block')} changed, ${formatBytes(d.bytesStored)} stored, chain ${d.chainLength}${d.warnings.length ? ` (${counted(d.warnings.length, 'warning')})` : ''}`
      : `  ${d.name}: failed: ${d.error!.message}`,
  )
  for (const c of j.copies) lines.push(`  copy to ${c.repository}: ${c.ok ? `${c.copied} copied` : `failed: ${c.error!.message}`}`)
  if (j.retention) lines.push(`  retention: ${j.retention.ok ? 'done' : `failed: ${j.retention.error!.message}`}`)
  if (j.check) lines.push(`  check: ${j.check.ok ? 'no errors' : `failed: ${j.check.error!.message}`}`)
  return [`job ${j.job}: exit ${j.exitCode}`, ...lines].join('\n')
}
