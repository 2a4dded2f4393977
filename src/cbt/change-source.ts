// Change sources: outside knowledge of which byte ranges changed since the
// parent snapshot. Accepted files:
//   - a JSON array of {"offset": N, "length": N} ranges;
//   - `qemu-img map --output=json` output: entries present in the top layer
//     (depth 0 and present, data or zero) are changes; deeper layers are not.
// Ranges are mapped onto blocks by the backup.
import {readFile} from 'node:fs/promises'
import {DataError, UsageError, toVdsnapError} from '../errors.js'
import {normalizeRanges, type Range} from '../disk/types.js'
import {ChangedBlockMap} from './changed-block-map.js'

interface QemuMapEntry {
  start: number
  length: number
  depth: number
  present?: boolean
  zero?: boolean
  data?: boolean
}

function isNum(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

export function parseChangedRanges(text: string, what: string): Range[] {
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch {
    throw new UsageError(`${what} is not JSON`, {hint: 'give a JSON array of {"offset","length"} or `qemu-img map --output=json` output'})
  }
  if (!Array.isArray(doc)) throw new UsageError(`${what} must hold a JSON array of ranges`)
  const out: Range[] = []
  for (const [i, e] of doc.entries()) {
    const r = e as Record<string, unknown>
    // qemu-img map entries also carry "offset" (the host offset): test for them first.
    if (isNum(r.start) && isNum(r.length) && isNum(r.depth)) {
      const q = r as unknown as QemuMapEntry
      if (q.depth === 0 && q.present !== false && (q.data || q.zero)) out.push({offset: q.start, length: q.length})
    } else if (isNum(r.offset) && isNum(r.length)) out.push({offset: r.offset, length: r.length})
    else {
      throw new DataError(`${what}: entry ${i} is neither {"offset","length"} nor a qemu-img map entry`)
    }
  }
  return normalizeRanges(out)
}

export async function readChangedRanges(path: string): Promise<Range[]> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (e) {
    throw toVdsnapError(e, `reading changed-blocks file ${path}`)
  }
  return parseChangedRanges(text, path)
}

/** Marks every block that a byte range touches. Ranges past the end are clipped. */
export function rangesToBlocks(ranges: Range[], blockSize: number, virtualSize: number): ChangedBlockMap {
  const blockCount = Math.ceil(virtualSize / blockSize)
  const map = new ChangedBlockMap(blockCount)
  for (const r of ranges) {
    if (r.length <= 0 || r.offset >= virtualSize) continue
    const first = Math.floor(r.offset / blockSize)
    const last = Math.min(blockCount - 1, Math.floor((Math.min(r.offset + r.length, virtualSize) - 1) / blockSize))
    for (let b = first; b <= last; b++) map.set(b)
  }
  return map
}
