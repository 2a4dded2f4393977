// An ESXi seSparse extent (the default snapshot format on VMFS6): a
// 512-byte "const" header of little-endian u64 fields, a 512-byte volatile
// header, a journal, the grain directory (GD), the grain tables (GTs) and the
// 4 KiB grains. Layout facts as qemu's block/vmdk.c reads them:
//  - const header: magic 0xcafebabe, version 0x200000001, grain size 8
//    sectors, GT size 64 sectors (4096 entries), flags and reserved fields 0;
//    offsets and sizes below are in sectors;
//  - volatile header: magic 0xcafecafe; a set replay-journal flag means the
//    image was not closed cleanly (refused: we do not replay the journal);
//  - a GD entry is 0 (no table) or 0x10000000_NNNNNNNN: table N, at
//    grain_tables_offset + N * 64 sectors;
//  - a GT entry's top nibble: 0 unallocated (the whole entry must be 0),
//    1 unmapped or 2 zero (both read as zeros), 3 allocated: the grain
//    number is the low 48 bits shifted left by 12 plus bits 48..59, at
//    grains_offset + number * 8 sectors; anything else is corrupt.
// Invariants: the GD and every GT it names lie inside the file; a grain lies
// inside the file; GTs come through a bounded LRU; no allocation is sized
// from a header value before it was checked against the file size.
import {ImageFormatError} from '../errors.js'
import {type ImageFile, u64le} from './image-file.js'
import {LruCache} from './lru-cache.js'
import {type MappedUnit, pushRange, UNIT_DATA, UNIT_UNALLOCATED, UNIT_ZERO} from './mapped-read.js'
import {SECTOR} from './vmdk-descriptor.js'

export const SESPARSE_CONST_MAGIC = 0xcafebabe
export const SESPARSE_VOLATILE_MAGIC = 0xcafecafe
/** Version 0x0000000200000001 as its two 32-bit halves (low, high). */
export const SESPARSE_VERSION_LO = 1
export const SESPARSE_VERSION_HI = 2
export const SESPARSE_GRAIN_SECTORS = 8
export const SESPARSE_GT_SECTORS = 64
export const SESPARSE_GT_ENTRIES = (SESPARSE_GT_SECTORS * SECTOR) / 8
const GD_TABLE_TAG = 0x10000000
const GTE_UNMAPPED = 1
const GTE_ZERO = 2
const GTE_ALLOCATED = 3
const TWO_32 = 2 ** 32

/** Const header field offsets (never change). */
export const SE = {
  magic: 0, version: 8, capacity: 16, grainSize: 24, gtSize: 32, flags: 40, reserved: 48,
  volatileOffset: 80, volatileSize: 88, journalHeaderOffset: 96, journalHeaderSize: 104, journalOffset: 112, journalSize: 120,
  gdOffset: 128, gdSize: 136, gtOffset: 144, gtSizeTotal: 152, freeBitmapOffset: 160, freeBitmapSize: 168,
  backmapOffset: 176, backmapSize: 184, grainsOffset: 192, grainsSize: 200, headerEnd: 208,
} as const
/** Volatile header field offsets. */
export const SEV = {magic: 0, freeGt: 8, nextTxn: 16, replayJournal: 24, headerEnd: 32} as const

const GT_CACHE_ENTRIES = 256

/** True when `head` starts with a seSparse const header (for a clear error on the bare extent). */
export function isSeSparseHead(head: Buffer): boolean {
  return head.length >= 16 && head.readUInt32LE(0) === SESPARSE_CONST_MAGIC && head.readUInt32LE(4) === 0
}

export class SeSparseExtent {
  readonly grainBytes = SESPARSE_GRAIN_SECTORS * SECTOR
  private readonly gtCache = new LruCache<number, Buffer>(GT_CACHE_ENTRIES)
  private readonly coverage = SESPARSE_GT_ENTRIES * SESPARSE_GRAIN_SECTORS * SECTOR

