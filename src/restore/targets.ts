// Where a restore writes: a new raw file (sparse, under a temporary name
// until complete), an existing raw file or block device (for --delta-from,
// or a device), stdout, or an image file of another format. Writes arrive
// in ascending offset order; contiguous writes are coalesced into large
// writev calls written in the background (positional-writer.ts). Nothing is
// written before every check on the target passed: a directory, an
// existing file or device without --force, a device in use (device-guard),
// a terminal on stdout are refused untouched.
import {randomBytes} from 'node:crypto'
import {open, rename, stat, unlink, type FileHandle} from 'node:fs/promises'
import {basename, dirname, join} from 'node:path'
import {FORMATS} from '../disk/formats.js'
import type {ImageWriter} from '../disk/types.js'
import {DataError, IoError, UsageError} from '../errors.js'
import {trackTempFile} from '../flow/interrupt.js'
import {formatBytes} from '../repo/config.js'
import {openDeviceExclusive} from './device-guard.js'
import {PositionalWriter} from './positional-writer.js'
import {targetError} from './target-errors.js'

export interface TargetOptions {
  to: string
  format?: string
  /** Image subformat, e.g. streamOptimized (vmdk), fixed (vhd, vhdx, vdi). */
  subformat?: string
  /** Replace an existing file. */
  force?: boolean
  /** The device or file already reads as zeros: skip writing zero blocks. */
  targetZeroed?: boolean
}

export interface RestoreTarget {
  readonly describe: string
  readonly format: string
  /** Queues `data` at `offset`; calls `written`, if given, once the target holds no reference to `data` (never, for some targets). */
  write(offset: number, data: Buffer, written?: () => void): Promise<void>
  writeZeros(offset: number, length: number): Promise<void>
  finish(): Promise<void>
  abort(): Promise<void>
}

const ZEROS = Buffer.alloc(4 * 1024 * 1024)
/**
 * New files and devices start writing back every this many bytes, so that
 * the disk works while the restore does and the final fsync has little left.
 */
const SYNC_EVERY_BYTES = 256 * 1024 * 1024

/** `disk` names the snapshot's disk, for the file name suggested when --to is a directory. */
export async function openTarget(opts: TargetOptions & {virtualSize: number; delta: boolean; disk: string}): Promise<RestoreTarget> {
  const format = (opts.format ?? 'raw').toLowerCase()
  if (opts.to === '-') {
    if (format !== 'raw') throw new UsageError(`--to - writes raw data only, not ${format}`)
    if (opts.subformat) throw new UsageError('--subformat applies to --format qcow2, vmdk, vhd, vhdx or vdi')
    if (opts.delta) throw new UsageError('--delta-from needs a file or device that holds the older snapshot, not stdout')
    if (process.stdout.isTTY) {
      throw new UsageError('refusing to write a raw disk to a terminal (--to - with stdout on a TTY)', {hint: 'pipe it into a command or redirect it to a file, or use --to FILE'})
    }
    return stdoutTarget()
  }
  const st = await stat(opts.to).catch(() => null)
  if (st?.isDirectory()) {
    const ext = format === 'raw' ? 'img' : format
    throw new UsageError(`--to ${opts.to} is a directory`, {hint: `give a file name inside it, e.g. --to ${join(opts.to, `${opts.disk}.${ext}`)}`})
  }
  if (st && !st.isFile() && !st.isBlockDevice()) {
    // A character device, FIFO or socket: --force would rename a new file over it (/dev/null, say).
    throw new UsageError(`--to ${opts.to} is neither a regular file nor a block device`, {hint: 'to stream the disk, use --to - and redirect or pipe stdout'})
  }
  if (format !== 'raw') {
    if (opts.delta) throw new UsageError('--delta-from works on raw files and block devices only')
    return imageTarget(opts.to, format, opts.subformat, opts.virtualSize, opts.force ?? false, st !== null)
  }
  if (st?.isBlockDevice()) {
    const fh = await openDeviceExclusive(opts.to, st)
    if (!opts.delta && !opts.force) {
      await fh.close()
      throw new UsageError(`${opts.to} is a block device: restoring overwrites all of it`, {hint: 'add --force to overwrite it'})
    }
    return deviceTarget(opts.to, fh, opts.virtualSize, opts.targetZeroed ?? false)
  }
  if (opts.delta) {
    if (!st) throw new UsageError(`--delta-from needs ${opts.to} to exist and hold that snapshot`)
    if (st.size !== opts.virtualSize) {
      // A target of another size cannot hold SNAP: that is the data-error case of --delta-from (exit 6), like a block that differs.
      throw new DataError(`${opts.to} does not hold that snapshot: it is ${formatBytes(st.size)} (${st.size} bytes), the snapshot's disk ${formatBytes(opts.virtualSize)} (${opts.virtualSize} bytes); nothing was written; restore in full without --delta-from`)
    }
    const fh = await open(opts.to, 'r+').catch((e) => Promise.reject(targetError(e, opts.to, 'opening')))
    return deviceTarget(opts.to, fh, opts.virtualSize, false)
  }
  if (st && !opts.force) throw new UsageError(`${opts.to} already exists`, {hint: 'choose another path, or add --force to replace it'})
  return newFileTarget(opts.to, opts.virtualSize)
}

