// Opens a disk image by content, not by file name: each format registers a
// probe on the first bytes of the file; raw is what nothing else claims.
// An internal snapshot (--image-snapshot) is refused for formats without them.
// nbd:// and nbd+unix:// URLs open an NBD client instead (nbd-image.ts).
import {open as fsOpen, readdir, type FileHandle} from 'node:fs/promises'
import {join} from 'node:path'
import {ImageFormatError, NotFoundError, UsageError, toVdsnapError} from '../errors.js'
import {detectForeignFormat, FOREIGN_TAIL_BYTES} from './foreign-formats.js'
import {FORMATS} from './formats.js'
import {NbdImage} from './nbd-image.js'
import {isNbdUrl} from '../nbd/url.js'
import {RawImage} from './raw.js'
import type {ChainOpenOptions} from './backing-chain.js'
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
    if ((await fh.stat()).isDirectory()) throw await directoryMistake(path)
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
          const withOpener: ChainOpenOptions = {...options, openParent: openParentImage}
          return await fmt.open(path, withOpener)
        }
      }
    }
    if (options.imageSnapshot !== undefined) throw noSnapshots(path, 'raw', options.imageSnapshot)
    if (forced !== 'raw') await refuseForeign(fh, path, probe)
    const img = await RawImage.open(path, fh)
    fh = undefined
    return img
  } finally {
    await fh?.close()
  }
}

/** ChainOpenOptions.openParent: a qcow2 backing file or VMDK parent, of any format. */
function openParentImage(path: string, chainAbove: string[], format?: string): Promise<DiskImage> {
  const options: ChainOpenOptions = {chainAbove}
  // A format name we do not know (qemu's "vpc", say) is left to detection.
  if (format && (format === 'raw' || FORMATS.some((f) => f.name === format))) options.format = format
  return openImage(path, options)
}

/**
 * An image in a format vdsnap does not read would otherwise be taken as raw
 * and stored as container bytes with the wrong size; --format raw is the
 * user saying the bytes are what they want.
 */
async function refuseForeign(fh: FileHandle, path: string, head: Buffer): Promise<void> {
  const st = await fh.stat()
  let tail: Buffer | undefined
  if (st.isFile() && st.size >= FOREIGN_TAIL_BYTES) {
    tail = Buffer.alloc(FOREIGN_TAIL_BYTES)
    await fh.read(tail, 0, FOREIGN_TAIL_BYTES, st.size - FOREIGN_TAIL_BYTES)
  }
  const found = detectForeignFormat(head, tail)
  if (found) {
    throw new ImageFormatError(path, `is a ${found} image, a format vdsnap does not read`, {
      hint: 'convert it first (qemu-img convert -O qcow2), or give --format raw to store its container bytes as they are',
    })
  }
}

/** Asking for an internal snapshot of a format without them must not quietly read the live disk. */
function noSnapshots(path: string, format: string, snapshot: string): UsageError {
  return new UsageError(`${path}: ${format} images have no internal snapshots (--image-snapshot "${snapshot}")`, {
    hint: `only ${FORMATS.filter((f) => f.internalSnapshots).map((f) => f.name).join(', ')} images have them; leave out --image-snapshot`,
  })
}

/**
 * A directory given as a disk: a Parallels disk bundle (NAME.hdd holding
 * DiskDescriptor.xml and .hds data files), a Parallels VM bundle (NAME.pvm
 * holding .hdd bundles), or any other directory. vdsnap reads single-file
 * images, so each gets a usage error saying which file to give instead.
 */
async function directoryMistake(path: string): Promise<UsageError> {
  const names = await readdir(path).catch(() => [] as string[])
  if (names.includes('DiskDescriptor.xml')) {
    const hds = names.find((n) => n.endsWith('.hds'))
    return new UsageError(`${path} is a Parallels disk bundle (a directory), which vdsnap cannot read`, {
      hint: `convert it to a single image first, e.g. qemu-img convert -f parallels ${join(path, hds ?? '<file>.hds')} -O qcow2 disk.qcow2`,
    })
  }
  const disks = names.filter((n) => n.endsWith('.hdd'))
  if (disks.length > 0) {
    return new UsageError(`${path} is a Parallels VM bundle (a directory) holding ${disks.join(', ')}`, {
      hint: 'vdsnap reads single-file images: convert each disk\'s .hds file with qemu-img convert -f parallels and back up the result',
    })
  }
  return new UsageError(`${path} is a directory, not a disk image`, {hint: 'give the image file or block device itself'})
}
