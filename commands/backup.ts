import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../src/cli/base-command.js'
import {counted, formatBytes, formatDuration} from '../src/cli/output.js'
import {withProgress} from '../src/cli/progress.js'
import {runBackup} from '../src/backup/backup.js'
import {parseDuration} from '../src/flow/duration.js'
import {parseSize} from '../src/repo/config.js'
import {shortId} from '../src/repo/manifest.js'

/** What the progress line calls each phase of a backup. */
const PHASES = {verify: 'verifying the change source', scan: 'reading', index: 'committing'} as const

export default class Backup extends BaseCommand<typeof Backup> {
  static override summary = 'Back up a disk image, block device or raw stream as a new snapshot.'
  static override description =
    'Reads the source (raw file, block device, qcow2, VMDK, VHD, VHDX, VDI, or an NBD export such as a running VM\'s disk), compares every allocated block with the newest snapshot of the same disk and stores only the blocks that changed, deduplicated, compressed and encrypted. Exit code 3 means the snapshot was stored with warnings (e.g. the source changed during the read). The source "-" reads a raw disk from standard input (or, with --source-command, from a command\'s standard output): its size is --size, or the previous snapshot\'s; a stream that ends early or runs long stores nothing (exit 6), a failing or stalled command too (exit 7).'
  static override examples = [
    '<%= config.bin %> backup /var/lib/libvirt/images/web.img --repo /srv/backup/vdsnap',
    '<%= config.bin %> backup /dev/vg0/db-snap --disk db --tag nightly --pre-hook "lvcreate -s -n db-snap -L 5G vg0/db" --post-hook "lvremove -y vg0/db-snap"',
    '<%= config.bin %> backup web.img --changed-blocks changes.json --json',
    'rbd export rbd/vm-101-disk-0 - | <%= config.bin %> backup - --disk vm-101 --size 34359738368',
    '<%= config.bin %> backup - --disk db --source-command "ssh db-host dd if=/dev/vg0/db-snap bs=4M" --source-timeout 10m',
    '<%= config.bin %> backup nbd://127.0.0.1:10809/vda --disk web --bitmap backup-vda',
  ]
  static override args = {
    source: Args.string({description: 'Disk image file, block device or NBD URL', required: true}),
  }
  static override flags = {
    disk: Flags.string({summary: 'Name of the disk lineage (default: the file name without extension).'}),
    format: Flags.string({summary: 'Force the source format instead of detecting it (raw, qcow2, vmdk, vhd, vhdx, vdi).'}),
    'image-snapshot': Flags.string({summary: 'Back up this internal snapshot of a qcow2 image (name or id, see "vdsnap info").'}),
    'changed-blocks': Flags.string({summary: 'JSON file of changed ranges ([{"offset","length"}] or qemu-img map --output=json): only those blocks are read.'}),
    bitmap: Flags.string({summary: 'NBD sources: read only the blocks this QEMU dirty bitmap marks (qemu:dirty-bitmap:NAME); it must have been rotated when the previous snapshot was taken.'}),
    full: Flags.boolean({summary: 'Ignore the previous snapshot: compare nothing, read everything.', default: false}),
    tag: Flags.string({summary: 'Tag the snapshot (repeatable).', multiple: true, default: []}),
    'dry-run': Flags.boolean({summary: 'Read and hash the source and report what would be stored, storing nothing.', default: false}),
    'synthetic-full-every': Flags.integer({summary: 'Write a full index every N snapshots (default: the repository setting).', min: 1}),
    'on-source-change': Flags.string({summary: 'When the source changes during the read: warn (exit 3), retry (up to 3 reads), or fail.', options: ['warn', 'retry', 'fail'], default: 'warn'}),
    size: Flags.string({summary: 'Stream sources: the disk\'s size in bytes (1073741824, 32GiB); default: the previous snapshot\'s size. A stream shorter or longer is an error (exit 6).'}),
    'source-command': Flags.string({summary: 'Read the raw disk from this shell command\'s standard output (source "-"); a non-zero exit fails the backup with the first line of its stderr (exit 7).'}),
    'source-timeout': Flags.string({summary: 'Stream sources: fail (exit 7, stopping the command) when the source sends nothing for this long (e.g. 30s, 10m).'}),
    'pre-hook': Flags.string({summary: 'Shell command to run before reading the source (fails the backup when it fails).'}),
    'post-hook': Flags.string({summary: 'Shell command to run after reading the source, even on failure.'}),
    'allow-in-use': Flags.boolean({
      summary: 'Back up a source another process holds open for writing (refused with exit 7 otherwise): the snapshot is tagged crash-consistent and the run exits 3.',
      default: false,
    }),
    'allow-source-change': Flags.boolean({
      summary: 'Back up even when the source path, host or image identity differs from the disk\'s previous snapshot (refused with exit 2 otherwise).',
      default: false,
    }),
  }

