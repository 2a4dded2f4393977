import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../src/cli/base-command.js'
import {formatBytes} from '../src/cli/output.js'
import {imageInfo} from '../src/disk/info.js'

export default class Info extends BaseCommand<typeof Info> {
  static override takesLock = false
  static override summary = 'Describe a disk image: format, virtual size, allocated bytes, parents.'
  static override examples = ['<%= config.bin %> info web.qcow2', '<%= config.bin %> info /dev/vg0/db --json']
  static override args = {
    image: Args.string({description: 'Disk image file or block device.', required: true}),
  }
  static override flags = {
    format: Flags.string({summary: 'Force the format instead of detecting it.'}),
    'image-snapshot': Flags.string({summary: 'Describe this internal snapshot (qcow2) instead of the active layer.'}),
  }

  async run(): Promise<void> {
    const info = await imageInfo(this.args.image, {format: this.flags.format, imageSnapshot: this.flags['image-snapshot']})
    this.out.result(info, () => {
      const lines = [
        `image:          ${info.path}`,
        `format:         ${info.format}${info.subformat ? ` (${info.subformat})` : ''}`,
        `virtual size:   ${formatBytes(info.virtualSize)} (${info.virtualSize} bytes)`,
        `allocated:      ${formatBytes(info.allocatedBytes)} (${info.allocatedBytes} bytes)`,
      ]
      if (info.clusterSize) lines.push(`cluster size:   ${formatBytes(info.clusterSize)}`)
      if (info.fileSize !== undefined) lines.push(`file size:      ${formatBytes(info.fileSize)}`)
      for (const [i, p] of info.parents.entries()) lines.push(`${i === 0 ? 'parent chain:   ' : '                '}${p}`)
      for (const s of info.snapshots) lines.push(`snapshot:       ${s.id} ${s.name}${s.date ? ` ${s.date}` : ''}`)
      return lines.join('\n')
    })
  }
}
