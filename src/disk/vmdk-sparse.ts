// A hosted sparse VMDK extent (magic "KDMV"): the 512-byte little-endian
// header, the grain directory (GD) of grain-table (GT) sector numbers, and
// grains, plain or (streamOptimized) deflate-compressed behind a 12-byte
// grain marker. When the header's GD offset is GD_AT_END the real header
// is the footer at EOF-1024. Invariants: the GD and every GT lie inside the
// file (checked when the GD is loaded); a grain's start lies inside the
// file; metadata never loops back on itself: no GT overlaps the header,
// the embedded descriptor or the GD, and no grain overlaps those or a GT
// (such an image is corrupt: its grains would read its own tables); GTs and decompressed grains come through bounded LRU caches; no
// allocation is sized from a header value before that value was checked
// against the file size. Field offsets below never change.
import {inflateSync} from 'node:zlib'
import {ImageFormatError} from '../errors.js'
import {type ImageFile, u64le} from './image-file.js'
import {LruCache} from './lru-cache.js'
import {type MappedUnit, pushRange, UNIT_COMPRESSED, UNIT_DATA, UNIT_UNALLOCATED, UNIT_ZERO} from './mapped-read.js'
import {MAX_DESCRIPTOR_BYTES, SECTOR} from './vmdk-descriptor.js'

export const SPARSE_MAGIC = 0x564d444b // "KDMV" read little-endian
export const COWD_MAGIC = 0x44574f43 // "COWD": ESX sparse, not supported
export const HEADER_BYTES = 512
export const FLAG_VALID_NEWLINE = 1 << 0
export const FLAG_REDUNDANT_GT = 1 << 1
export const FLAG_ZERO_GRAIN = 1 << 2
export const FLAG_COMPRESSED = 1 << 16
export const FLAG_MARKERS = 1 << 17
export const COMPRESS_DEFLATE = 1
export const GTE_ZERO_GRAIN = 1
export const MARKER_BYTES = 12
export const FOOTER_FROM_END = 1024
export const MAX_GRAIN_SECTORS = 65536
/** The VMDK specification fixes a grain table at 512 entries; qemu refuses more, and any other count reads the wrong grains. */
export const GTES_PER_GT = 512
/** What FLAG_VALID_NEWLINE promises at H_NEWLINE_CHARS: a text-mode transfer would have mangled them. */
export const NEWLINE_CHARS = '\n \r\n'

export const H_VERSION = 4
export const H_FLAGS = 8
export const H_CAPACITY = 12
export const H_GRAIN_SIZE = 20
export const H_DESCRIPTOR_OFFSET = 28
export const H_DESCRIPTOR_SIZE = 36
export const H_GTES_PER_GT = 44
export const H_RGD_OFFSET = 48
export const H_GD_OFFSET = 56
export const H_OVERHEAD = 64
export const H_NEWLINE_CHARS = 73
export const H_COMPRESS_ALGORITHM = 77

const GT_CACHE_BYTES = 8 * 1024 * 1024
const GRAIN_CACHE_ENTRIES = 8

export class SparseExtent {
  private readonly gtCache: LruCache<number, Buffer>
  private readonly grainCache = new LruCache<number, Buffer>(GRAIN_CACHE_ENTRIES)
  readonly grainBytes: number
  private readonly gtBytes: number

  private constructor(
    readonly file: ImageFile,
    readonly capacity: number,
    grainSectors: number,
    private readonly gtes: number,
    private readonly gd: Uint32Array,
    readonly flags: number,
    private readonly metadata: MetadataSpans,
    readonly descriptor?: Buffer,
  ) {
    this.grainBytes = grainSectors * SECTOR
    this.gtBytes = gtes * 4
    this.gtCache = new LruCache(Math.max(16, Math.floor(GT_CACHE_BYTES / this.gtBytes)))
  }

  get compressed(): boolean {
    return (this.flags & FLAG_COMPRESSED) !== 0
  }

