// Bounds-checked, read-only access to an image container file, shared by
// every native reader (qcow2, VMDK, VHD, VHDX). Invariants:
//  - every read names the structure being read, so a short or out-of-range
//    read becomes a one-line ImageFormatError, never a short read;
//  - no buffer is allocated from a header value without first checking it
//    against the file size (checkSpan) and MAX_METADATA_READ;
//  - 64-bit fields are decoded only through u64be/u64le, which refuse
//    values above Number.MAX_SAFE_INTEGER;
//  - an optional overlay (the VHDX log replayed in memory) patches what is
//    read without writing the file.
import {open, type FileHandle} from 'node:fs/promises'
import {ImageFormatError, NotFoundError, toVdsnapError} from '../errors.js'

const TWO_32 = 2 ** 32
/** Highest high word that keeps a 64-bit value within 2^53 - 1. */
const MAX_SAFE_HIGH_WORD = 0x1fffff

/** Largest metadata structure we read into one new buffer (tables, logs, bitmaps are smaller). */
export const MAX_METADATA_READ = 64 * 1024 * 1024

/** Decodes a big-endian unsigned 64-bit field; throws if it exceeds 2^53 - 1. */
export function u64be(buf: Buffer, at: number, path: string, field: string): number {
  return checkedU64(buf.readUInt32BE(at), buf.readUInt32BE(at + 4), path, field)
}

/** Decodes a little-endian unsigned 64-bit field; throws if it exceeds 2^53 - 1. */
export function u64le(buf: Buffer, at: number, path: string, field: string): number {
  return checkedU64(buf.readUInt32LE(at + 4), buf.readUInt32LE(at), path, field)
}

function checkedU64(hi: number, lo: number, path: string, field: string): number {
  if (hi > MAX_SAFE_HIGH_WORD) {
    throw new ImageFormatError(path, `${field} is too large: ${BigInt(hi) * 2n ** 32n + BigInt(lo)} is absurdly large (over 2^53)`)
  }
  return hi * TWO_32 + lo
}

/** Writes a non-negative safe integer as a big-endian 64-bit field. */
export function writeU64be(buf: Buffer, value: number, at: number): void {
  checkU64Value(value)
  buf.writeUInt32BE(Math.floor(value / TWO_32), at)
  buf.writeUInt32BE(value % TWO_32, at + 4)
}

/** Writes a non-negative safe integer as a little-endian 64-bit field. */
export function writeU64le(buf: Buffer, value: number, at: number): void {
  checkU64Value(value)
  buf.writeUInt32LE(value % TWO_32, at)
  buf.writeUInt32LE(Math.floor(value / TWO_32), at + 4)
}

function checkU64Value(value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`64-bit field value ${value} is not a safe unsigned integer`)
}

/** Patches applied on top of file reads (e.g. a replayed VHDX log). */
export interface FileOverlay {
  /** The file size after the overlay (at least the physical size). */
  readonly end: number
  /** Rewrites `buf`, which holds the file's bytes at `fileOffset`. */
  apply(buf: Buffer, fileOffset: number): void
}

/** An open container file that knows its size and checks every span against it. */
export class ImageFile {
  private overlay?: FileOverlay

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    readonly physicalSize: number,
  ) {}

  static async open(path: string): Promise<ImageFile> {
    let fh: FileHandle
    try {
      fh = await open(path, 'r')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`${path} does not exist`, {cause: e})
      throw toVdsnapError(e, `opening ${path}`)
    }
    try {
      const st = await fh.stat()
      if (!st.isFile()) throw new ImageFormatError(path, 'not a regular file')
      return new ImageFile(path, fh, st.size)
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
  checkSpan(offset: number, length: number, what: string): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new ImageFormatError(this.path, `${what} at offset ${offset} (${length} bytes) lies past the end of the file (${this.size} bytes)`, {code: 'IMAGE_BOUNDS', offset})
    }
  }

  /** Reads a structure that must lie inside the file into a new buffer; refuses absurd lengths. */
  async readStruct(offset: number, length: number, what: string): Promise<Buffer> {
    if (length > MAX_METADATA_READ) {
      throw new ImageFormatError(this.path, `${what} claims ${length} bytes, more than the ${MAX_METADATA_READ} we accept`, {code: 'IMAGE_BOUNDS', offset})
    }
    const buf = Buffer.alloc(length)
    await this.readInto(buf, 0, length, offset, what)
    return buf
  }

  /** Fills buf[at, at+length) with the file's bytes at `pos`; the span must lie inside the file. */
  async readInto(buf: Buffer, at: number, length: number, pos: number, what: string): Promise<void> {
    this.checkSpan(pos, length, what)
    await this.fill(buf, at, length, pos, what)
  }

  /**
   * Fills buf[at, at+length) from file offset `pos`; the part past EOF is
   * zero-filled (qcow2 data clusters may end past a file's last written byte).
   */
  async readZeroPadded(buf: Buffer, at: number, length: number, pos: number): Promise<void> {
    await this.fill(buf, at, length, pos, 'image data')
  }

  private async fill(buf: Buffer, at: number, length: number, pos: number, what: string): Promise<void> {
    const physical = Math.max(0, Math.min(length, this.physicalSize - pos))
    let done = 0
    try {
      while (done < physical) {
        const {bytesRead} = await this.fh.read(buf, at + done, physical - done, pos + done)
        if (bytesRead === 0) throw new ImageFormatError(this.path, `file shrank while reading ${what} at ${pos + done}`, {code: 'IMAGE_BOUNDS', offset: pos + done})
        done += bytesRead
      }
    } catch (e) {
      buf.fill(0, at + done, at + length)
      throw toVdsnapError(e, `reading ${what} from ${this.path}`)
    }
    if (physical < length) buf.fill(0, at + physical, at + length)
    this.overlay?.apply(buf.subarray(at, at + length), pos)
  }

  async close(): Promise<void> {
    await this.fh.close()
  }
}
