// Output plumbing shared by the image writers.
//  - writeAt is the one positional write loop (all writers use it).
//  - ImageOutput writes to a temporary name next to the target, batching
//    sequential appends into large writes; finish() flushes, fsyncs and
//    renames into place, abort() closes and removes the partial file.
//  - UnitAssembler turns ascending, sector-sized writes into whole units
//    (clusters, grains): bytes a write does not cover stay zero, and a
//    unit is handed on as soon as a write moves past it.
import {randomBytes} from 'node:crypto'
import {open, rename, rm, type FileHandle} from 'node:fs/promises'
import {basename, dirname, join} from 'node:path'
import {toVdsnapError, VdsnapError} from '../errors.js'
import {trackTempFile} from '../flow/interrupt.js'

const BATCH_BYTES = 8 * 1024 * 1024
const SECTOR = 512

/** Writes all of `buf` at file offset `pos` (a write may be partial, so it loops). */
export async function writeAt(fh: FileHandle, path: string, buf: Buffer, pos: number): Promise<void> {
  try {
    let done = 0
    while (done < buf.length) done += (await fh.write(buf, done, buf.length - done, pos + done)).bytesWritten
  } catch (e) {
    throw toVdsnapError(e, `writing ${path}`)
  }
}

export class ImageOutput {
  /** Stops SIGINT / SIGTERM from removing the file once it is renamed or removed. */
  private untrack = () => {}
  private queue: Buffer[] = []
  private queued = 0
  private queueStart: number
  /** Where the next append lands. */
  end: number

  private constructor(
    readonly path: string,
    private readonly tmpPath: string,
    private readonly fh: FileHandle,
    start: number,
  ) {
    this.queueStart = start
    this.end = start
  }

  /** Creates the temporary output; appends start at byte `start`. */
  static async create(path: string, start: number): Promise<ImageOutput> {
    const tmpPath = join(dirname(path), `.${basename(path)}.${randomBytes(4).toString('hex')}.partial`)
    const untrack = trackTempFile(tmpPath)
    try {
      const out = new ImageOutput(path, tmpPath, await open(tmpPath, 'wx'), start)
      out.untrack = untrack
      return out
    } catch (e) {
      untrack()
      throw toVdsnapError(e, `creating ${path}`)
    }
  }

  /** Appends `buf` (kept by reference until flushed); returns its file offset. */
  async append(buf: Buffer): Promise<number> {
    const at = this.end
    this.queue.push(buf)
    this.queued += buf.length
    this.end += buf.length
    if (this.queued >= BATCH_BYTES) await this.flush()
    return at
  }

  /** Writes `buf` at an absolute offset (metadata outside the append stream). */
  writeAt(buf: Buffer, pos: number): Promise<void> {
    return writeAt(this.fh, this.path, buf, pos)
  }

  async flush(): Promise<void> {
    if (this.queue.length === 0) return
    const bufs = this.queue
    this.queue = []
    const start = this.queueStart
    this.queueStart += this.queued
    this.queued = 0
    try {
      let pos = start
      for (let i = 0; i < bufs.length; i += 512) {
        const part = bufs.slice(i, i + 512)
        const {bytesWritten} = await this.fh.writev(part, pos)
        const want = part.reduce((s, b) => s + b.length, 0)
        if (bytesWritten !== want) await this.writeAt(Buffer.concat(part).subarray(bytesWritten), pos + bytesWritten)
        pos += want
      }
    } catch (e) {
      throw toVdsnapError(e, `writing ${this.path}`)
    }
  }

  /** Flushes, sets the final length, fsyncs and renames into place. */
  async finish(length: number): Promise<void> {
    await this.flush()
    try {
      await this.fh.truncate(length)
      await this.fh.sync()
      await this.fh.close()
      await rename(this.tmpPath, this.path)
      this.untrack()
    } catch (e) {
      throw toVdsnapError(e, `finishing ${this.path}`)
    }
  }

  async abort(): Promise<void> {
    await this.fh.close().catch(() => undefined)
    await rm(this.tmpPath, {force: true})
    this.untrack()
  }
}

/** Collects ascending writes into zero-filled units of `unitSize` bytes. */
export class UnitAssembler {
  private index = -1
  private buf: Buffer
  private nextOffset = 0

  constructor(
    private readonly path: string,
    private readonly unitSize: number,
    private readonly virtualSize: number,
    private readonly onUnit: (index: number, data: Buffer) => Promise<void>,
  ) {
    this.buf = Buffer.alloc(unitSize)
  }

  async write(offset: number, data: Buffer): Promise<void> {
    const end = offset + data.length
    if (offset < this.nextOffset) throw new VdsnapError(`${this.path}: write at ${offset} is not in ascending order (next is ${this.nextOffset})`)
    if (offset % SECTOR !== 0 || (data.length % SECTOR !== 0 && end !== this.virtualSize)) {
      throw new VdsnapError(`${this.path}: write of ${data.length} bytes at ${offset} is not sector-aligned`)
    }
    if (end > this.virtualSize) throw new VdsnapError(`${this.path}: write at ${offset} runs past the virtual size ${this.virtualSize}`)
    this.nextOffset = end
    let pos = offset
    while (pos < end) {
      const unit = Math.floor(pos / this.unitSize)
      if (unit !== this.index) {
        await this.flush()
        this.index = unit
      }
      const inUnit = pos - unit * this.unitSize
      const n = Math.min(this.unitSize - inUnit, end - pos)
      data.copy(this.buf, inUnit, pos - offset, pos - offset + n)
      pos += n
    }
  }

  /** Hands on the unit being assembled, if any. */
  async flush(): Promise<void> {
    if (this.index < 0) return
    const full = this.buf
    const index = this.index
    this.buf = Buffer.alloc(this.unitSize)
    this.index = -1
    await this.onUnit(index, full)
  }
}
