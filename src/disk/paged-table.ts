// A large on-disk table (VHD BAT, VHDX BAT) read page by page on demand,
// with a small LRU of pages (lru-cache.ts), so memory stays bounded for
// multi-TiB images.
// Invariant: the whole table was bounds-checked against the file at
// construction; get() decodes from raw page bytes and never allocates more
// than one page.
import type {ImageFile} from './image-file.js'
import {LruCache} from './lru-cache.js'

/** Entries per page and pages kept: 4096 × 8 bytes × 256 pages = 8 MiB at most. */
const ENTRIES_PER_PAGE = 4096
const MAX_CACHED_PAGES = 256

export class PagedTable {
  private readonly pages = new LruCache<number, Buffer>(MAX_CACHED_PAGES)

  constructor(
    private readonly file: ImageFile,
    private readonly tableOffset: number,
    readonly entryCount: number,
    private readonly entrySize: number,
    /** Decodes the entry at `offset` of `page`. */
    private readonly decode: (page: Buffer, offset: number) => number,
    private readonly what: string,
  ) {
    file.checkSpan(tableOffset, entryCount * entrySize, what)
  }

  async get(index: number): Promise<number> {
    const pageNo = Math.floor(index / ENTRIES_PER_PAGE)
    const page = await this.pages.getOrLoad(pageNo, () => {
      const first = pageNo * ENTRIES_PER_PAGE
      const count = Math.min(ENTRIES_PER_PAGE, this.entryCount - first)
      return this.file.readStruct(this.tableOffset + first * this.entrySize, count * this.entrySize, this.what)
    })
    return this.decode(page, (index % ENTRIES_PER_PAGE) * this.entrySize)
  }
}

/** Sector bitmaps (one per block) the VHD and VHDX readers keep in their LRU. */
export const MAX_CACHED_BITMAPS = 64

/**
 * Length of the run of equal bits starting at bit `start` (at most `max` bits)
 * and the run's value. `msbFirst` is VHD's order; VHDX numbers bits LSB first.
 */
export function bitRun(bitmap: Buffer, start: number, max: number, msbFirst: boolean): {set: boolean; count: number} {
  const bit = (i: number) => {
    const byte = bitmap[i >> 3]!
    return ((msbFirst ? byte >> (7 - (i & 7)) : byte >> (i & 7)) & 1) === 1
  }
  const set = bit(start)
  const full = set ? 0xff : 0
  let i = start + 1
  const end = start + max
  while (i < end) {
    if ((i & 7) === 0 && i + 8 <= end && bitmap[i >> 3] === full) {
      i += 8
      continue
    }
    if (bit(i) !== set) break
    i++
  }
  return {set, count: i - start}
}
