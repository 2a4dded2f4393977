// The read loop shared by the sparse-format readers (qcow2, VMDK). A format
// maps one guest offset to a "unit" (cluster, subcluster, grain): zeros,
// unallocated (the parent's bytes, or zeros), data at a host offset in
// some source file, or a compressed block. This loop
//   1. walks the requested range unit by unit,
//   2. joins neighbouring units into runs: same kind, same source file and,
//      for data, contiguous host offsets, so one file read serves many units;
//      compressed units are never joined,
//   3. hands each run to the format's `serve`, which fills the caller's
//      buffer at run.at. Runs fill disjoint parts of the buffer, so up to
//      MAX_IN_FLIGHT of them are served at once (file and parent reads
//      overlap).
// Each call has its own unit object, so concurrent reads of one image are safe.
export const UNIT_ZERO = 0
export const UNIT_UNALLOCATED = 1
export const UNIT_DATA = 2
export const UNIT_COMPRESSED = 3
const MAX_IN_FLIGHT = 8

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

export function newUnit(): MappedUnit {
  return {kind: UNIT_ZERO, host: 0, len: 0, clen: 0, source: 0}
}

export async function readMapped(
  offset: number,
  length: number,
  lookup: (guest: number, unit: MappedUnit) => Promise<void>,
  serve: (run: MappedRun) => Promise<void>,
): Promise<void> {
  const u = newUnit()
  const inFlight: Promise<void>[] = []
  const start = async (r: MappedRun): Promise<void> => {
    const p = serve(r)
    p.catch(() => undefined) // handled below; this only stops an early failure counting as unhandled
    inFlight.push(p)
    if (inFlight.length >= MAX_IN_FLIGHT) await Promise.all(inFlight.splice(0))
  }
  try {
    let at = 0
    let run: MappedRun | undefined
    while (at < length) {
      const guest = offset + at
      await lookup(guest, u)
      const n = Math.min(u.len, length - at)
      if (n <= 0) throw new Error(`internal: empty mapping unit at ${guest}`)
      const joins =
        run !== undefined &&
        u.kind === run.kind &&
        u.kind !== UNIT_COMPRESSED &&
        u.source === run.source &&
        (u.kind !== UNIT_DATA || u.host === run.host + run.len)
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
}

/** Appends a range to a sorted list, joining it to the last one when adjacent. */
export function pushRange(list: {offset: number; length: number}[], offset: number, length: number): void {
  const last = list[list.length - 1]
  if (last && last.offset + last.length === offset) last.length += length
  else list.push({offset, length})
}