  static async open(file: ImageFile): Promise<SparseExtent> {
    const fail = (msg: string): never => {
      throw new ImageFormatError(file.path, msg)
    }
    if (file.size < HEADER_BYTES) fail(`file is too short for a VMDK sparse header (${file.size} bytes)`)
    let h = await file.readStruct(0, HEADER_BYTES, 'VMDK sparse header')
    if (h.readUInt32LE(0) === COWD_MAGIC) fail('ESX COWD sparse extents are not supported')
    if (h.readUInt32LE(0) !== SPARSE_MAGIC) fail('not a VMDK sparse extent (bad magic)')
    let gdAtEnd = h.readUInt32LE(H_GD_OFFSET) === 0xffffffff && h.readUInt32LE(H_GD_OFFSET + 4) === 0xffffffff
    if (gdAtEnd) {
      if (file.size < HEADER_BYTES + FOOTER_FROM_END) fail('GD is at the end but the file has no room for a footer')
      h = await file.readStruct(file.size - FOOTER_FROM_END, HEADER_BYTES, 'VMDK footer')
      if (h.readUInt32LE(0) !== SPARSE_MAGIC) fail('GD is at the end but the footer is missing or corrupt')
      gdAtEnd = h.readUInt32LE(H_GD_OFFSET) === 0xffffffff && h.readUInt32LE(H_GD_OFFSET + 4) === 0xffffffff
      if (gdAtEnd) fail('footer does not say where the grain directory is')
    }
    const version = h.readUInt32LE(H_VERSION)
    if (version < 1 || version > 3) fail(`unsupported sparse extent version ${version}`)
    const flags = h.readUInt32LE(H_FLAGS)
    const capacity = u64le(h, H_CAPACITY, file.path, 'capacity')
    if (!Number.isSafeInteger(capacity * SECTOR)) fail(`capacity ${capacity} sectors is absurd`)
    if (capacity === 0) fail('capacity is 0 sectors')
    const grainSectors = u64le(h, H_GRAIN_SIZE, file.path, 'grain size')
    if (grainSectors < 1 || grainSectors > MAX_GRAIN_SECTORS || (grainSectors & (grainSectors - 1)) !== 0) {
      fail(`grain size ${grainSectors} sectors is not a power of two up to ${MAX_GRAIN_SECTORS}`)
    }
    const gtes = h.readUInt32LE(H_GTES_PER_GT)
    if (gtes !== GTES_PER_GT) fail(`${gtes} entries per grain table (numGTEsPerGT) where the format has ${GTES_PER_GT}`)
    const algorithm = h.readUInt16LE(H_COMPRESS_ALGORITHM)
    if ((flags & FLAG_COMPRESSED) && algorithm !== COMPRESS_DEFLATE) fail(`unknown grain compression algorithm ${algorithm}`)
    // qemu decides compression from the algorithm alone, VMware from the flag: both must agree.
    if (!(flags & FLAG_COMPRESSED) && algorithm !== 0) fail(`grain compression algorithm ${algorithm} is set but the compressed flag is not`)
    if ((flags & FLAG_VALID_NEWLINE) && h.toString('latin1', H_NEWLINE_CHARS, H_NEWLINE_CHARS + 4) !== NEWLINE_CHARS) {
      fail('the header\'s newline check characters are mangled (was the file copied in text mode?)')
    }
    const overhead = u64le(h, H_OVERHEAD, file.path, 'grain offset')
    if (overhead * SECTOR > file.size) fail(`file is truncated: the header puts the first grain at sector ${overhead}, past the end (${file.size} bytes)`)
    const gdSector = u64le(h, H_GD_OFFSET, file.path, 'grain directory offset')
    const gdEntries = Math.ceil(Math.ceil(capacity / grainSectors) / gtes)
    file.checkSpan(gdSector * SECTOR, gdEntries * 4, 'grain directory')
    const raw = await file.readStruct(gdSector * SECTOR, gdEntries * 4, 'grain directory')
    // vdsnap reads the primary GD only, but qemu loads the redundant one too and refuses the image when it is out of reach.
    if (flags & FLAG_REDUNDANT_GT) file.checkSpan(u64le(h, H_RGD_OFFSET, file.path, 'redundant grain directory offset') * SECTOR, gdEntries * 4, 'redundant grain directory')
    const descSector = u64le(h, H_DESCRIPTOR_OFFSET, file.path, 'descriptor offset')
    const descSectors = u64le(h, H_DESCRIPTOR_SIZE, file.path, 'descriptor size')
    const metadata = new MetadataSpans(file.path, gtes * 4)
    metadata.add('the sparse header', 0, HEADER_BYTES)
    let descriptor: Buffer | undefined
    if (descSector > 0 && descSectors > 0) {
      if (descSectors * SECTOR > MAX_DESCRIPTOR_BYTES) fail(`embedded descriptor of ${descSectors} sectors is absurd`)
      descriptor = await file.readStruct(descSector * SECTOR, descSectors * SECTOR, 'embedded descriptor')
      metadata.add('the embedded descriptor', descSector * SECTOR, descSectors * SECTOR)
    }
    metadata.add('the grain directory', gdSector * SECTOR, gdEntries * 4)
    const gd = new Uint32Array(gdEntries)
    for (let i = 0; i < gdEntries; i++) {
      gd[i] = raw.readUInt32LE(i * 4)
      if (!gd[i]) continue
      file.checkSpan(gd[i]! * SECTOR, gtes * 4, `grain table ${i}`)
      metadata.refuseOverlap(`grain table ${i}`, gd[i]! * SECTOR, gtes * 4)
    }
    metadata.setTables(gd)
    return new SparseExtent(file, capacity * SECTOR, grainSectors, gtes, gd, flags, metadata, descriptor)
  }

