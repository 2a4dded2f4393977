import {Flags} from '@oclif/core'
import {BaseCommand, fullDiskFlags} from '../src/cli/base-command.js'
import {pruneLine} from '../src/cli/forget-render.js'
import {withProgress} from '../src/cli/progress.js'
import {runPrune} from '../src/prune/prune.js'

export default class Prune extends BaseCommand<typeof Prune> {
  static override summary = 'Remove the chunks and indexes no snapshot references.'
  static override description =
    'Runs under the exclusive lock (a running backup makes it wait up to --lock-wait, or refuse with exit code 4). Safe to interrupt and run again; a backup killed half-way leaves chunks that prune removes and its re-run uploads again. --dry-run reports what would be removed and the bytes freed. See "Garbage collection" in docs/FORMAT.md.'
  static override examples = ['<%= config.bin %> prune', '<%= config.bin %> prune --dry-run --json', '<%= config.bin %> prune --lock-wait 30m']
  static override flags = {
    ...fullDiskFlags,
    'dry-run': Flags.boolean({summary: 'Count what would be removed and the bytes freed; delete nothing.', default: false}),
  }

  async run(): Promise<void> {
    const dryRun = this.flags['dry-run']
    const repo = await this.openRepo({lock: dryRun ? 'shared' : 'exclusive', command: 'prune'})
    const res = await withProgress(this.out, `prune ${repo.location}`, () =>
      runPrune(repo, {dryRun, assertHeld: () => this.assertLockHeld()}),
    )
    this.out.result(res, () => pruneLine(res))
  }
}
