// Serving a snapshot straight from a `vdsnap export` archive, with no
// repository: the export needs random access by block, so
// 1. only archive files are taken: "-" (a pipe) and FIFOs or tapes cannot
//    seek, and a tar file has no index to seek by (it is read in one pass);
//    a ZIP file is read by entry, one volume or every volume of a split set;
// 2. only chunks archives: a portable archive's image is one deflated entry,
//    which cannot be read at an offset without inflating all before it;
// 3. the archive's head is opened and checked (password for an encrypted
//    one) as for restore, then its chunks feed the same BlockSource, cache
//    and NBD server as a repository snapshot. An --overlay needs only the
//    snapshot's id and size, so it works here too (and a restore --overlay
//    from the repository the archive came from applies it).
import {stat} from 'node:fs/promises'
import {chunkBlockSource, openArchive} from '../archive/open-archive.js'
import {isZipFile} from '../archive/zip-file-source.js'
import {UsageError, toVdsnapError} from '../errors.js'
import type {Manifest} from '../repo/manifest.js'
import {serveSource, serveSourceOptions, type ServeOptions, type ServeResult} from './serve.js'

export interface ServeArchiveOptions extends Omit<ServeOptions, 'snapshot' | 'name'> {
  /** Export name (default: the snapshot's disk name). */
  name?: string
  /** Called once the archive is open and checked, before listening (e.g. to pick the export name). */
  onOpened?: (snapshot: Manifest, describe: string) => void
}

export async function runServeArchive(paths: string[], password: () => Promise<string>, opts: ServeArchiveOptions): Promise<ServeResult & {archive: string}> {
  for (const p of paths) await assertSeekable(p)
  const a = await openArchive(paths, password)
  if (!a.resolved) {
    await a.source.close().catch(() => {})
    throw new UsageError(`${a.source.describe} is a portable archive: its disk image is one compressed entry that cannot be served by offset`, {
      hint: `unzip it to a raw image and serve that with qemu-nbd, or "vdsnap import" it into a repository and serve the snapshot`,
    })
  }
  let source
  try {
    opts.onOpened?.(a.snapshot, a.source.describe)
    source = chunkBlockSource(a, a.resolved, serveSourceOptions(opts))
  } catch (e) {
    await a.source.close().catch(() => {})
    throw e
  }
  // source.close() closes the chunk decoder; the archive's files are closed after it.
  try {
    return {...(await serveSource(source, {...opts, snapshot: a.snapshot, name: opts.name ?? a.snapshot.disk})), archive: a.source.describe}
  } finally {
    await a.source.close().catch(() => {})
  }
}

async function assertSeekable(path: string): Promise<void> {
  if (path === '-') throw new UsageError('serve --from-archive needs an archive file: a pipe (-) cannot be read at random offsets', {hint: 'save the archive to a file first, or restore it with "vdsnap restore --from-archive - --to FILE"'})
  const st = await stat(path).catch((e: unknown) => Promise.reject(toVdsnapError(e, `opening archive ${path}`)))
  if (!st.isFile()) throw new UsageError(`${path} is not an archive file: serve reads an archive at random offsets, which a pipe or tape cannot give`, {hint: 'copy the archive to a file first'})
  if (!(await isZipFile(path))) {
    throw new UsageError(`${path} is a tar archive (or not an archive): tar has no index, so it cannot be served at random offsets`, {
      hint: `export a ZIP archive (--to NAME.zip), or "vdsnap import" it into a repository, or "vdsnap restore --from-archive ${path} --to FILE"`,
    })
  }
}
