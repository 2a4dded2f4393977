// Reading packs with ranged reads: the trailer from the tail (one read for
// any trailer up to TAIL_GUESS bytes, two otherwise), and chunk envelopes
// with adjacent chunks of one pack coalesced into one request.
import type {Backend} from '../backend/types.js'
import {ObjectRangeError} from '../backend/range.js'
import {NotFoundError} from '../errors.js'
import {PACK_FOOTER_SIZE, decodePackTail, packCorrupt, tailNeeded, type PackEntry} from './pack-format.js'

/** Tail bytes read first: a trailer of ~1300 entries (64 KiB blocks in a 64 MiB pack) fits. */
export const TAIL_GUESS = 64 * 1024
/** Longest single coalesced read. */
export const MAX_COALESCED_READ = 16 << 20

/** The entries of pack `name`; `size` from a listing or index saves a stat. A short or damaged pack is PACK_CORRUPT. */
export async function readPackEntries(backend: Backend, name: string, key?: Buffer, size?: number): Promise<PackEntry[]> {
  const packSize = size ?? (await backend.stat(name))?.size
  if (packSize === undefined) return missing(backend, name)
  if (packSize < PACK_FOOTER_SIZE) throw packCorrupt(name, `${packSize} bytes, too short for a pack footer`)
  const first = Math.min(packSize, TAIL_GUESS)
  let tail = await loadRange(backend, name, packSize - first, first)
  const need = tailNeeded(name, tail.subarray(tail.length - PACK_FOOTER_SIZE), packSize)
  if (need > tail.length) tail = Buffer.concat([await loadRange(backend, name, packSize - need, need - tail.length), tail])
  return decodePackTail(name, tail, packSize, key)
}

function missing(backend: Backend, name: string): never {
  throw new NotFoundError(`pack ${name} is missing from ${backend.location}`, {object: name, hint: 'run "vdsnap check" to list the snapshots it affects'})
}

async function loadRange(backend: Backend, name: string, offset: number, length: number): Promise<Buffer> {
  try {
    return await backend.load(name, {offset, length})
  } catch (e) {
    // The size came from a listing or the index: a shorter object is a truncated pack.
    if (e instanceof ObjectRangeError) throw packCorrupt(name, `truncated to ${e.size} bytes`, e)
    throw e
  }
}

/** Runs of entries (sorted by offset) that are adjacent in the pack, each at most maxBytes long (a single larger entry stands alone). */
export function coalesce(entries: readonly PackEntry[], maxBytes = MAX_COALESCED_READ): PackEntry[][] {
  const sorted = [...entries].sort((a, b) => a.offset - b.offset)
  const runs: PackEntry[][] = []
  let run: PackEntry[] = []
  for (const e of sorted) {
    const last = run[run.length - 1]
    if (last && last.offset + last.length === e.offset && e.offset + e.length - run[0]!.offset <= maxBytes) run.push(e)
    else {
      if (run.length) runs.push(run)
      run = [e]
    }
  }
  if (run.length) runs.push(run)
  return runs
}

/**
 * The envelopes of `entries` (all in pack `name`), one ranged read per
 * adjacent run. Calls `onEnvelope` for each, in pack order; envelopes are
 * subarrays of the run's buffer. A pack shorter than its entries say is
 * PACK_CORRUPT naming the pack.
 */
export async function readPackChunks(backend: Backend, name: string, entries: readonly PackEntry[], onEnvelope: (entry: PackEntry, envelope: Buffer) => void): Promise<number> {
  const runs = coalesce(entries)
  for (const run of runs) {
    const start = run[0]!.offset
    const end = run[run.length - 1]!.offset + run[run.length - 1]!.length
    const data = await loadRange(backend, name, start, end - start)
    for (const e of run) onEnvelope(e, data.subarray(e.offset - start, e.offset - start + e.length))
  }
  return runs.length
}