  private async table(i: number): Promise<Buffer> {
    const hit = this.gtCache.get(i)
    if (hit) return hit
    const gt = await this.file.readStruct(this.gd[i]! * SECTOR, this.gtBytes, `grain table ${i}`)
    this.gtCache.set(i, gt)
    return gt
  }

  /** Maps an offset inside this extent into `u` (source is the caller's business). */
  async lookup(offset: number, u: MappedUnit): Promise<void> {
    const grain = Math.floor(offset / this.grainBytes)
    const gi = Math.floor(grain / this.gtes)
    const inGrain = offset - grain * this.grainBytes
    if (!this.gd[gi]) {
      u.kind = UNIT_UNALLOCATED
      u.len = (gi + 1) * this.gtes * this.grainBytes - offset
      return
    }
    const gt = this.gtCache.get(gi) ?? (await this.table(gi))
    this.decode(gt.readUInt32LE((grain % this.gtes) * 4), grain, u)
    u.len = this.grainBytes - inGrain
    if (u.kind === UNIT_DATA) u.host += inGrain
  }

  private decode(entry: number, grain: number, u: MappedUnit): void {
    if (entry === 0) u.kind = UNIT_UNALLOCATED
    else if (entry === GTE_ZERO_GRAIN && this.flags & FLAG_ZERO_GRAIN) u.kind = UNIT_ZERO
    else {
      const host = entry * SECTOR
      if (host >= this.file.size) {
        throw new ImageFormatError(this.file.path, `grain ${grain} points past the end of the file (sector ${entry})`)
      }
      // A compressed grain's length is known only from its marker; its start sector suffices.
      this.metadata.refuseOverlap(`grain ${grain}`, host, this.compressed ? SECTOR : this.grainBytes, true)
      u.kind = this.compressed ? UNIT_COMPRESSED : UNIT_DATA
      u.host = host
      u.clen = 0
    }
  }