function tempName(path: string): string {
  return join(dirname(path), `.${basename(path)}.vdsnap-${randomBytes(4).toString('hex')}`)
}

async function newFileTarget(path: string, size: number): Promise<RestoreTarget> {
  const tmp = tempName(path)
  const untrack = trackTempFile(tmp)
  let fh: FileHandle
  try {
    fh = await open(tmp, 'wx', 0o600)
  } catch (e) {
    throw targetError(e, path, 'creating', tmp)
  }
  const w = new PositionalWriter(fh, SYNC_EVERY_BYTES)
  let renaming = false
  return {
    describe: path,
    format: 'raw',
    write: (o, d, written) => w.write(o, d, written).catch((e) => Promise.reject(targetError(e, path, 'writing', tmp))),
    writeZeros: async () => {},
    async finish() {
      try {
        await w.flush()
        // The size is set last: trailing zero blocks stay a hole. (Setting it
        // first made no difference to the holes, and the file system then
        // treats every write as filling a hole inside the file.)
        await fh.truncate(size)
        await fh.sync()
        await fh.close()
        renaming = true
        await rename(tmp, path)
        untrack()
      } catch (e) {
        throw targetError(e, path, renaming ? 'replacing' : 'writing', tmp)
      }
    },
    async abort() {
      await w.flush().catch(() => {})
      await fh.close().catch(() => {})
      await unlink(tmp).catch(() => {})
      untrack()
    },
  }
}

async function deviceTarget(path: string, fh: FileHandle, size: number, zeroed: boolean): Promise<RestoreTarget> {
  const w = new PositionalWriter(fh, SYNC_EVERY_BYTES)
  const probe = Buffer.alloc(1)
  if (size > 0 && (await fh.read(probe, 0, 1, size - 1)).bytesRead !== 1) {
    await fh.close()
    throw new IoError(`${path} is smaller than the snapshot's disk (${size} bytes)`, {hint: 'restore to a larger device'})
  }
  const wrap = (e: unknown) => Promise.reject(targetError(e, path, 'writing'))
  return {
    describe: path,
    format: 'raw',
    write: (o, d, written) => w.write(o, d, written).catch(wrap),
    writeZeros: (o, n) => (zeroed ? Promise.resolve() : w.zeros(o, n).catch(wrap)),
    async finish() {
      await w.flush().catch(wrap)
      await fh.sync().catch(wrap)
      await fh.close()
    },
    async abort() {
      await w.flush().catch(() => {})
      await fh.close().catch(() => {})
    },
  }
}

function stdoutTarget(): RestoreTarget {
  const out = process.stdout
  const failure = (err: NodeJS.ErrnoException) =>
    err.code === 'EPIPE'
      ? new IoError('stdout was closed before the whole disk was written (the reading command exited early)', {
          cause: err,
          hint: 'what it received is not the whole disk: let the reader take all of it (e.g. dd of=..., not head)',
        })
      : new IoError(`writing to stdout: ${err.message}`, {cause: err})
  let broken: IoError | undefined
  // A closed pipe is reported on the stream too; without a listener Node would crash with a stack.
  out.on('error', (err: NodeJS.ErrnoException) => {
    broken ??= failure(err)
  })
  const put = (b: Buffer) =>
    new Promise<void>((resolve, reject) => {
      if (broken) return reject(broken)
      out.write(b, (err) => {
        if (err) return reject((broken ??= failure(err)))
        resolve()
      })
    })
  return {
    describe: 'stdout',
    format: 'raw',
    write: (_o, d, written) => put(d).then(written),
    async writeZeros(_o, n) {
      for (let done = 0; done < n; done += ZEROS.length) await put(ZEROS.subarray(0, Math.min(ZEROS.length, n - done)))
    },
    finish: async () => {},
    abort: async () => {},
  }
}

async function imageTarget(path: string, format: string, subformat: string | undefined, size: number, force: boolean, exists: boolean): Promise<RestoreTarget> {
  const entry = FORMATS.find((f) => f.name === format)
  if (!entry?.create) {
    const known = ['raw', ...FORMATS.filter((f) => f.create).map((f) => f.name)]
    throw new UsageError(`cannot write format "${format}"`, {hint: `use one of: ${known.join(', ')}`})
  }
  if (exists && !force) throw new UsageError(`${path} already exists`, {hint: 'choose another path, or add --force to replace it'})
  const tmp = tempName(path)
  const untrack = trackTempFile(tmp)
  const writer: ImageWriter = await entry.create(tmp, size, {subformat}).catch((e) => {
    untrack()
    return Promise.reject(targetError(e, path, 'creating', tmp))
  })
  return {
    describe: path,
    format,
    write: (o, d) => writer.write(o, d).catch((e) => Promise.reject(targetError(e, path, 'writing', tmp))),
    writeZeros: async () => {},
    async finish() {
      await writer.close().catch((e) => Promise.reject(targetError(e, path, 'writing', tmp)))
      await rename(tmp, path).catch((e) => Promise.reject(targetError(e, path, 'replacing', tmp)))
      untrack()
    },
    abort: () => writer.abort().finally(untrack),
  }
}
