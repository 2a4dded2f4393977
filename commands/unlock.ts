import {Flags} from '@oclif/core'
import {BaseCommand} from '../src/cli/base-command.js'
import {describeHolder} from '../src/repo/lock-info.js'
import {unlockRepository} from '../src/repo/unlock.js'

export default class Unlock extends BaseCommand<typeof Unlock> {
  static override takesLock = false
  static override summary = 'Remove stale locks (or all locks with --remove-all).'
  static override description =
    'A lock is stale when its process is gone on this host, or it was not refreshed for 15 minutes (any host), or its file is unreadable (damaged, or a field missing): unreadable locks block nobody and are removed by name. Needs no password. --remove-all also removes live locks: only when you know their processes are gone.'
  static override examples = ['<%= config.bin %> unlock --repo /srv/backup/vdsnap', '<%= config.bin %> unlock --remove-all']
  static override flags = {
    'remove-all': Flags.boolean({summary: 'Remove every lock, live or not.', default: false}),
  }

  async run(): Promise<void> {
    const removed = await unlockRepository(this.repoLocation(), this.flags['remove-all'], this.storageOptions())
    this.out.result({removed: removed.map((l) => ({name: l.name, ...l.info, stale: l.stale, unreadable: l.unreadable ?? null}))}, () =>
      removed.length === 0
        ? 'no locks removed'
        : removed
            .map((l) => (l.info ? `removed ${l.stale ? 'stale ' : ''}lock of ${describeHolder(l.info)}` : `removed unreadable lock ${l.name} (${l.unreadable})`))
            .join('\n'),
    )
  }
}
