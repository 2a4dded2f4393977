import {Flags} from '@oclif/core'
import {BaseCommand, readOnlyFlags} from '../src/cli/base-command.js'
import {withProgress} from '../src/cli/progress.js'
import {runCheck} from '../src/check/check.js'
import {EXIT_CODES} from '../src/errors.js'
import {counted} from '../src/cli/output.js'
import {openArchive} from '../src/archive/open-archive.js'
import {passwordSource} from '../src/cli/password.js'
import {checkArchive} from '../src/restore/from-archive.js'
import {keySlotTemps, keySlotTempsWarning} from '../src/repo/key-admin.js'

export default class Check extends BaseCommand<typeof Check> {
  static override summary = 'Verify the repository (structure, and optionally the data), or an archive made by vdsnap export.'
  static override description =
    'Checks that every snapshot\'s manifest and index chain is present and well-formed and that every chunk it references exists. --read-data re-reads, decrypts and re-hashes every referenced chunk; --read-data-subset does it for a part (10% at random, or part n of m, so m runs cover everything). Findings are listed, never repaired, with the snapshots that are lost and those intact; exit code 6 when there are any. "vdsnap repair snapshots" removes unreadable manifests. --archive ARCHIVE checks an archive (vdsnap export) instead, with no repository: its structure, every chunk\'s digest and the image SHA-256; - reads it from stdin (a pipe or tape), and a split archive takes every volume, in any order.'
  static override examples = ['<%= config.bin %> check', '<%= config.bin %> check --read-data', '<%= config.bin %> check --read-data-subset 3/7 --json', '<%= config.bin %> check --archive /mnt/cold/web-2026-12.zip']
  static override flags = {
    ...readOnlyFlags,
    'read-data': Flags.boolean({summary: 'Read and verify every referenced chunk.', default: false, exclusive: ['read-data-subset']}),
    'read-data-subset': Flags.string({summary: 'Read and verify a subset: a percentage (10%) or a part n/m (3/7).'}),
    archive: Flags.string({summary: 'Verify an archive (vdsnap export) instead of a repository: structure, every chunk\'s digest, the image SHA-256; - reads stdin.', multiple: true, exclusive: ['read-data', 'read-data-subset']}),
  }

  async run(): Promise<void> {
    if (this.flags.archive) return this.checkArchive(this.flags.archive)
    const repo = await this.openRepo({lock: 'shared', command: 'check'})
    const res = await withProgress(this.out, `check ${repo.location}`, (p) =>
      runCheck(repo, {readData: this.flags['read-data'], readDataSubset: this.flags['read-data-subset'], onProgress: (d, t) => p.update(d, t)}),
      false,
      'chunk',
    )
    // reported, not removed: check changes nothing (key passwd/remove sweep them)
    const keyTemps = repo.master ? await keySlotTemps(repo) : []
    const leftover = keySlotTempsWarning(keyTemps)
    if (leftover) this.out.warn(leftover)
    this.out.result({...res, keySlotTemps: keyTemps}, () => {
      const lines = res.findings.map((f) => `error: ${f.message}`)
      if (res.lost.length > 0) {
        lines.push(`lost (cannot be restored): ${res.lost.map((id) => id.slice(0, 8)).join(', ')}`)
        lines.push(`intact: ${res.intact.length === 0 ? 'none' : res.intact.map((id) => id.slice(0, 8)).join(', ')}`)
      }
      lines.push(
        `${counted(res.snapshots, 'snapshot')}, ${counted(res.chunksReferenced, 'chunk')} referenced, ${res.chunksRead} read and verified, ${res.unreferencedChunks} unreferenced (prune frees them), ${counted(res.staleLocks, 'stale lock')}: ${res.findings.length === 0 ? 'no errors' : counted(res.findings.length, 'error')}`,
      )
      return lines.join('\n')
    })
    if (res.findings.length > 0) this.exit(EXIT_CODES.data)
  }

  private async checkArchive(archives: string[]): Promise<void> {
    const archive = await openArchive(archives, passwordSource(this.passwordFlags()))
    const res = await withProgress(this.out, `check ${archive.source.describe}`, (p) => checkArchive(archive, (d, t) => p.update(d, t)))
    this.out.result(res, () => `${res.archive}: ${res.kind} archive of ${res.disk} snapshot ${res.snapshot.slice(0, 8)}, ${counted(res.chunksVerified, 'chunk')} verified, image sha256 ${res.imageSha256}: no errors`)
  }
}
