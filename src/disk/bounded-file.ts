// Bounds-checked, read-only access to an image file for the VHD and VHDX
// readers. Every read is checked against the file size before it is issued,
// so a corrupt offset becomes an ImageFormatError naming what was being
// read, never a short read or a huge allocation. An optional overlay (the
// VHDX log replayed in memory) patches what is read without writing the file.
// 64-bit fields are decoded through readU64, the one checked helper.
import {open, type FileHandle} from 'node:fs/promises'
import {ImageFormatError, toVdsnapError} from '../errors.js'

/** Largest metadata structure we read into one new buffer (BAT pages, logs, bitmaps are smaller). */
export const MAX_METADATA_READ = 64 * 1024 * 1024

/** Patches applied on top of file reads (e.g. a replayed VHDX log). */
export interface FileOverlay {
  /** The file size after the overlay (at least the physical size). */
  readonly end: number
  /** Rewrites `buf`, which holds the file's bytes at `fileOffset`. */
  apply(buf: Buffer, fileOffset: number): void
}

export class BoundedFile {
  private overlay?: FileOverlay

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    readonly physicalSize: number,
  ) {}

  static async open(path: string): Promise<BoundedFile> {
    let fh: FileHandle
    try {
      fh = await open(path, 'r')
    } catch (e) {
      throw toVdsnapError(e, `opening ${path}`)
    }
    try {
      const st = await fh.stat()
      if (!st.isFile()) throw new ImageFormatError(path, 'not a regular file')
      return new BoundedFile(path, fh, st.size)
    } catch (e) {
      await fh.close()
      throw e
    }
  }

  /** Logical size: the physical size, or more when the overlay extends the file. */
  get size(): number {
    return this.overlay ? Math.max(this.overlay.end, this.physicalSize) : this.physicalSize
  }

  setOverlay(overlay: FileOverlay): void {
    this.overlay = overlay
  }

  /** Throws unless [offset, offset+length) lies inside the file. */
  check(offset: number, length: number, what: string): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new ImageFormatError(this.path, `${what} at offset ${offset} (${length} bytes) lies past the end of the file (${this.size} bytes)`)
    }
  }

  /** Fills buf[bufOffset, bufOffset+length) with the file's bytes at fileOffset. */
  async readInto(buf: Buffer, bufOffset: number, length: number, fileOffset: number, what: string): Promise<void> {
    this.check(fileOffset, length, what)
    const physical = Math.max(0, Math.min(length, this.physicalSize - fileOffset))
    let done = 0
    try {
      while (done < physical) {
        const {bytesRead} = await this.fh.read(buf, bufOffset + done, physical - done, fileOffset + done)
        if (bytesRead === 0) throw new ImageFormatError(this.path, `file shrank while reading ${what} at ${fileOffset + done}`)
        done += bytesRead
      }
    } catch (e) {
      throw toVdsnapError(e, `reading ${what} from ${this.path}`)
    }
    if (physical < length) buf.fill(0, bufOffset + physical, bufOffset + length)
    this.overlay?.apply(buf.subarray(bufOffset, bufOffset + length), fileOffset)
  }

  /** Reads a metadata structure into a new buffer; refuses absurd lengths. */
  async readNew(fileOffset: number, length: number, what: string): Promise<Buffer> {
    if (length > MAX_METADATA_READ) {
      throw new ImageFormatError(this.path, `${what} claims ${length} bytes, more than the ${MAX_METADATA_READ} we accept`)
    }
    const buf = Buffer.alloc(length)
    await this.readInto(buf, 0, length, fileOffset, what)
    return buf
  }

  async close(): Promise<void> {
    await this.fh.close()
  }
}

/** Decodes an unsigned 64-bit field; values above 2^53 are refused as corrupt. */
export function readU64(buf: Buffer, offset: number, littleEndian: boolean, path: string, what: string): number {
  const v = littleEndian ? buf.readBigUInt64LE(offset) : buf.readBigUInt64BE(offset)
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ImageFormatError(path, `${what} (${v}) is absurdly large`)
  return Number(v)
}

/** Encodes an unsigned 64-bit field from a safe integer. */
export function writeU64(buf: Buffer, offset: number, value: number, littleEndian: boolean): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`64-bit field value ${value} is not a safe unsigned integer`)
  if (littleEndian) buf.writeBigUInt64LE(BigInt(value), offset)
  else buf.writeBigUInt64BE(BigInt(value), offset)
}
