import {Args, Flags} from '@oclif/core'
import {BaseCommand, fullDiskFlags} from '../src/cli/base-command.js'
import {forgetDoc, forgetText} from '../src/cli/forget-render.js'
import {runForget} from '../src/prune/run-forget.js'
import {parseGroupBy, parseKeepCount, type RetentionPolicy} from '../src/prune/retention.js'
import {filterFlags, filterOf} from '../src/cli/filter-flags.js'

const keep = (what: string) => Flags.string({summary: `Keep the newest snapshot of each of the last N ${what} (a number, or "unlimited").`, helpGroup: 'POLICY'})

export default class Forget extends BaseCommand<typeof Forget> {
  static override summary = 'Remove snapshots, by name or by a retention policy.'
  static override description =
    'Removes the named snapshots, or applies a retention policy to each disk (restic\'s semantics: --keep-daily 7 keeps the newest snapshot of each of the 7 newest days that have one, counted back from the newest snapshot). A removed snapshot inside a chain is merged into its child, metadata only: every kept snapshot still restores byte-identical. Chunks are freed by "prune", or by --prune in the same run. Takes the exclusive lock.'
  static override examples = [
    '<%= config.bin %> forget 1a2b3c4d',
    '<%= config.bin %> forget --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --dry-run',
    '<%= config.bin %> forget --disk web --keep-last 3 --keep-within 14d --keep-tag monthly --prune --json',
    '<%= config.bin %> forget --group-by disk,host --host web1 --keep-daily 7',
  ]
  static override strict = false
  static override args = {
    snapshot: Args.string({description: 'Snapshots to remove: ids, id prefixes, latest or DISK@latest (repeatable).'}),
  }
  static override flags = {
    ...fullDiskFlags,
    disk: Flags.string({summary: 'Apply the policy to this disk only.'}),
    'keep-last': Flags.string({char: 'l', summary: 'Keep the N newest snapshots (a number, or "unlimited").', helpGroup: 'POLICY'}),
    'keep-hourly': keep('hours'),
    'keep-daily': keep('days'),
    'keep-weekly': keep('ISO weeks'),
    'keep-monthly': keep('months'),
    'keep-yearly': keep('years'),
    'keep-within': Flags.string({summary: 'Keep every snapshot newer than this, counted back from the newest: 7d, 2w, 1m (month), 1y, 1y6m.', helpGroup: 'POLICY'}),
    'keep-tag': Flags.string({summary: 'Keep every snapshot with this tag (repeatable).', multiple: true, default: [], helpGroup: 'POLICY'}),
    utc: Flags.boolean({summary: 'Count hours, days, weeks... in UTC instead of the local time zone.', default: false, helpGroup: 'POLICY'}),
    prune: Flags.boolean({summary: 'Then remove the chunks no snapshot references (one step for cron).', default: false}),
    'dry-run': Flags.boolean({summary: 'Only say what would be removed, and why each kept snapshot is kept.', default: false}),
    'group-by': Flags.string({summary: 'Apply the policy to each group of snapshots with the same values of these: disk, host, source (default: disk).', helpGroup: 'POLICY'}),
    ...filterFlags,
    'local-time': Flags.boolean({summary: 'Print times in the local time zone instead of UTC.', default: false}),
  }

  async run(): Promise<void> {
    const {argv} = await this.parse(Forget)
    const f = this.flags
    const count = (name: 'keep-last' | 'keep-hourly' | 'keep-daily' | 'keep-weekly' | 'keep-monthly' | 'keep-yearly') =>
      f[name] === undefined ? undefined : parseKeepCount(f[name]!, name)
    const policy: RetentionPolicy = {
      last: count('keep-last'), hourly: count('keep-hourly'), daily: count('keep-daily'), weekly: count('keep-weekly'),
      monthly: count('keep-monthly'), yearly: count('keep-yearly'), within: f['keep-within'], tags: f['keep-tag'], utc: f.utc,
    }
    const groupBy = f['group-by'] === undefined ? undefined : parseGroupBy(f['group-by'])
    const repo = await this.openRepo({lock: f['dry-run'] ? 'shared' : 'exclusive', command: 'forget'})
    const res = await runForget(repo, {
      snapshots: argv as string[], policy, disk: f.disk, dryRun: f['dry-run'], prune: f.prune, filter: filterOf(f), groupBy,
      assertHeld: () => this.assertLockHeld(), onLog: (l) => this.out.log(l),
    })
    this.out.result(forgetDoc(res), () => forgetText(res, f['local-time']))
  }
}
