import {BaseCommand, readOnlyFlags} from '../src/cli/base-command.js'
import {formatBytes} from '../src/cli/output.js'
import {repoStats} from '../src/check/stats.js'

export default class Stats extends BaseCommand<typeof Stats> {
  static override takesLock = false
  static override summary = 'Show logical and stored sizes, dedup and compression ratios.'
  static override examples = ['<%= config.bin %> stats --repo /srv/backup/vdsnap', '<%= config.bin %> stats --json']
  static override flags = {...readOnlyFlags}

  async run(): Promise<void> {
    const repo = await this.openRepo({lock: 'none'})
    const s = await repoStats(repo)
    this.out.result(s, () =>
      [
        `snapshots:          ${s.snapshots} of ${s.disks} disk${s.disks === 1 ? '' : 's'}`,
        `logical data:       ${formatBytes(s.logicalBytes)} (non-zero blocks of every snapshot)`,
        `unique data:        ${formatBytes(s.uniqueBytes)} in ${s.chunkCount} chunks`,
        `stored:             ${formatBytes(s.storedBytes)} (chunks ${formatBytes(s.chunkBytes)}, metadata ${formatBytes(s.metadataBytes)})`,
        `dedup ratio:        ${s.dedupRatio.toFixed(2)}x`,
        `compression ratio:  ${s.compressionRatio.toFixed(2)}x`,
      ].join('\n'),
    )
  }
}
