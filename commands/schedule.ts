import {Flags} from '@oclif/core'
import {resolve} from 'node:path'
import {BaseCommand} from '../src/cli/base-command.js'
import {cronLines, updateCrontab} from '../src/jobs/crontab.js'
import {loadJobFile} from '../src/jobs/job-file.js'

export default class Schedule extends BaseCommand<typeof Schedule> {
  static override takesLock = false
  static override summary = 'Print, install or remove the crontab lines for the job file\'s scheduled jobs.'
  static override description =
    'Prints one crontab line per job that has a "schedule". --install puts them into the user\'s crontab in a block marked with the job file\'s path (installing again replaces the block; the rest of the crontab is left alone); --remove takes the block out. Each line is "vdsnap run JOB --jobs FILE --quiet": a job\'s hooks, summary file and log file come from its "on-failure", "on-success", "summary-file" and "log-file" keys.'
  static override examples = ['<%= config.bin %> schedule', '<%= config.bin %> schedule --install --jobs /etc/vdsnap/jobs.yaml', '<%= config.bin %> schedule --remove']
  static override flags = {
    jobs: Flags.string({summary: 'The job file (YAML or JSON).', env: 'VDSNAP_JOBS', default: '/etc/vdsnap/jobs.yaml'}),
    install: Flags.boolean({summary: 'Add (or replace) the lines in the crontab.', default: false, exclusive: ['remove']}),
    remove: Flags.boolean({summary: 'Take the lines out of the crontab.', default: false}),
    'crontab-user': Flags.string({summary: 'Edit this user\'s crontab (crontab -u; needs root).'}),
    'log-file': Flags.string({summary: 'Make the scheduled runs append to this log file.'}),
  }

  async run(): Promise<void> {
    const f = this.flags
    const file = await loadJobFile(f.jobs)
    const lines = cronLines(file, {node: process.execPath, bin: resolve(process.argv[1]!), logFile: f['log-file'] ? resolve(f['log-file']) : undefined})
    if (f.install || f.remove) await updateCrontab(file.path, f.install ? lines : null, f['crontab-user'])
    const action = f.install ? 'installed' : f.remove ? 'removed' : 'printed'
    this.out.result({jobFile: file.path, action, lines}, () => {
      if (f.remove) return `removed the vdsnap lines for ${file.path} from the crontab`
      const text = lines.length ? lines.join('\n') : `# no job in ${file.path} has a schedule`
      return f.install ? `${text}\ninstalled ${lines.length} line${lines.length === 1 ? '' : 's'} in the crontab` : text
    })
  }
}
