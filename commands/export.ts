import {Args, Flags} from '@oclif/core'
import {BaseCommand, readOnlyFlags} from '../src/cli/base-command.js'
import {formatBytes, formatDuration} from '../src/cli/output.js'
import {withProgress} from '../src/cli/progress.js'
import {runExport} from '../src/archive/export.js'
import {UsageError} from '../src/errors.js'
import {parseSize} from '../src/repo/config.js'
import {shortId} from '../src/repo/manifest.js'
import {selectSnapshot} from '../src/repo/select.js'

export default class Export extends BaseCommand<typeof Export> {
  static override summary = 'Write one snapshot as a self-contained archive, for tape and cold storage.'
  static override description =
    'Writes a ZIP64 archive, forward only (a file, a pipe or a tape device): manifest.json, README.txt, the repository config and key slots, the resolved full index, every chunk the snapshot uses once as stored (compressed, and encrypted for an encrypted repository), and SHA256SUMS with the SHA-256 of the disk image. It restores with "vdsnap restore --from-archive" and the repository password alone. --portable stores the plain disk image instead, which any unzip tool extracts.'
  static override examples = [
    '<%= config.bin %> export web@latest --to /mnt/cold/web-2026-12.zip',
    '<%= config.bin %> export web@latest --to - --record-size 256KiB | dd of=/dev/nst0 bs=256k iflag=fullblock',
    '<%= config.bin %> export latest --to web.zip --portable',
  ]
  static override args = {
    snapshot: Args.string({description: 'Snapshot: id, unique id prefix, latest or DISK@latest.', required: true}),
  }
  static override flags = {
    ...readOnlyFlags,
    to: Flags.string({summary: 'Archive file, tape or other device, or - for stdout.', required: true}),
    portable: Flags.boolean({summary: 'Store the plain disk image (deflate) instead of chunks: extractable without vdsnap; plaintext even from an encrypted repository.', default: false}),
    'archive-format': Flags.string({summary: 'zip (ZIP64, the default) or tar (POSIX pax; a portable image is a GNU sparse member: tar -xSf gives a sparse file).', options: ['zip', 'tar'], default: 'zip'}),
    'record-size': Flags.string({summary: 'Write whole records of this size (e.g. 256KiB, 1MiB), padding the last one, as fixed-block tape drives and dd bs= expect.'}),
    split: Flags.string({summary: 'Cut the archive into volumes FILE.001, FILE.002, … of at most this size (e.g. 4GiB), each a complete archive.'}),
    force: Flags.boolean({summary: 'Replace an existing archive file.', default: false}),
    verify: Flags.boolean({summary: 'Decode and verify every chunk and compute the image SHA-256 again, even when the repository has it recorded from an earlier export (which then copies chunks as stored).', default: false}),
  }

  async run(): Promise<void> {
    const f = this.flags
    if (f.to === '-' && f.json) throw new UsageError('--json cannot be combined with --to - (stdout carries the archive)')
    const recordSize = f['record-size'] ? parseSize(f['record-size']) : undefined
    const split = f.split ? parseSize(f.split) : undefined
    const repo = await this.openRepo({lock: 'shared', command: 'export'})
    const snapshot = await selectSnapshot(repo, this.args.snapshot)
    if (f.portable && repo.encKey) this.out.warn('--portable writes the disk image in plaintext: the archive is not encrypted although the repository is')
    const res = await withProgress(
      this.out,
      `export ${shortId(snapshot.id)} to ${f.to === '-' ? 'stdout' : f.to}`,
      (p) => runExport(repo, {snapshot, to: f.to, portable: f.portable, format: f['archive-format'] as 'zip' | 'tar', split, recordSize, force: f.force, verify: f.verify, onProgress: (d, t) => p.update(d, t)}),
      f.to === '-',
    )
    const human = () =>
      `exported ${shortId(res.snapshot)} (${res.disk}, ${formatBytes(res.virtualSize)}) to ${f.to === '-' ? 'stdout' : res.to}: ${res.kind === 'portable' ? 'portable image' : `${res.chunks} chunks (${formatBytes(res.chunkBytes)})`}, archive ${formatBytes(res.archiveBytes)}${res.volumes ? ` in ${res.volumes.length} volumes` : ''} in ${formatDuration(res.durationMs)}; image sha256 ${res.imageSha256}`
    if (f.to === '-' && !f.json) this.out.log(human())
    else this.out.result(res, human)
  }
}
