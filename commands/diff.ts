import {Args, Flags} from '@oclif/core'
import {BaseCommand, readOnlyFlags} from '../src/cli/base-command.js'
import {counted, formatBytes} from '../src/cli/output.js'
import {diffSnapshots} from '../src/repo/diff.js'
import {shortId} from '../src/repo/manifest.js'
import {selectSnapshot} from '../src/repo/select.js'

export default class Diff extends BaseCommand<typeof Diff> {
  static override takesLock = false
  static override summary = 'Show the changed-block map between two snapshots of a disk.'
  static override description =
    'Compares the two snapshots\' indexes (no data is read): the blocks whose content differs, as counts, bytes and byte ranges. When the disk grew or shrank between them, every block past the end of the smaller disk (and its short last block) counts as changed.'
  static override examples = ['<%= config.bin %> diff 1a2b3c4d web@latest', '<%= config.bin %> diff 1a2b 9f8e --json --ranges']
  static override args = {
    a: Args.string({description: 'Older snapshot.', required: true}),
    b: Args.string({description: 'Newer snapshot.', required: true}),
  }
  static override flags = {
    ...readOnlyFlags,
    ranges: Flags.boolean({summary: 'List every changed byte range in the human output.', default: false}),
  }

  async run(): Promise<void> {
    const repo = await this.openRepo({lock: 'none'})
    const a = await selectSnapshot(repo, this.args.a)
    const b = await selectSnapshot(repo, this.args.b)
    const d = await diffSnapshots(repo, a, b)
    this.out.result(d, () => {
      const resized = d.fromSize === d.toSize ? '' : ` (disk ${d.toSize > d.fromSize ? 'grew' : 'shrank'} from ${formatBytes(d.fromSize)} to ${formatBytes(d.toSize)})`
      const head = `${shortId(a.id)} → ${shortId(b.id)}: ${d.changedBlocks} of ${counted(d.blockCount, 'block')} changed (${formatBytes(d.changedBytes)}) in ${d.ranges.length} range${d.ranges.length === 1 ? '' : 's'}${resized}`
      if (!this.flags.ranges) return head
      return [head, ...d.ranges.map((r) => `  ${r.offset}+${r.length}`)].join('\n')
    })
  }
}
