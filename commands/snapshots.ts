import {Flags} from '@oclif/core'
import {BaseCommand, readOnlyFlags} from '../src/cli/base-command.js'
import {formatBytes, table} from '../src/cli/output.js'
import {filterFlags, filterOf} from '../src/cli/filter-flags.js'
import {shortId} from '../src/repo/manifest.js'
import {matchesFilter} from '../src/repo/snapshot-filter.js'
import {snapshotDoc} from '../src/cli/snapshot-doc.js'
import {formatTime} from '../src/cli/times.js'

export default class Snapshots extends BaseCommand<typeof Snapshots> {
  static override takesLock = false
  static override summary = 'List snapshots, oldest first.'
  static override examples = [
    '<%= config.bin %> snapshots --repo /srv/backup/vdsnap',
    '<%= config.bin %> snapshots --disk web --json',
    '<%= config.bin %> snapshots --host db1 --tag nightly',
  ]
  static override flags = {
    ...readOnlyFlags,
    disk: Flags.string({summary: 'Only snapshots of this disk.'}),
    ...filterFlags,
    'local-time': Flags.boolean({summary: 'Print times in the local time zone instead of UTC.', default: false}),
  }

  async run(): Promise<void> {
    const repo = await this.openRepo({lock: 'none'})
    const filter = filterOf(this.flags)
    const snaps = (await repo.listSnapshots(this.flags.disk)).filter((m) => matchesFilter(m, filter))
    this.out.result(snaps.map(snapshotDoc), () => {
      if (snaps.length === 0) return 'no snapshots'
      const rows = [['ID', 'TIME', 'DISK', 'HOST', 'SOURCE', 'SIZE', 'INDEX', 'CHAIN', 'CHANGED', 'TAGS']]
      for (const s of snaps) {
        rows.push([
          shortId(s.id),
          formatTime(s.time, this.flags['local-time']),
          s.disk,
          s.hostname,
          s.source.path,
          formatBytes(s.virtualSize),
          s.indexKind,
          String(s.chainLength),
          formatBytes(s.stats.bytesChanged),
          s.tags.join(','),
        ])
      }
      return table(rows) + `\n${snaps.length} snapshot${snaps.length === 1 ? '' : 's'}`
    })
  }
}
