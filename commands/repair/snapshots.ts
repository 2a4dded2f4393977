import {Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base-command.js'
import {repairSnapshots} from '../../src/check/repair.js'
import {counted} from '../../src/cli/output.js'

export default class RepairSnapshots extends BaseCommand<typeof RepairSnapshots> {
  static override summary = 'Remove snapshots whose manifest can no longer be read.'
  static override description =
    'Lists every snapshot whose manifest fails to decode or authenticate (damaged on the storage), then removes exactly those manifests; a readable snapshot is never touched. Snapshots resting on a removed one stay broken ("vdsnap check" names them); "vdsnap prune" frees the data only the removed ones used. --dry-run only shows the list. Takes the exclusive lock.'
  static override examples = ['<%= config.bin %> repair snapshots --dry-run', '<%= config.bin %> repair snapshots --json']
  static override flags = {
    'dry-run': Flags.boolean({summary: 'Only list the damaged snapshots that would be removed.', default: false}),
  }

  async run(): Promise<void> {
    const dryRun = this.flags['dry-run']
    const repo = await this.openRepo({lock: dryRun ? 'shared' : 'exclusive', command: 'repair snapshots'})
    const res = await repairSnapshots(repo, {
      dryRun,
      assertHeld: () => this.assertLockHeld(),
      onPlan: (list) => {
        for (const d of list) this.out.log(`${dryRun ? 'would remove' : 'removing'} damaged snapshot ${d.id.slice(0, 8)}: ${d.reason}`)
      },
    })
    this.out.result(res, () => `${counted(res.removed.length, 'damaged snapshot')} ${dryRun ? 'would be ' : ''}removed, ${counted(res.intact, 'readable snapshot')} untouched`)
  }
}