  private constructor(
    readonly file: ImageFile,
    readonly capacity: number,
    private readonly gd: Float64Array,
    private readonly grainsOffset: number,
  ) {}

  static async open(file: ImageFile): Promise<SeSparseExtent> {
    const path = file.path
    const fail = (msg: string): never => {
      throw new ImageFormatError(path, msg)
    }
    if (file.size < 2 * SECTOR) fail(`file is too short for a seSparse header (${file.size} bytes)`)
    const h = await file.readStruct(0, SECTOR, 'seSparse const header')
    const field = (at: number, what: string) => u64le(h, at, path, what)
    if (!isSeSparseHead(h)) fail('not a seSparse extent (bad const header magic)')
    if (h.readUInt32LE(SE.version) !== SESPARSE_VERSION_LO || h.readUInt32LE(SE.version + 4) !== SESPARSE_VERSION_HI) {
      fail(`unsupported seSparse version 0x${h.readUInt32LE(SE.version + 4).toString(16)}${h.readUInt32LE(SE.version).toString(16).padStart(8, '0')}`)
    }
    if (field(SE.grainSize, 'grain size') !== SESPARSE_GRAIN_SECTORS) fail(`seSparse grain size ${field(SE.grainSize, 'grain size')} sectors is not ${SESPARSE_GRAIN_SECTORS}`)
    if (field(SE.gtSize, 'grain table size') !== SESPARSE_GT_SECTORS) fail(`seSparse grain table size ${field(SE.gtSize, 'grain table size')} sectors is not ${SESPARSE_GT_SECTORS}`)
    if (!h.subarray(SE.flags, SE.volatileOffset).every((b) => b === 0)) fail('seSparse flags or reserved fields are set (unsupported)')
    if (!h.subarray(SE.headerEnd).every((b) => b === 0)) fail('seSparse const header padding is not zero (unsupported)')
    const capacitySectors = field(SE.capacity, 'capacity')
    if (!Number.isSafeInteger(capacitySectors * SECTOR)) fail(`capacity ${capacitySectors} sectors is absurd`)
    const volSector = field(SE.volatileOffset, 'volatile header offset')
    file.checkSpan(volSector * SECTOR, SECTOR, 'seSparse volatile header')
    const vol = await file.readStruct(volSector * SECTOR, SECTOR, 'seSparse volatile header')
    if (vol.readUInt32LE(SEV.magic) !== SESPARSE_VOLATILE_MAGIC || vol.readUInt32LE(SEV.magic + 4) !== 0) fail('bad seSparse volatile header magic')
    if (vol.readUInt32LE(SEV.replayJournal) !== 0 || vol.readUInt32LE(SEV.replayJournal + 4) !== 0) {
      fail('seSparse image is dirty (its journal needs replaying): consolidate or power on the VM in ESXi once, then copy it again')
    }
    if (!vol.subarray(SEV.headerEnd).every((b) => b === 0)) fail('seSparse volatile header padding is not zero (unsupported)')
    const gdSector = field(SE.gdOffset, 'grain directory offset')
    const gdEntries = (field(SE.gdSize, 'grain directory size') * SECTOR) / 8
    const coverageSectors = SESPARSE_GT_ENTRIES * SESPARSE_GRAIN_SECTORS
    const needed = Math.ceil(capacitySectors / coverageSectors)
    if (gdEntries < needed) fail(`seSparse grain directory has ${gdEntries} entries, the capacity needs ${needed}`)
    file.checkSpan(gdSector * SECTOR, needed * 8, 'seSparse grain directory')
    const raw = await file.readStruct(gdSector * SECTOR, needed * 8, 'seSparse grain directory')
    const gtBase = field(SE.gtOffset, 'grain tables offset')
    const gd = new Float64Array(needed)
    for (let i = 0; i < needed; i++) {
      const lo = raw.readUInt32LE(i * 8)
      const hi = raw.readUInt32LE(i * 8 + 4)
      if (lo === 0 && hi === 0) continue
      if (hi !== GD_TABLE_TAG) fail(`seSparse grain directory entry ${i} is corrupt (0x${hi.toString(16)}${lo.toString(16).padStart(8, '0')})`)
      const at = (gtBase + lo * SESPARSE_GT_SECTORS) * SECTOR
      file.checkSpan(at, SESPARSE_GT_SECTORS * SECTOR, `seSparse grain table ${i}`)
      gd[i] = at
    }
    const grainsOffset = field(SE.grainsOffset, 'grains offset') * SECTOR
    if (!Number.isSafeInteger(grainsOffset)) fail('seSparse grains offset is absurd')
    return new SeSparseExtent(file, capacitySectors * SECTOR, gd, grainsOffset)
  }

