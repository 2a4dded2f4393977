// Raw images: regular files and block devices. The virtual disk is the file
// itself. Allocated ranges come from the file system's hole map when the
// platform can tell (SEEK_DATA/SEEK_HOLE via the optional native helper);
// otherwise the whole file is one range and zero detection finds the holes.
import {open, type FileHandle} from 'node:fs/promises'
import {ImageFormatError, toVdsnapError} from '../errors.js'
import {dataRanges} from './sparse.js'
import type {DiskImage, ImageInfo, Range} from './types.js'

export class RawImage implements DiskImage {
  readonly format = 'raw'

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    readonly virtualSize: number,
    private readonly isBlockDevice: boolean,
  ) {}

  static async open(path: string, fh?: FileHandle): Promise<RawImage> {
    let handle: FileHandle
    try {
      handle = fh ?? (await open(path, 'r'))
    } catch (e) {
      throw toVdsnapError(e, `opening ${path}`)
    }
    const st = await handle.stat()
    let size = st.size
    const isBlock = st.isBlockDevice()
    if (isBlock) size = await blockDeviceSize(handle)
    else if (!st.isFile()) {
      await handle.close()
      throw new ImageFormatError(path, 'not a regular file or block device')
    }
    return new RawImage(path, handle, size, isBlock)
  }

  async allocatedRanges(): Promise<Range[]> {
    if (this.isBlockDevice || this.virtualSize === 0) return this.virtualSize ? [{offset: 0, length: this.virtualSize}] : []
    return dataRanges(this.fh.fd, this.virtualSize)
  }

  async read(buf: Buffer, offset: number, length = buf.length): Promise<number> {
    if (offset + length > this.virtualSize) {
      throw new ImageFormatError(this.path, `read of ${length} bytes at ${offset} is past the end (${this.virtualSize})`, {code: 'IMAGE_BOUNDS', offset})
    }
    let done = 0
    while (done < length) {
      const {bytesRead} = await this.fh.read(buf, done, length - done, offset + done)
      if (bytesRead === 0) {
        throw new ImageFormatError(this.path, `file shrank during the read (short read at ${offset + done})`, {
          code: 'IMAGE_BOUNDS',
          offset: offset + done,
          hint: 'the source changed while being read; run the backup again',
        })
      }
      done += bytesRead
    }
    return length
  }

  async info(): Promise<ImageInfo> {
    const ranges = await this.allocatedRanges()
    return {
      path: this.path,
      format: 'raw',
      subformat: this.isBlockDevice ? 'block device' : 'file',
      virtualSize: this.virtualSize,
      allocatedBytes: ranges.reduce((s, r) => s + r.length, 0),
      parents: [],
      snapshots: [],
      fileSize: this.virtualSize,
    }
  }

  async close(): Promise<void> {
    await this.fh.close()
  }
}

/** Size of a block device: seek-free, by reading the sysfs entry or probing the end. */
async function blockDeviceSize(fh: FileHandle): Promise<number> {
  // Binary search for the last readable byte: works for any block device
  // without ioctl support in Node.
  const one = Buffer.alloc(1)
  let lo = 0
  let hi = 1
  while ((await fh.read(one, 0, 1, hi - 1)).bytesRead === 1) {
    lo = hi
    hi *= 2
    if (hi > 2 ** 53) break
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2)
    if ((await fh.read(one, 0, 1, mid - 1)).bytesRead === 1) lo = mid
    else hi = mid
  }
  return lo
}
