// A copy-on-write overlay over a snapshot: the writes a client made to a
// served snapshot, kept in one sparse local file and never in the
// repository. Layout (docs/FORMAT.md, "Overlay file"): a header naming the
// snapshot that is the logical base, a map of 2 bits per 4 KiB sector
// (base / data / zero), and a data area where sector s lives at
// dataOffset + s * 4096.
//
// Crash safety by write order:
// 1. write() puts the data in the data area and only then marks the sectors
//    in the in-memory map; the on-disk map still says "base" for them.
// 2. flush() makes the data durable (fdatasync), then writes the changed map
//    pages, then fdatasyncs again. A crash at any point leaves every sector
//    either as it was at the last flush or as the client wrote it, never a
//    map entry pointing at data that did not reach the disk.
// 3. A new overlay is written under a temporary name and renamed into place.
// Mutations run one at a time (a partial-sector write reads, merges and
// writes back its sector); reads run alongside.
import {constants} from 'node:fs'
import {open, stat, type FileHandle} from 'node:fs/promises'
import {DataError, NotFoundError, UsageError, toVdsnapError} from '../errors.js'
import {writeFileAtomic} from '../fs/atomic-write.js'
import {assertOverlayFree, lockOverlay} from './overlay-lock.js'
import {decodeHeader, encodeHeader, HEADER_SIZE, newHeader, SECTOR, type OverlayHeader} from './overlay-header.js'

export const BASE = 0
export const DATA = 1
export const ZERO = 2

/** Reads the base (snapshot) bytes of a range; the overlay calls it to merge partial sectors. */
export type BaseReader = (offset: number, length: number) => Promise<Buffer>

export interface OverlayOpenOptions {
  snapshotId: string
  virtualSize: number
  /** Create the file when it does not exist (serve); restore only reads one. */
  create: boolean
  readOnly: boolean
}