  async run(): Promise<void> {
    const f = this.flags
    const repo = await this.openRepo({lock: 'shared', command: 'backup'})
    let phase = ''
    const res = await withProgress(this.out, `backup ${f['source-command'] === undefined ? this.args.source : `command: ${f['source-command']}`}`, (p) =>
      runBackup(repo, {
        source: this.args.source,
        disk: f.disk,
        format: f.format,
        imageSnapshot: f['image-snapshot'],
        full: f.full,
        tags: f.tag,
        dryRun: f['dry-run'],
        changedBlocksFile: f['changed-blocks'],
        size: f.size === undefined ? undefined : parseSize(f.size),
        sourceCommand: f['source-command'],
        sourceTimeoutMs: f['source-timeout'] === undefined ? undefined : parseDuration(f['source-timeout']),
        bitmap: f.bitmap,
        syntheticFullEvery: f['synthetic-full-every'],
        onSourceChange: f['on-source-change'] as 'warn' | 'retry' | 'fail',
        preHook: f['pre-hook'],
        postHook: f['post-hook'],
        allowSourceChange: f['allow-source-change'],
        allowInUse: f['allow-in-use'],
        beforeCommit: () => this.assertLockHeld(),
        onProgress: (ev) => {
          const name = PHASES[ev.phase]
          if (name !== phase) p.phase((phase = name))
          if (ev.phase === 'scan') p.update(ev.bytesDone, ev.bytesTotal)
        },
      }),
    )
    for (const n of res.notices) this.out.log(n)
    const s = res.snapshot
    const st = s.stats
    this.out.result(
      {
        snapshot: res.dryRun ? null : s.id,
        dryRun: res.dryRun,
        disk: s.disk,
        parent: s.parent,
        indexKind: s.indexKind,
        chainLength: s.chainLength,
        virtualSize: s.virtualSize,
        bytesRead: st.bytesRead,
        bytesChanged: st.bytesChanged,
        bytesNew: st.bytesNew,
        bytesStored: st.bytesStored,
        changedBlocks: st.blocksChanged,
        changeSource: s.source.changeSource ?? null,
        newChunks: st.blocksNew,
        durationMs: st.durationMs,
        warnings: res.warnings,
        notices: res.notices,
        sizeChange: res.sizeChange,
      },
      () =>
        `${res.dryRun ? 'dry run: would store' : `snapshot ${shortId(s.id)} of disk "${s.disk}" saved`} (${s.parent ? `${s.indexKind} on ${shortId(s.parent)}, chain ${s.chainLength}` : 'full'}): ` +
        `read ${formatBytes(st.bytesRead)}, ${counted(st.blocksChanged, 'block')} changed (${formatBytes(st.bytesChanged)}), ` +
        `${formatBytes(st.bytesNew)} new → ${formatBytes(st.bytesStored)} stored, in ${formatDuration(st.durationMs)}`,
    )
    this.finishWithWarnings(res.warnings)
  }
}
