// The one way vdsnap writes a local file it keeps (repository objects of the
// local backend, lock files through it, the job state file, a new overlay):
//
// 1. create a temporary file in the target's directory (same file system,
//    so the rename cannot copy), exclusively, registered for removal on
//    SIGINT/SIGTERM;
// 2. write the content, fsync the file, close it;
// 3. rename it over the target: readers see the old file or the new one,
//    never a part;
// 4. fsync the directory, so the rename itself survives a crash (a caller
//    that writes many files into one directory may defer this and call
//    syncDir once, as the local backend does for chunks).
//
// On any failure the temporary file is removed and the target is untouched;
// the error is the system's own (callers add what they were doing).
import {randomBytes} from 'node:crypto'
import {open, rename, unlink, type FileHandle} from 'node:fs/promises'
import {dirname} from 'node:path'
import {trackTempFile} from '../flow/interrupt.js'

export interface AtomicWriteOptions {
  /** The temporary file's path (in the target's directory); default `<path>.tmp-<random>`. */
  tempPath?: string
  /** Permission bits of a new file (default 0o666 less the umask). */
  mode?: number
  /** Fsync the directory after the rename (default true). */
  syncDir?: boolean
}

/** The content, or a function that writes it through the open temporary file (it must not close it). */
export type AtomicContent = Buffer | string | ((fh: FileHandle) => Promise<void>)

export async function writeFileAtomic(path: string, content: AtomicContent, opts: AtomicWriteOptions = {}): Promise<void> {
  const tmp = opts.tempPath ?? `${path}.tmp-${randomBytes(4).toString('hex')}`
  const untrack = trackTempFile(tmp)
  let created = false
  try {
    const fh = await open(tmp, 'wx', opts.mode)
    created = true
    try {
      if (typeof content === 'function') await content(fh)
      else await fh.writeFile(content)
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, path)
    created = false
    if (opts.syncDir ?? true) await syncDir(dirname(path))
  } catch (e) {
    if (created) await unlink(tmp).catch(() => {})
    throw e
  } finally {
    untrack()
  }
}

/** Fsyncs a directory, making the renames and creations in it durable. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}
