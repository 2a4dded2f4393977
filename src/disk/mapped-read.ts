// The read loop shared by the native readers (qcow2, VMDK, VHD, VHDX). A
// format maps one guest offset to a "unit" (cluster, subcluster, grain,
// run of sectors in a block): zeros, unallocated (the parent's bytes, or
// zeros), data at a host offset in some source file, or a compressed
// block. readMapped
//   1. checks the request against the virtual size,
//   2. walks the requested range unit by unit,
//   3. joins neighbouring units into runs: same kind, same source file and,
//      for data, contiguous host offsets (up to MAX_RUN_BYTES), so one file
//      read serves many units; compressed units are never joined,
//   4. serves each run into the caller's buffer at run.at: zeros and
//      parent reads here, data and compressed runs through the format's
//      readRun. Runs fill disjoint parts of the buffer, so up to
//      MAX_IN_FLIGHT of them are served at once (file and parent reads
//      overlap).
// Each call has its own unit object, so concurrent reads of one image are safe.
import {ImageFormatError} from '../errors.js'
import type {DiskImage, Range} from './types.js'

export const UNIT_ZERO = 0
export const UNIT_UNALLOCATED = 1
export const UNIT_DATA = 2
export const UNIT_COMPRESSED = 3
const MAX_IN_FLIGHT = 8
/** Largest single joined data run (one file read). */
const MAX_RUN_BYTES = 64 * 1024 * 1024

export interface MappedUnit {
  kind: number
  /** Data: host offset of the looked-up byte. Compressed: where the compressed block starts. */
  host: number
  /** Bytes from the looked-up offset to the end of the unit. */
  len: number
  /** Compressed: bytes of compressed data at `host`. */
  clen: number
  /** Which file holds the data (formats with several extents). */
  source: number
}

export interface MappedRun extends MappedUnit {
  /** Position in the caller's buffer. */
  at: number
  /** Guest offset of the run's first byte. */
  guest: number
}

/** What a format gives the read loop: its mapping and how to read its own data. */
export interface UnitMap {
  readonly path: string
  readonly virtualSize: number
  readonly parent?: DiskImage
  /**
   * Sets `u` to the unit holding guest offset `guest`. `wanted` is how many
   * bytes the caller still wants from there; u.len may be more or less.
   */
  lookupUnit(guest: number, u: MappedUnit, wanted: number): Promise<void>
  /** Fills buf[run.at, run.at + run.len) for a data or compressed run. */
  readRun(buf: Buffer, run: MappedRun): Promise<void>
}

export function newUnit(): MappedUnit {
  return {kind: UNIT_ZERO, host: 0, len: 0, clen: 0, source: 0}
}

/** Sets `u` to `len` bytes of `kind`, at host offset `host` for data. */
export function setUnit(u: MappedUnit, kind: number, len: number, host = 0): void {
  u.kind = kind
  u.len = len
  u.host = host
}

/** DiskImage.read for a format that maps units: fills buf[0, length) with guest bytes at `offset`. */
export async function readMapped(map: UnitMap, buf: Buffer, offset: number, length: number): Promise<number> {
  if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || length > buf.length || offset + length > map.virtualSize) {
    throw new ImageFormatError(map.path, `read of ${length} bytes at ${offset} is past the end (${map.virtualSize})`, {code: 'IMAGE_BOUNDS', offset})
  }
  const u = newUnit()
  const inFlight: Promise<void>[] = []
  const start = async (r: MappedRun): Promise<void> => {
    const p = serve(map, buf, r)
    p.catch(() => undefined) // handled below; this only stops an early failure counting as unhandled
    inFlight.push(p)
    if (inFlight.length >= MAX_IN_FLIGHT) await Promise.all(inFlight.splice(0))
  }
  try {
    let at = 0
    let run: MappedRun | undefined
    while (at < length) {
      const guest = offset + at
      await map.lookupUnit(guest, u, length - at)
      const n = Math.min(u.len, length - at)
      if (!(n > 0)) throw new ImageFormatError(map.path, `internal: empty mapping unit at ${guest}`)
      const joins =
        run !== undefined &&
        u.kind === run.kind &&
        u.kind !== UNIT_COMPRESSED &&
        u.source === run.source &&
        (u.kind !== UNIT_DATA || (u.host === run.host + run.len && run.len + n <= MAX_RUN_BYTES))
      if (joins) run!.len += n
      else {
        if (run) await start(run)
        run = {kind: u.kind, host: u.host, len: n, clen: u.clen, source: u.source, at, guest}
      }
      at += n
    }
    if (run) await start(run)
    await Promise.all(inFlight.splice(0))
  } finally {
    // Never return (or throw) while a serve still writes into the caller's buffer.
    await Promise.allSettled(inFlight)
  }
  return length
}

async function serve(map: UnitMap, buf: Buffer, r: MappedRun): Promise<void> {
  if (r.kind === UNIT_DATA || r.kind === UNIT_COMPRESSED) await map.readRun(buf, r)
  else if (r.kind === UNIT_UNALLOCATED && map.parent) {
    // Bytes beyond a smaller parent read as zeros.
    const fromParent = Math.max(0, Math.min(r.len, map.parent.virtualSize - r.guest))
    if (fromParent > 0) await map.parent.read(buf.subarray(r.at, r.at + fromParent), r.guest, fromParent)
    buf.fill(0, r.at + fromParent, r.at + r.len)
  } else buf.fill(0, r.at, r.at + r.len)
}

/** Appends the data ranges of guest [start, start+length) to `out`, unit by unit. */
export async function pushDataRanges(map: UnitMap, out: Range[], start: number, length: number): Promise<void> {
  const u = newUnit()
  for (let pos = 0; pos < length; ) {
    await map.lookupUnit(start + pos, u, length - pos)
    const n = Math.min(u.len, length - pos)
    if (!(n > 0)) throw new ImageFormatError(map.path, `internal: empty mapping unit at ${start + pos}`)
    if (u.kind === UNIT_DATA) pushRange(out, start + pos, n)
    pos += n
  }
}

/** Appends a range to a sorted list, joining it to the last one when adjacent. */
export function pushRange(list: Range[], offset: number, length: number): void {
  if (length <= 0) return
  const last = list[list.length - 1]
  if (last && last.offset + last.length === offset) last.length += length
  else list.push({offset, length})
}
