import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../src/cli/base-command.js'
import {formatBytes} from '../src/cli/output.js'
import {passwordSource} from '../src/cli/password.js'
import {withProgress} from '../src/cli/progress.js'
import {copySnapshots} from '../src/copy/copy.js'
import {selectSnapshot} from '../src/repo/select.js'

export default class Copy extends BaseCommand<typeof Copy> {
  static override summary = 'Copy snapshots to another repository, sending only the chunks it lacks.'
  static override description =
    'Copies the named snapshots (default: all, or all of --disk) from --from (default: --repo) to --to. Chunks the destination already holds are not sent; different keys on each side are handled by re-encrypting. An interrupted copy resumes: snapshots already copied are skipped and chunks already sent are not sent again. The destination password comes from VDSNAP_TO_PASSWORD, --to-password-file / VDSNAP_TO_PASSWORD_FILE or VDSNAP_TO_PASSWORD_COMMAND, else the source password is tried.'
  static override examples = [
    '<%= config.bin %> copy --from /srv/backup/vdsnap --to sftp://backup@offsite.example.net/srv/vdsnap',
    '<%= config.bin %> copy --to s3://bucket/vdsnap --disk web',
    '<%= config.bin %> copy --to /mnt/usb/vdsnap web@latest',
  ]
  static override strict = false
  static override args = {
    snapshots: Args.string({description: 'Snapshots to copy (ids, prefixes, latest, DISK@latest); all when none.', required: false}),
  }
  static override flags = {
    from: Flags.string({summary: 'Source repository (default: --repo / VDSNAP_REPOSITORY).'}),
    to: Flags.string({summary: 'Destination repository.', required: true}),
    'to-password-file': Flags.string({summary: 'Read the destination password from this file (beats every VDSNAP_TO_PASSWORD* variable).'}),
    disk: Flags.string({summary: 'Only snapshots of this disk.'}),
  }

  async run(): Promise<void> {
    const f = this.flags
    const {argv} = await this.parse(Copy)
    const source = passwordSource(this.passwordFlags())
    const from = await this.openRepoAt(f.from ?? this.repoLocation(), source, {lock: 'shared', command: 'copy'})
    const dstPassword = passwordSource({file: f['to-password-file']}, 'VDSNAP_TO_', 'destination repository', '--to-')
    const to = await this.openRepoAt(f.to, () => dstPassword().catch(() => source()), {lock: 'shared', command: 'copy'})
    const ids: string[] = []
    for (const sel of argv as string[]) ids.push((await selectSnapshot(from, sel)).id)
    const res = await withProgress(this.out, `copy ${from.location} → ${to.location}`, (p) =>
      copySnapshots(from, to, {ids, disk: f.disk, onProgress: (d, t) => p.update(d, t), beforeCommit: () => this.assertLockHeld()}),
      false,
      'snapshot',
    )
    this.out.result(res, () =>
      `copied ${res.copied.length} snapshot${res.copied.length === 1 ? '' : 's'} (${res.skipped.length} already there): ${res.chunksSent} chunks sent (${formatBytes(res.bytesSent)}), ${res.chunksPresent} already present`,
    )
  }
}
