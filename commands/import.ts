import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../src/cli/base-command.js'
import {formatBytes, formatDuration} from '../src/cli/output.js'
import {passwordSource} from '../src/cli/password.js'
import {withProgress} from '../src/cli/progress.js'
import {openArchive} from '../src/archive/open-archive.js'
import {runImport} from '../src/archive/import.js'
import {shortId} from '../src/repo/manifest.js'

export default class Import extends BaseCommand<typeof Import> {
  static override summary = 'Bring an archive\'s snapshot (vdsnap export) back into a repository.'
  static override description =
    'Verifies the archive as it reads it and stores only the chunks the repository lacks; into a repository with other keys every chunk is re-encrypted. The imported snapshot is a full index: later backups of its disk chain onto it. The archive\'s password comes from VDSNAP_ARCHIVE_PASSWORD, --archive-password-file or VDSNAP_ARCHIVE_PASSWORD_COMMAND, else the repository\'s password is tried. - reads the archive from stdin.'
  static override examples = [
    '<%= config.bin %> import /mnt/cold/web-2026-12.zip --repo /srv/backup/vdsnap',
    '<%= config.bin %> import web.zip.001 web.zip.002 web.zip.003 --repo /srv/backup/vdsnap',
    'dd if=/dev/nst0 bs=256k | <%= config.bin %> import - --repo /srv/backup/vdsnap',
  ]
  static override args = {
    archive: Args.string({description: 'The archive file, or - for stdin; for a split archive, every volume (any order).', required: true, ignoreStdin: true}),
  }
  static override strict = false
  static override flags = {
    'archive-password-file': Flags.string({summary: 'Read the archive\'s password from this file (default: the repository password).', env: 'VDSNAP_ARCHIVE_PASSWORD_FILE'}),
  }

  async run(): Promise<void> {
    const f = this.flags
    const repoPassword = passwordSource(this.passwordFlags())
    const archivePassword = passwordSource({file: f['archive-password-file']}, 'VDSNAP_ARCHIVE_', 'archive', '--archive-')
    const repo = await this.openRepo({lock: 'shared', command: 'import'})
    const {argv} = await this.parse(Import)
    const archive = await openArchive(argv as string[], () => archivePassword().catch(() => repoPassword()))
    const res = await withProgress(this.out, `import ${shortId(archive.snapshot.id)} from ${archive.source.describe}`, (p) =>
      runImport(repo, archive, {onProgress: (d, t) => p.update(d, t), beforeCommit: () => this.assertLockHeld()}),
    )
    this.out.result(res, () =>
      res.alreadyPresent
        ? `snapshot ${shortId(res.snapshot)} (${res.disk}) is already in ${repo.location}: nothing imported`
        : `imported ${shortId(res.snapshot)} (${res.disk}) from ${res.archive}: ${res.chunksStored} chunks stored (${formatBytes(res.bytesStored)}${res.reencrypted ? ', re-encoded for this repository' : ''}), ${res.chunksPresent} already present, in ${formatDuration(res.durationMs)}`,
    )
  }
}
