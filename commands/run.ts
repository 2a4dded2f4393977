import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../src/cli/base-command.js'
import {jobPasswordSource} from '../src/cli/job-password.js'
import {LogFile} from '../src/cli/log-file.js'
import {formatBytes} from '../src/cli/output.js'
import {UsageError} from '../src/errors.js'
import {findJob, loadJobFile} from '../src/jobs/job-file.js'
import {runJob} from '../src/jobs/run-job.js'
import {runExitCode, runSummaryHook, writeSummaryFile, type JobSummary, type RunSummary} from '../src/jobs/summary.js'

export default class Run extends BaseCommand<typeof Run> {
  static override summary = 'Run a job from the job file: backups, copies, retention and the rotating check.'
  static override description =
    'For each disk of the job: a backup (a failing disk does not stop the others); then copies to the other repositories, retention (forget + prune) and, when due, check --read-data-subset n/m with the next part, so that m checks read everything. Writes one JSON summary (stdout with --json, --summary-file) and exits 0, 3 when some part failed or warned, or the failure\'s code when every disk failed. Hooks get the summary on stdin.'
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
    'summary-file': Flags.string({summary: 'Also write the JSON summary to this file.'}),
    'on-success': Flags.string({summary: 'Shell command to run when everything succeeded; gets the summary on stdin.'}),
    'on-failure': Flags.string({summary: 'Shell command to run when anything failed or warned; gets the summary on stdin.'}),
    'log-file': Flags.string({summary: 'Append timestamped status lines (no escape codes) to this file.'}),
  }

  async run(): Promise<void> {
    const f = this.flags
    if (f.all === (this.args.job !== undefined)) throw new UsageError('name one job, or give --all')
    const log = f['log-file'] ? new LogFile(f['log-file']) : undefined
    const file = await loadJobFile(f.jobs)
    const jobs = f.all ? file.jobs : [findJob(file, this.args.job!)]
    const started = new Date().toISOString()
    const results: JobSummary[] = []
    const say = (line: string) => {
      this.out.log(line)
      log?.write(line)
    }
    for (const job of jobs) {
      say(`job ${job.name}: starting (${job.disks.length} disk${job.disks.length === 1 ? '' : 's'}, ${job.repository})`)
      results.push(await runJob(file, job, {passwordFor: jobPasswordSource, log: say}))
      say(`job ${job.name}: finished with exit code ${results[results.length - 1]!.exitCode}`)
    }
    const summary: RunSummary = {version: 1, jobFile: file.path, started, finished: new Date().toISOString(), exitCode: runExitCode(results), jobs: results}
    if (f['summary-file']) await writeSummaryFile(f['summary-file'], summary)
    const hook = summary.exitCode === 0 ? f['on-success'] : f['on-failure']
    if (hook) {
      await runSummaryHook(summary.exitCode === 0 ? 'on-success' : 'on-failure', hook, summary).catch((e: Error) => {
        say(`warning: ${e.message}`)
        if (summary.exitCode === 0) summary.exitCode = 7
      })
    }
    this.out.result(summary, () => results.map(describe).join('\n'))
    if (summary.exitCode !== 0) this.exit(summary.exitCode)
  }
}

function describe(j: JobSummary): string {
  if (j.error) return `job ${j.job}: failed: ${j.error.message}`
  const lines = j.disks.map((d) =>
    d.ok
      ? `  ${d.name}: snapshot ${d.snapshot!.slice(0, 8)}, read ${formatBytes(d.bytesRead)}, ${d.changedBlocks} blocks changed, ${formatBytes(d.bytesStored)} stored, chain ${d.chainLength}${d.warnings.length ? ` (${d.warnings.length} warnings)` : ''}`
      : `  ${d.name}: failed: ${d.error!.message}`,
  )
  for (const c of j.copies) lines.push(`  copy to ${c.repository}: ${c.ok ? `${c.copied} copied` : `failed: ${c.error!.message}`}`)
  if (j.retention) lines.push(`  retention: ${j.retention.ok ? 'done' : `failed: ${j.retention.error!.message}`}`)
  if (j.check) lines.push(`  check: ${j.check.ok ? 'no errors' : `failed: ${j.check.error!.message}`}`)
  return [`job ${j.job}: exit ${j.exitCode}`, ...lines].join('\n')
}
