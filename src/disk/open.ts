// Opens a disk image by content, not by file name: each format registers a
// probe on the first bytes of the file; raw is what nothing else claims.
// An internal snapshot (--image-snapshot) is refused for formats without them.
// nbd:// and nbd+unix:// URLs open an NBD client instead (nbd-image.ts).
import {open as fsOpen} from 'node:fs/promises'
import {NotFoundError, UsageError, toVdsnapError} from '../errors.js'
import {FORMATS} from './formats.js'
import {NbdImage} from './nbd-image.js'
import {isNbdUrl} from '../nbd/url.js'
import {RawImage} from './raw.js'
import type {DiskImage, OpenOptions} from './types.js'

export const PROBE_BYTES = 4096

export async function openImage(path: string, options: OpenOptions = {}): Promise<DiskImage> {
  // An NBD URL names a server, not a file: the server presents the virtual disk.
  if (isNbdUrl(path)) {
    if (options.format !== undefined && options.format.toLowerCase() !== 'raw') {
      throw new UsageError(`${path}: an NBD server presents the virtual disk, whatever its format (--format ${options.format})`, {hint: 'leave out --format'})
    }
    if (options.imageSnapshot !== undefined) throw noSnapshots(path, 'nbd', options.imageSnapshot)
    return NbdImage.open(path, {bitmap: options.bitmap})
  }
  let fh
  try {
    fh = await fsOpen(path, 'r')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new NotFoundError(`source ${path} does not exist`, {hint: 'check the path (or the job file)'})
    }
    throw toVdsnapError(e, `opening ${path}`)
  }
  try {
    const head = Buffer.alloc(PROBE_BYTES)
    const {bytesRead} = await fh.read(head, 0, PROBE_BYTES, 0)
    const probe = head.subarray(0, bytesRead)
    const forced = options.format?.toLowerCase()
    if (forced && forced !== 'raw' && !FORMATS.some((f) => f.name === forced)) {
      throw new UsageError(`unknown image format "${options.format}"`, {
        hint: `use one of: raw, ${FORMATS.map((f) => f.name).join(', ')}`,
      })
    }
    if (forced !== 'raw') {
      for (const fmt of FORMATS) {
        if (forced ? fmt.name === forced : fmt.probe(probe, path)) {
          if (options.imageSnapshot !== undefined && !fmt.internalSnapshots) throw noSnapshots(path, fmt.name, options.imageSnapshot)
          await fh.close()
          fh = undefined
          return await fmt.open(path, options)
        }
      }
    }
    if (options.imageSnapshot !== undefined) throw noSnapshots(path, 'raw', options.imageSnapshot)
    const img = await RawImage.open(path, fh)
    fh = undefined
    return img
  } finally {
    await fh?.close()
  }
}

/** Asking for an internal snapshot of a format without them must not quietly read the live disk. */
function noSnapshots(path: string, format: string, snapshot: string): UsageError {
  return new UsageError(`${path}: ${format} images have no internal snapshots (--image-snapshot "${snapshot}")`, {
    hint: `only ${FORMATS.filter((f) => f.internalSnapshots).map((f) => f.name).join(', ')} images have them; leave out --image-snapshot`,
  })
}
