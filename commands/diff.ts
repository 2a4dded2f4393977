import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../src/cli/base-command.js'
import {formatBytes} from '../src/cli/output.js'
import {diffSnapshots} from '../src/cbt/diff.js'
import {shortId} from '../src/repo/manifest.js'
import {selectSnapshot} from '../src/repo/select.js'

export default class Diff extends BaseCommand<typeof Diff> {
  static override summary = 'Show the changed-block map between two snapshots of a disk.'
  static override examples = ['<%= config.bin %> diff 1a2b3c4d web@latest', '<%= config.bin %> diff 1a2b 9f8e --json --ranges']
  static override args = {
    a: Args.string({description: 'Older snapshot.', required: true}),
    b: Args.string({description: 'Newer snapshot.', required: true}),
  }
  static override flags = {
    ranges: Flags.boolean({summary: 'List every changed byte range in the human output.', default: false}),
  }

  async run(): Promise<void> {
    const repo = await this.openRepo({lock: 'none'})
    const a = await selectSnapshot(repo, this.args.a)
    const b = await selectSnapshot(repo, this.args.b)
    const d = await diffSnapshots(repo, a, b)
    this.out.result(d, () => {
      const head = `${shortId(a.id)} → ${shortId(b.id)}: ${d.changedBlocks} of ${d.blockCount} blocks changed (${formatBytes(d.changedBytes)}) in ${d.ranges.length} range${d.ranges.length === 1 ? '' : 's'}`
      if (!this.flags.ranges) return head
      return [head, ...d.ranges.map((r) => `  ${r.offset}+${r.length}`)].join('\n')
    })
  }
}
