// Bounds-checked access to an image container file, shared by the native
// qcow2 and VMDK readers. Invariants: every read names the structure being
// read so a short or out-of-range read becomes a one-line ImageFormatError;
// 64-bit fields are decoded only through u64be/u64le, which refuse values
// above Number.MAX_SAFE_INTEGER; no buffer is allocated from a header value
// without first checking it against the file size (see checkSpan).
import {open, type FileHandle} from 'node:fs/promises'
import {ImageFormatError, NotFoundError, toVdsnapError} from '../errors.js'

const TWO_32 = 2 ** 32
/** Highest high word that keeps a 64-bit value within 2^53 - 1. */
const MAX_SAFE_HIGH_WORD = 0x1fffff

/** Decodes a big-endian unsigned 64-bit field; throws if it exceeds 2^53 - 1. */
export function u64be(buf: Buffer, at: number, path: string, field: string): number {
  const hi = buf.readUInt32BE(at)
  const lo = buf.readUInt32BE(at + 4)
  if (hi > MAX_SAFE_HIGH_WORD) throw new ImageFormatError(path, `${field} is too large (over 2^53)`)
  return hi * TWO_32 + lo
}

/** Decodes a little-endian unsigned 64-bit field; throws if it exceeds 2^53 - 1. */
export function u64le(buf: Buffer, at: number, path: string, field: string): number {
  const lo = buf.readUInt32LE(at)
  const hi = buf.readUInt32LE(at + 4)
  if (hi > MAX_SAFE_HIGH_WORD) throw new ImageFormatError(path, `${field} is too large (over 2^53)`)
  return hi * TWO_32 + lo
}

/** Writes a non-negative safe integer as a big-endian 64-bit field. */
export function writeU64be(buf: Buffer, value: number, at: number): void {
  buf.writeUInt32BE(Math.floor(value / TWO_32), at)
  buf.writeUInt32BE(value % TWO_32, at + 4)
}

/** Writes a non-negative safe integer as a little-endian 64-bit field. */
export function writeU64le(buf: Buffer, value: number, at: number): void {
  buf.writeUInt32LE(value % TWO_32, at)
  buf.writeUInt32LE(Math.floor(value / TWO_32), at + 4)
}

/** An open container file that knows its size and checks every span against it. */
export class ImageFile {
  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    readonly size: number,
  ) {}

  static async open(path: string): Promise<ImageFile> {
    let fh: FileHandle
    try {
      fh = await open(path, 'r')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`${path} does not exist`, {cause: e})
      throw toVdsnapError(e, `opening ${path}`)
    }
    const st = await fh.stat()
    return new ImageFile(path, fh, st.size)
  }

  /** Throws unless [offset, offset+length) lies inside the file. */
  checkSpan(offset: number, length: number, what: string): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new ImageFormatError(this.path, `${what} at offset ${offset} (${length} bytes) lies past the end of the file (${this.size})`)
    }
  }

  /** Reads exactly `length` bytes of a structure that must lie inside the file. */
  async readStruct(offset: number, length: number, what: string): Promise<Buffer> {
    this.checkSpan(offset, length, what)
    const buf = Buffer.alloc(length)
    await this.readInto(buf, 0, length, offset)
    return buf
  }

  /**
   * Fills buf[at, at+length) from file offset `pos`; the part past EOF is
   * zero-filled (data clusters may end past a file's last written byte).
   */
  async readZeroPadded(buf: Buffer, at: number, length: number, pos: number): Promise<void> {
    const avail = Math.max(0, Math.min(length, this.size - pos))
    if (avail > 0) await this.readInto(buf, at, avail, pos)
    if (avail < length) buf.fill(0, at + avail, at + length)
  }

  private async readInto(buf: Buffer, at: number, length: number, pos: number): Promise<void> {
    let done = 0
    while (done < length) {
      let n: number
      try {
        n = (await this.fh.read(buf, at + done, length - done, pos + done)).bytesRead
      } catch (e) {
        throw toVdsnapError(e, `reading ${this.path}`)
      }
      if (n === 0) {
        buf.fill(0, at + done, at + length)
        throw new ImageFormatError(this.path, `short read at ${pos + done}: the file shrank while being read`)
      }
      done += n
    }
  }

  async close(): Promise<void> {
    await this.fh.close()
  }
}