  private async table(i: number): Promise<Buffer> {
    return this.gtCache.getOrLoad(i, () => this.file.readStruct(this.gd[i]!, SESPARSE_GT_SECTORS * SECTOR, `seSparse grain table ${i}`))
  }

  /** Maps an offset inside this extent into `u` (source is the caller's business). */
  async lookup(offset: number, u: MappedUnit): Promise<void> {
    const gi = Math.floor(offset / this.coverage)
    if (!this.gd[gi]) {
      u.kind = UNIT_UNALLOCATED
      u.len = (gi + 1) * this.coverage - offset
      return
    }
    const grain = Math.floor(offset / this.grainBytes)
    const gt = await this.table(gi)
    this.decode(gt, grain % SESPARSE_GT_ENTRIES, grain, u)
    const inGrain = offset - grain * this.grainBytes
    u.len = this.grainBytes - inGrain
    if (u.kind === UNIT_DATA) u.host += inGrain
  }

  private decode(gt: Buffer, j: number, grain: number, u: MappedUnit): void {
    const lo = gt.readUInt32LE(j * 8)
    const hi = gt.readUInt32LE(j * 8 + 4)
    const type = hi >>> 28
    if (type === 0) {
      if (lo !== 0 || hi !== 0) throw new ImageFormatError(this.file.path, `seSparse grain ${grain}: unallocated entry with stray bits`)
      u.kind = UNIT_UNALLOCATED
    } else if (type === GTE_UNMAPPED || type === GTE_ZERO) u.kind = UNIT_ZERO
    else if (type === GTE_ALLOCATED) {
      const number = ((hi & 0xffff) * TWO_32 + lo) * 4096 + ((hi >>> 16) & 0xfff)
      const host = this.grainsOffset + number * this.grainBytes
      if (!Number.isSafeInteger(host) || host + this.grainBytes > this.file.size) {
        throw new ImageFormatError(this.file.path, `seSparse grain ${grain} points past the end of the file (grain number ${number})`)
      }
      u.kind = UNIT_DATA
      u.host = host
    } else throw new ImageFormatError(this.file.path, `seSparse grain ${grain} has an unknown entry type ${type}`)
  }

  /** Ranges (inside this extent) holding grains, and those marked as zero or unmapped. */
  async scan(): Promise<{data: {offset: number; length: number}[]; zero: {offset: number; length: number}[]}> {
    const data: {offset: number; length: number}[] = []
    const zero: {offset: number; length: number}[] = []
    const u = {kind: 0, host: 0, len: 0, clen: 0, source: 0}
    for (let gi = 0; gi < this.gd.length; gi++) {
      if (!this.gd[gi]) continue
      const gt = await this.table(gi)
      for (let j = 0; j < SESPARSE_GT_ENTRIES; j++) {
        const grain = gi * SESPARSE_GT_ENTRIES + j
        const start = grain * this.grainBytes
        if (start >= this.capacity) break
        this.decode(gt, j, grain, u)
        const len = Math.min(this.grainBytes, this.capacity - start)
        if (u.kind === UNIT_DATA) pushRange(data, start, len)
        else if (u.kind === UNIT_ZERO) pushRange(zero, start, len)
      }
    }
    return {data, zero}
  }

  clearCaches(): void {
    this.gtCache.clear()
  }
}