export class OverlayFile {
  private readonly dirty = new Set<number>()
  private tail: Promise<unknown> = Promise.resolve()
  private closed = false
  private unlock: () => Promise<void> = async () => {}

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    readonly header: OverlayHeader,
    private readonly map: Buffer,
    readonly readOnly: boolean,
  ) {}

  /** Opens (or creates) the overlay; a writer locks it (FILE.lock) until close(), a reader refuses a locked one. */
  static async open(path: string, opts: OverlayOpenOptions): Promise<OverlayFile> {
    if (opts.readOnly) {
      await assertOverlayFree(path)
      return OverlayFile.openUnlocked(path, opts)
    }
    const unlock = await lockOverlay(path)
    try {
      const overlay = await OverlayFile.openUnlocked(path, opts)
      overlay.unlock = unlock
      return overlay
    } catch (e) {
      await unlock()
      throw e
    }
  }

  private static async openUnlocked(path: string, opts: OverlayOpenOptions): Promise<OverlayFile> {
    const exists = await stat(path).then(
      () => true,
      (e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? false : Promise.reject(toVdsnapError(e, `overlay ${path}`))),
    )
    if (!exists) {
      if (!opts.create) throw new NotFoundError(`overlay ${path} does not exist`, {hint: 'give the file "vdsnap serve --overlay" wrote'})
      await createOverlay(path, newHeader(opts.snapshotId, opts.virtualSize))
    }
    const fh = await open(path, opts.readOnly ? constants.O_RDONLY : constants.O_RDWR).catch((e) => Promise.reject(toVdsnapError(e, `overlay ${path}`)))
    try {
      const head = Buffer.alloc(HEADER_SIZE)
      const {bytesRead} = await fh.read(head, 0, HEADER_SIZE, 0)
      const header = decodeHeader(head.subarray(0, bytesRead), path)
      if (header.snapshotId !== opts.snapshotId) {
        throw new UsageError(`overlay ${path} belongs to snapshot ${header.snapshotId.slice(0, 8)}, not ${opts.snapshotId.slice(0, 8)}`, {
          hint: `serve or restore ${header.snapshotId.slice(0, 8)} with it, or give a new overlay file`,
        })
      }
      if (header.virtualSize !== opts.virtualSize) throw new DataError(`overlay ${path} is for a disk of ${header.virtualSize} bytes, the snapshot has ${opts.virtualSize}`)
      const map = Buffer.alloc(header.mapLength)
      const got = await fh.read(map, 0, map.length, header.mapOffset)
      if (got.bytesRead !== map.length) throw new DataError(`overlay ${path} is truncated (its map ends early)`)
      const overlay = new OverlayFile(path, fh, header, map, opts.readOnly)
      overlay.validateMap()
      return overlay
    } catch (e) {
      await fh.close()
      throw e
    }
  }

  get virtualSize(): number {
    return this.header.virtualSize
  }

  /** The state of sector `s`: BASE, DATA or ZERO. */
  state(s: number): number {
    return (this.map[s >> 2]! >> ((s & 3) * 2)) & 3
  }

  /** How many sectors hold the client's data or zeros. */
  changedSectors(): number {
    let n = 0
    for (const byte of this.map) if (byte !== 0) for (let k = 0; k < 8; k += 2) if ((byte >> k) & 3) n++
    return n
  }

  /** Whether any sector of [offset, offset + length) is in the overlay. */
  touches(offset: number, length: number): boolean {
    for (let s = Math.floor(offset / SECTOR); s * SECTOR < offset + length; s++) if (this.state(s) !== BASE) return true
    return false
  }

  /** Whether every sector of [offset, offset + length) is in the overlay (the base need not be read). */
  covers(offset: number, length: number): boolean {
    for (let s = Math.floor(offset / SECTOR); s * SECTOR < offset + length; s++) if (this.state(s) === BASE) return false
    return true
  }

  /** Replaces the parts of `buf` (the disk's bytes from `offset`) that the overlay holds. */
  async patch(buf: Buffer, offset: number): Promise<void> {
    const end = offset + buf.length
    let s = Math.floor(offset / SECTOR)
    while (s * SECTOR < end) {
      const st = this.state(s)
      let e = s + 1
      while (e * SECTOR < end && this.state(e) === st) e++
      const from = Math.max(offset, s * SECTOR)
      const to = Math.min(end, e * SECTOR)
      if (st === ZERO) buf.fill(0, from - offset, to - offset)
      else if (st === DATA) await this.readFully(buf.subarray(from - offset, to - offset), this.header.dataOffset + from)
      s = e
    }
  }

  /** Writes `data` at `offset`; partial sectors are merged with what the disk holds now. */
  write(offset: number, data: Buffer, base: BaseReader): Promise<void> {
    return this.exclusive(() => this.writeUnlocked(offset, data, base))
  }

  /** Zeros [offset, offset + length): whole sectors become ZERO (no data written), partial ones are merged. */
  zero(offset: number, length: number, base: BaseReader): Promise<void> {
    return this.exclusive(async () => {
      const end = offset + length
      const a = Math.ceil(offset / SECTOR) * SECTOR
      const b = Math.floor(end / SECTOR) * SECTOR
      if (a >= b) return this.writeUnlocked(offset, Buffer.alloc(length), base)
      if (offset < a) await this.writeUnlocked(offset, Buffer.alloc(a - offset), base)
      if (b < end) await this.writeUnlocked(b, Buffer.alloc(end - b), base)
      this.mark(a / SECTOR, b / SECTOR, ZERO)
    })
  }

  /** Makes every write so far durable: data, then the map pages that changed. */
  flush(): Promise<void> {
    return this.exclusive(async () => {
      if (this.dirty.size === 0) return
      await this.fh.datasync()
      for (const page of [...this.dirty].sort((x, y) => x - y)) {
        const at = page * SECTOR
        await this.fh.write(this.map, at, Math.min(SECTOR, this.map.length - at), this.header.mapOffset + at)
      }
      await this.fh.datasync()
      this.dirty.clear()
    })
  }

  /** Flushes (when writable) and closes; safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    try {
      if (!this.readOnly) await this.flush()
    } finally {
      await this.fh.close()
      await this.unlock()
    }
  }

  private async writeUnlocked(offset: number, data: Buffer, base: BaseReader): Promise<void> {
    const end = offset + data.length
    const start = Math.floor(offset / SECTOR) * SECTOR
    const stop = Math.ceil(end / SECTOR) * SECTOR
    let buf = data
    if (start !== offset || stop !== end) {
      buf = Buffer.alloc(stop - start)
      if (start !== offset) (await this.current(start, base)).copy(buf, 0)
      if (stop !== end && (stop - SECTOR > start || start === offset)) (await this.current(stop - SECTOR, base)).copy(buf, stop - SECTOR - start)
      data.copy(buf, offset - start)
    }
    await this.writeFully(buf, this.header.dataOffset + start)
    this.mark(start / SECTOR, stop / SECTOR, DATA)
  }

  /** One sector as the disk reads now: base, then the overlay on top. */
  private async current(at: number, base: BaseReader): Promise<Buffer> {
    const len = Math.min(SECTOR, this.virtualSize - at)
    const out = Buffer.alloc(SECTOR)
    if (this.state(at / SECTOR) === BASE) (await base(at, len)).copy(out, 0, 0, len)
    else await this.patch(out.subarray(0, len), at)
    return out
  }

  private mark(from: number, to: number, st: number): void {
    for (let s = from; s < to; s++) {
      const i = s >> 2
      const shift = (s & 3) * 2
      this.map[i] = (this.map[i]! & ~(3 << shift)) | (st << shift)
      this.dirty.add(Math.floor(i / SECTOR))
    }
  }

  private validateMap(): void {
    // Entries past the last sector stay 0; an entry of 3 means nothing.
    const sectors = Math.ceil(this.virtualSize / SECTOR)
    for (let i = 0; i < this.map.length; i++) {
      const byte = this.map[i]!
      if (byte === 0) continue
      for (let k = 0; k < 4; k++) {
        const st = (byte >> (k * 2)) & 3
        if (st === 3 || (st !== 0 && i * 4 + k >= sectors)) throw new DataError(`overlay ${this.path}: map entry for sector ${i * 4 + k} is invalid (the file is damaged)`)
      }
    }
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.readOnly) return Promise.reject(new UsageError(`overlay ${this.path} is open read-only`))
    const run = this.tail.then(fn)
    this.tail = run.catch(() => {})
    return run
  }

  private async readFully(buf: Buffer, position: number): Promise<void> {
    let done = 0
    while (done < buf.length) {
      const {bytesRead} = await this.fh.read(buf, done, buf.length - done, position + done)
      if (bytesRead === 0) throw new DataError(`overlay ${this.path} is truncated at ${position + done}`)
      done += bytesRead
    }
  }

  private async writeFully(buf: Buffer, position: number): Promise<void> {
    let done = 0
    while (done < buf.length) {
      const {bytesWritten} = await this.fh.write(buf, done, buf.length - done, position + done)
      done += bytesWritten
    }
  }
}

/** Writes a new, empty overlay (header, all-base map, sparse data area) and renames it into place. */
async function createOverlay(path: string, h: OverlayHeader): Promise<void> {
  try {
    await writeFileAtomic(path, async (fh) => {
      await fh.write(encodeHeader(h), 0, HEADER_SIZE, 0)
      await fh.truncate(h.dataOffset + Math.ceil(h.virtualSize / SECTOR) * SECTOR)
    })
  } catch (e) {
    throw toVdsnapError(e, `creating overlay ${path}`)
  }
}
