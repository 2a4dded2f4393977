// The help class (package.json oclif.helpClass): oclif's own, plus an
// EXAMPLES section on the root help (`vdsnap --help`), which oclif gives
// only to commands. Each example is a comment line and the commands to type.
import {Help} from '@oclif/core'

export const ROOT_EXAMPLES: [string, string[]][] = [
  ['Create an encrypted repository; the password comes from a file', ['export VDSNAP_REPOSITORY=/srv/backup/vdsnap VDSNAP_PASSWORD_FILE=/etc/vdsnap/password', '<%= config.bin %> init']],
  ['Back up a disk image (only the changed blocks are stored) and list its snapshots', ['<%= config.bin %> backup /var/lib/libvirt/images/web.img', '<%= config.bin %> snapshots --disk web']],
  ['Restore the newest snapshot, or roll a disk back writing only the blocks that differ', ['<%= config.bin %> restore web@latest --to /var/lib/libvirt/images/web.img --force', '<%= config.bin %> restore 1a2b3c4d --to /dev/vg0/web --delta-from web@latest']],
  ['Verify the repository and re-read part 3 of 7 of its data (parts 1 to 7 cover it all)', ['<%= config.bin %> check --read-data-subset 3/7']],
  ['Copy offsite, then keep 7 daily and 4 weekly snapshots', ['<%= config.bin %> copy --to sftp://backup@offsite.example.net/srv/vdsnap', '<%= config.bin %> forget --keep-daily 7 --keep-weekly 4 --prune']],
]

export default class VdsnapHelp extends Help {
  protected override async showRootHelp(): Promise<void> {
    await super.showRootHelp()
    const body = ROOT_EXAMPLES.map(([what, commands]) => [what, ...commands.map((c) => `  $ ${this.render(c)}`)].join('\n')).join('\n\n')
    this.log(this.section('EXAMPLES', body))
    this.log('')
  }
}