  /**
   * The decompressed grain whose marker starts at `host` (always grainBytes
   * long), for the extent offset `inExtent`. A grain may decompress short
   * only past the capacity (qemu writes the last one so); short inside the
   * capacity means the header's capacity or grain size is wrong, and qemu
   * refuses to read it: so do we, rather than read zeros.
   */
  async grain(host: number, guest: number, inExtent = guest): Promise<Buffer> {
    const hit = this.grainCache.get(host)
    if (hit) return hit
    let data: Buffer
    if (this.flags & FLAG_MARKERS) {
      const marker = await this.file.readStruct(host, MARKER_BYTES, `grain marker for offset ${guest}`)
      const size = marker.readUInt32LE(8)
      if (size === 0 || size > 2 * this.grainBytes + SECTOR) {
        throw new ImageFormatError(this.file.path, `compressed grain for offset ${guest} has absurd size ${size}`)
      }
      data = await this.file.readStruct(host + MARKER_BYTES, size, `compressed grain for offset ${guest}`)
    } else {
      const size = Math.min(2 * this.grainBytes, this.file.size - host)
      data = await this.file.readStruct(host, size, `compressed grain for offset ${guest}`)
    }
    let out: Buffer
    try {
      out = inflateSync(data, {maxOutputLength: this.grainBytes})
    } catch (e) {
      throw new ImageFormatError(this.file.path, `compressed grain for offset ${guest} is corrupt (${(e as Error).message})`, {cause: e})
    }
    const grainStart = Math.floor(inExtent / this.grainBytes) * this.grainBytes
    const need = Math.min(this.grainBytes, this.capacity - grainStart)
    if (out.length < need) {
      throw new ImageFormatError(this.file.path, `compressed grain for offset ${guest} holds ${out.length} bytes where the header's grain size and capacity need ${need}`)
    }
    if (out.length < this.grainBytes) out = Buffer.concat([out, Buffer.alloc(this.grainBytes - out.length)])
    this.grainCache.set(host, out)
    return out
  }

  /** Ranges (inside this extent) holding grains, and those marked as zero grains. */
  async scan(): Promise<{data: {offset: number; length: number}[]; zero: {offset: number; length: number}[]}> {
    const data: {offset: number; length: number}[] = []
    const zero: {offset: number; length: number}[] = []
    const u = {kind: 0, host: 0, len: 0, clen: 0, source: 0}
    for (let gi = 0; gi < this.gd.length; gi++) {
      if (!this.gd[gi]) continue
      const gt = await this.table(gi)
      for (let j = 0; j < this.gtes; j++) {
        const grain = gi * this.gtes + j
        const start = grain * this.grainBytes
        if (start >= this.capacity) break
        this.decode(gt.readUInt32LE(j * 4), grain, u)
        const len = Math.min(this.grainBytes, this.capacity - start)
        if (u.kind === UNIT_DATA || u.kind === UNIT_COMPRESSED) pushRange(data, start, len)
        else if (u.kind === UNIT_ZERO) pushRange(zero, start, len)
      }
    }
    return {data, zero}
  }

  clearCaches(): void {
    this.gtCache.clear()
    this.grainCache.clear()
  }
}

/**
 * Where the extent's metadata lies: fixed structures (header, descriptor,
 * GD) and the grain tables (sorted starts, all `gtBytes` long), so a table
 * or grain that overlaps them is refused as a loop in the metadata.
 */
class MetadataSpans {
  private readonly fixed: {what: string; start: number; end: number}[] = []
  private tables = new Float64Array(0)

  constructor(
    private readonly path: string,
    private readonly gtBytes: number,
  ) {}

  add(what: string, start: number, length: number): void {
    if (length > 0) this.fixed.push({what, start, end: start + length})
  }

  setTables(gd: Uint32Array): void {
    this.tables = Float64Array.from([...gd].filter((s) => s !== 0).map((s) => s * SECTOR)).sort()
  }

  /** Throws when [start, start+length) overlaps a fixed structure (or, for grains, a grain table). */
  refuseOverlap(what: string, start: number, length: number, withTables = false): void {
    const end = start + length
    let hit = this.fixed.find((f) => start < f.end && f.start < end)?.what
    if (!hit && withTables) {
      // The last table starting before `end` is the only one that can overlap.
      let lo = 0
      let hi = this.tables.length
      while (lo < hi) {
        const mid = (lo + hi) >> 1
        if (this.tables[mid]! < end) lo = mid + 1
        else hi = mid
      }
      const t = lo > 0 ? this.tables[lo - 1]! : -1
      if (t >= 0 && start < t + this.gtBytes) hit = `a grain table (at byte ${t})`
    }
    if (hit) {
      throw new ImageFormatError(this.path, `${what} at byte ${start} overlaps ${hit}: the metadata loops back on itself (corrupt image)`)
    }
  }
}
