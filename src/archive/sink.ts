// Where an archive's bytes go, forward only: a file (written under a
// temporary name, fsynced, renamed when complete, its directory fsynced), a pipe, stdout or a tape device.
// A ByteSink counts what it has written (the ZIP writer needs offsets) and
// honours back-pressure. RecordSink cuts the stream into whole records of a
// fixed size, padding the last one with zeros, as fixed-block tape drives
// and `dd bs=` expect.
import {randomBytes} from 'node:crypto'
import {createWriteStream, type WriteStream} from 'node:fs'
import {open, rename, stat, unlink} from 'node:fs/promises'
import {basename, dirname, join} from 'node:path'
import type {Writable} from 'node:stream'
import {UsageError, toVdsnapError} from '../errors.js'
import {syncDir} from '../fs/atomic-write.js'

export interface ByteSink {
  /** Bytes accepted so far. */
  readonly position: number
  write(buf: Buffer): Promise<void>
  /** Flushes and makes the output visible (renames a temporary file). */
  finish(): Promise<void>
  /** Drops a partial output where possible (a temporary file is removed). */
  abort(): Promise<void>
}

class StreamSink implements ByteSink {
  position = 0
  private failed: Error | null = null

  constructor(
    private readonly out: Writable,
    private readonly describe: string,
    private readonly onFinish: () => Promise<void> = async () => {},
    private readonly onAbort: () => Promise<void> = async () => {},
  ) {
    out.on('error', (e) => (this.failed = toVdsnapError(e, `writing ${describe}`)))
  }

  async write(buf: Buffer): Promise<void> {
    if (this.failed) throw this.failed
    this.position += buf.length
    if (!this.out.write(buf)) {
      await new Promise<void>((resolve, reject) => {
        const done = () => {
          this.out.off('drain', done)
          this.out.off('error', fail)
          resolve()
        }
        const fail = (e: Error) => {
          this.out.off('drain', done)
          reject(toVdsnapError(e, `writing ${this.describe}`))
        }
        this.out.on('drain', done)
        this.out.once('error', fail)
      })
    }
    if (this.failed) throw this.failed
  }

  async finish(): Promise<void> {
    if (this.failed) throw this.failed
    if (this.out !== process.stdout) {
      await new Promise<void>((resolve, reject) => {
        this.out.once('error', (e) => reject(toVdsnapError(e, `writing ${this.describe}`)))
        this.out.end(() => resolve())
      })
    }
    await this.onFinish()
  }

  async abort(): Promise<void> {
    if (this.out !== process.stdout) this.out.destroy()
    await this.onAbort()
  }
}

/**
 * Opens `to`: "-" is stdout; a character device or FIFO (a tape, a pipe) is
 * written in place; anything else is a new regular file written under a
 * temporary name in the same directory and renamed when complete.
 */
export async function openSink(to: string, force = false): Promise<ByteSink> {
  if (to === '-') return new StreamSink(process.stdout, 'stdout')
  const st = await stat(to).catch(() => null)
  if (st && (st.isCharacterDevice() || st.isFIFO() || st.isBlockDevice())) {
    return new StreamSink(await openStream(to, 'r+'), to)
  }
  if (st && !force) throw new UsageError(`${to} already exists`, {hint: 'choose another path, or add --force to replace it'})
  const tmp = join(dirname(to), `.${basename(to)}.vdsnap-${randomBytes(4).toString('hex')}`)
  const out = await openStream(tmp, 'wx')
  return new StreamSink(
    out,
    to,
    async () => {
      await new Promise<void>((resolve, reject) => (out as WriteStream).close((e) => (e ? reject(e) : resolve())))
      // the archive must be on disk before it appears under its name, and the
      // rename durable before the export (or a job's state) calls it done:
      // fsync the file (any descriptor of it flushes its data), rename, fsync the directory
      try {
        const fh = await open(tmp, 'r+')
        try {
          await fh.sync()
        } finally {
          await fh.close()
        }
        await rename(tmp, to)
        await syncDir(dirname(to))
      } catch (e) {
        throw toVdsnapError(e, `writing ${to}`)
      }
    },
    () => unlink(tmp).catch(() => {}),
  )
}

async function openStream(path: string, flags: string): Promise<WriteStream> {
  const out = createWriteStream(path, {flags, mode: 0o600, highWaterMark: 1024 * 1024})
  await new Promise<void>((resolve, reject) => {
    out.once('open', () => resolve())
    out.once('error', (e) => reject(toVdsnapError(e, `opening ${path}`)))
  })
  return out
}

/** Passes bytes on in whole records of `recordSize`; finish() pads the last record with zeros. */
export class RecordSink implements ByteSink {
  private pending: Buffer[] = []
  private pendingBytes = 0
  position = 0

  constructor(
    private readonly inner: ByteSink,
    readonly recordSize: number,
  ) {
    if (!Number.isInteger(recordSize) || recordSize < 512 || recordSize > 64 * 1024 * 1024 || recordSize % 512 !== 0) {
      throw new UsageError(`record size ${recordSize} must be a multiple of 512 bytes between 512 and 64MiB`)
    }
  }

  async write(buf: Buffer): Promise<void> {
    this.position += buf.length
    this.pending.push(buf)
    this.pendingBytes += buf.length
    if (this.pendingBytes < this.recordSize) return
    const all = Buffer.concat(this.pending)
    const whole = all.length - (all.length % this.recordSize)
    for (let o = 0; o < whole; o += this.recordSize) await this.inner.write(all.subarray(o, o + this.recordSize))
    this.pending = whole < all.length ? [all.subarray(whole)] : []
    this.pendingBytes = all.length - whole
  }

  async finish(): Promise<void> {
    if (this.pendingBytes > 0) {
      const last = Buffer.alloc(this.recordSize)
      Buffer.concat(this.pending).copy(last)
      await this.inner.write(last)
    }
    await this.inner.finish()
  }

  abort(): Promise<void> {
    return this.inner.abort()
  }
}
