import {Args, Flags} from '@oclif/core'
import {BaseCommand, readOnlyFlags} from '../src/cli/base-command.js'
import {UsageError} from '../src/errors.js'
import {formatBytes, formatDuration} from '../src/cli/output.js'
import {withProgress} from '../src/cli/progress.js'
import {runRestore} from '../src/restore/restore.js'
import {targetFormat} from '../src/restore/target-format.js'
import {shortId} from '../src/repo/manifest.js'
import {selectSnapshot} from '../src/repo/select.js'
import {filterFlags, filterOf} from '../src/cli/filter-flags.js'
import {openArchive} from '../src/archive/open-archive.js'
import {passwordSource} from '../src/cli/password.js'
import {restoreFromArchive} from '../src/restore/from-archive.js'

/** Flags a repository restore honours that would do nothing with --from-archive. */
const ARCHIVE_IGNORED_FLAGS = ['overlay', 'host', 'source', 'tag', 'no-lock', 'lock-wait'] as const

export default class Restore extends BaseCommand<typeof Restore> {
  static override summary = 'Restore a snapshot (from a repository, or from an archive made by vdsnap export) to a file, block device, stdout or another image format.'
  static override description =
    'Replays the snapshot\'s chain (metadata first), reads every needed chunk once, verifies it, and writes in offset order. A new file is sparse and appears under its name only when complete. --delta-from SNAP writes only the blocks that differ from SNAP into a target that already holds SNAP (rollback). --from-archive ARCHIVE restores the snapshot an archive (vdsnap export) holds, with no repository, verifying every chunk and the image SHA-256; - reads it in one pass from stdin (a pipe or tape), and a split archive takes every volume, in any order.'
  static override examples = [
    '<%= config.bin %> restore web@latest --to /var/lib/libvirt/images/web.img --repo /srv/backup/vdsnap',
    '<%= config.bin %> restore web@latest --to /dev/vg0/web --force',
    '<%= config.bin %> restore 1a2b3c4d --to web.qcow2',
    '<%= config.bin %> restore web@latest --to /dev/vg0/web --delta-from 9f8e7d6c',
    '<%= config.bin %> restore web@latest --to - | ssh host "dd of=/dev/sdb bs=4M"',
    '<%= config.bin %> restore web@latest --host web1 --tag nightly --to web.img',
    '<%= config.bin %> restore --from-archive /mnt/cold/web-2026-12.zip --to web.img',
  ]
  static override args = {
    snapshot: Args.string({description: 'Snapshot: id, unique id prefix, or DISK@latest (a bare latest only when the repository holds one disk; not with --from-archive).', ignoreStdin: true}),
  }
  static override flags = {
    ...readOnlyFlags,
    to: Flags.string({summary: 'Target: a file path, a block device, or - for stdout.', required: true}),
    format: Flags.string({
      summary: 'Target image format (default: from the --to extension: .qcow2, .vdi, .vhd, .vhdx, .vmdk; else raw).',
      options: ['raw', 'qcow2', 'vdi', 'vhd', 'vhdx', 'vmdk'],
    }),
    subformat: Flags.string({summary: 'Image subformat: vmdk monolithicSparse|streamOptimized, vhd/vhdx/vdi dynamic|fixed.'}),
    'from-archive': Flags.string({summary: 'Restore from this archive (vdsnap export) instead of a repository; - reads it from stdin (a pipe or tape) in one pass.', multiple: true, exclusive: ['delta-from']}),
    'delta-from': Flags.string({summary: 'The target already holds this snapshot: write only blocks that differ.'}),
    'target-zeroed': Flags.boolean({summary: 'The target device already reads as zeros: skip writing zero blocks.', default: false}),
    force: Flags.boolean({summary: 'Replace an existing target file, or overwrite a block device (never one in use).', default: false}),
    overlay: Flags.string({summary: 'Restore the snapshot with the writes kept in this "vdsnap serve --overlay" file on top.'}),
    'verify-digests': Flags.boolean({
      summary: 'Re-hash every chunk and compare it with its id (default). --no-verify-digests trusts the GCM tag of an encrypted repository\'s chunks instead.',
      default: true,
      allowNo: true,
    }),
    ...filterFlags,
  }

  async run(): Promise<void> {
    const f = this.flags
    if (f.to === '-' && f.json) throw new UsageError('--json cannot be combined with --to - (stdout carries the disk)')
    if (f['from-archive']) return this.fromArchive(f['from-archive'])
    if (!this.args.snapshot) throw new UsageError('name the snapshot to restore (an id, or DISK@latest), or give --from-archive ARCHIVE')
    const {format, fromExtension} = targetFormat(f.to, f.format)
    const repo = await this.openRepo({lock: 'shared', command: 'restore'})
    const snapshot = await selectSnapshot(repo, this.args.snapshot, filterOf(f))
    const deltaFrom = f['delta-from'] ? await selectSnapshot(repo, f['delta-from']) : undefined
    if (fromExtension && format !== 'raw') this.out.log(`writing ${f.to} as ${format} (from its ${fromExtension} extension; --format to choose)`)
    const res = await withProgress(
      this.out,
      `restore ${shortId(snapshot.id)} to ${f.to === '-' ? 'stdout' : f.to}`,
      (p) =>
        runRestore(repo, {
          snapshot,
          deltaFrom,
          to: f.to,
          format,
          subformat: f.subformat,
          force: f.force,
          targetZeroed: f['target-zeroed'],
          rehash: f['verify-digests'],
          overlay: f.overlay,
          onProgress: (d, t) => p.update(d, t),
        }),
      f.to === '-',
    )
    const human = () =>
      `restored ${shortId(res.snapshot)} to ${res.target} (${res.format}, ${formatBytes(res.virtualSize)}): ${res.blocksWritten} blocks written (${formatBytes(res.bytesWritten)}), ${res.zeroBlocks} zero blocks, ${res.chunksRead} chunks read in ${formatDuration(res.durationMs)}`
    if (f.to === '-' && !f.json) this.out.log(human())
    else this.out.result(res, human)
  }

  private async fromArchive(archives: string[]): Promise<void> {
    const f = this.flags
    if (this.args.snapshot) throw new UsageError('--from-archive restores the archive\'s own snapshot: give no snapshot argument')
    // these select or lock within a repository; an archive holds one snapshot and no repository, so refuse rather than ignore them
    for (const flag of ARCHIVE_IGNORED_FLAGS) {
      if (this.given(flag)) throw new UsageError(`--${flag} does not apply to --from-archive (the archive holds one snapshot and no repository)`, {hint: `drop --${flag}`})
    }
    const {format} = targetFormat(f.to, f.format)
    const archive = await openArchive(archives, passwordSource(this.passwordFlags()))
    const res = await withProgress(
      this.out,
      `restore ${shortId(archive.snapshot.id)} from ${archive.source.describe} to ${f.to === '-' ? 'stdout' : f.to}`,
      (p) => restoreFromArchive(archive, {to: f.to, format, subformat: f.subformat, force: f.force, targetZeroed: f['target-zeroed'], rehash: f['verify-digests'], onProgress: (d, t) => p.update(d, t)}),
      f.to === '-',
    )
    const human = () =>
      `restored ${shortId(res.snapshot)} from ${res.archive} to ${res.target} (${res.format}, ${formatBytes(res.virtualSize)}): ${res.blocksWritten} blocks written, ${res.zeroBlocks} zero blocks, image sha256 ${res.imageSha256} verified, in ${formatDuration(res.durationMs)}`
    if (f.to === '-' && !f.json) this.out.log(human())
    else this.out.result(res, human)
  }
}
