import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../src/cli/base-command.js'
import {formatBytes, formatDuration} from '../src/cli/output.js'
import {withProgress} from '../src/cli/progress.js'
import {runBackup} from '../src/backup/backup.js'
import {shortId} from '../src/repo/manifest.js'

export default class Backup extends BaseCommand<typeof Backup> {
  static override summary = 'Back up a disk image or block device as a new snapshot.'
  static override description =
    'Reads the source (raw file, block device, qcow2, VMDK, VHD, VHDX, or an NBD export such as a running VM\'s disk), compares every allocated block with the newest snapshot of the same disk and stores only the blocks that changed, deduplicated, compressed and encrypted. Exit code 3 means the snapshot was stored with warnings (e.g. the source changed during the read).'
  static override examples = [
    '<%= config.bin %> backup /var/lib/libvirt/images/web.img --repo /srv/backup/vdsnap',
    '<%= config.bin %> backup /dev/vg0/db-snap --disk db --tag nightly --pre-hook "lvcreate -s -n db-snap -L 5G vg0/db" --post-hook "lvremove -y vg0/db-snap"',
    '<%= config.bin %> backup web.img --changed-blocks changes.json --json',
    '<%= config.bin %> backup nbd://127.0.0.1:10809/vda --disk web --bitmap backup-vda',
  ]
  static override args = {
    source: Args.string({description: 'Disk image file, block device or NBD URL', required: true}),
  }
  static override flags = {
    disk: Flags.string({summary: 'Name of the disk lineage (default: the file name without extension).'}),
    format: Flags.string({summary: 'Force the source format instead of detecting it (raw, qcow2, vmdk, vhd, vhdx).'}),
    'image-snapshot': Flags.string({summary: 'Back up this internal snapshot of a qcow2 image (name or id, see "vdsnap info").'}),
    'changed-blocks': Flags.string({summary: 'JSON file of changed ranges ([{"offset","length"}] or qemu-img map --output=json): only those blocks are read.'}),
    bitmap: Flags.string({summary: 'NBD sources: read only the blocks this QEMU dirty bitmap marks (qemu:dirty-bitmap:NAME); it must have been rotated when the previous snapshot was taken.'}),
    full: Flags.boolean({summary: 'Ignore the previous snapshot: compare nothing, read everything.', default: false}),
    tag: Flags.string({summary: 'Tag the snapshot (repeatable).', multiple: true, default: []}),
    'dry-run': Flags.boolean({summary: 'Read and hash the source and report what would be stored, storing nothing.', default: false}),
    'synthetic-full-every': Flags.integer({summary: 'Write a full index every N snapshots (default: the repository setting).', min: 1}),
    'on-source-change': Flags.string({summary: 'When the source changes during the read: warn (exit 3), retry (up to 3 reads), or fail.', options: ['warn', 'retry', 'fail'], default: 'warn'}),
    'pre-hook': Flags.string({summary: 'Shell command to run before reading the source (fails the backup when it fails).'}),
    'post-hook': Flags.string({summary: 'Shell command to run after reading the source, even on failure.'}),
  }

  async run(): Promise<void> {
    const f = this.flags
    const repo = await this.openRepo({lock: 'shared', command: 'backup'})
    const res = await withProgress(this.out, `backup ${this.args.source}`, (p) =>
      runBackup(repo, {
        source: this.args.source,
        disk: f.disk,
        format: f.format,
        imageSnapshot: f['image-snapshot'],
        full: f.full,
        tags: f.tag,
        dryRun: f['dry-run'],
        changedBlocksFile: f['changed-blocks'],
        bitmap: f.bitmap,
        syntheticFullEvery: f['synthetic-full-every'],
        onSourceChange: f['on-source-change'] as 'warn' | 'retry' | 'fail',
        preHook: f['pre-hook'],
        postHook: f['post-hook'],
        beforeCommit: () => this.assertLockHeld(),
        onProgress: (ev) => (ev.phase === 'scan' ? p.update(ev.bytesDone, ev.bytesTotal) : p.phase(ev.phase)),
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
      },
      () =>
        `${res.dryRun ? 'dry run: would store' : `snapshot ${shortId(s.id)} of disk "${s.disk}" saved`} (${s.parent ? `${s.indexKind} on ${shortId(s.parent)}, chain ${s.chainLength}` : 'full'}): ` +
        `read ${formatBytes(st.bytesRead)}, ${st.blocksChanged} blocks changed (${formatBytes(st.bytesChanged)}), ` +
        `${formatBytes(st.bytesNew)} new → ${formatBytes(st.bytesStored)} stored, in ${formatDuration(st.durationMs)}`,
    )
    this.finishWithWarnings(res.warnings)
  }
}
