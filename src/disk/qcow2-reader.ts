// Native qcow2 reader (v2 and v3). A guest offset maps through the L1 table
// to an L2 table to one of four kinds of cluster (or, with extended L2
// entries, subcluster): zero, unallocated (read from the backing image, or
// zeros), data (in this file or the external data file) and compressed.
//
// Reading a range goes through the shared run loop (mapped-read.ts): this
// reader maps a guest offset to its cluster or subcluster (lookupUnit) and
// serves data runs straight from the file and compressed runs by
// decompressing one cluster (readRun); zeros and the backing image are the
// loop's.
// Invariants: L2 tables come through a bounded LRU; every L2 offset was
// checked (aligned, inside the file) when the L1 table was loaded; every
// data offset is checked before it is read; lookups never recurse, so a
// table pointing at itself or at the header cannot loop.
import {dirname, isAbsolute, resolve} from 'node:path'
import {ImageFormatError, NotFoundError} from '../errors.js'
import {chainAllocatedRanges, type ChainOpenOptions, enterChain, clipRanges, layeredInfo, openBacking} from './backing-chain.js'
import {ImageFile} from './image-file.js'
import {decompressCluster} from './qcow2-compressed.js'
import {
  AUTOCLEAR_RAW_DATA,
  checkL1,
  INCOMPAT_DATA_FILE,
  type Qcow2Header,
  readQcow2Header,
  SUBCLUSTERS_PER_CLUSTER,
} from './qcow2-header.js'
import {type DiskImage, type ImageInfo, type Range, normalizeRanges} from './types.js'
import {LruCache} from './lru-cache.js'
import {
  type MappedRun,
  type MappedUnit,
  newUnit,
  pushRange,
  readMapped,
  UNIT_COMPRESSED,
  UNIT_DATA,
  UNIT_UNALLOCATED,
  UNIT_ZERO,
  type UnitMap,
} from './mapped-read.js'

/** Bytes of L2 tables kept in memory per image. */
const L2_CACHE_BYTES = 32 * 1024 * 1024
const COMPRESSED_CACHE_ENTRIES = 8
const TWO_32 = 2 ** 32
const L2_COMPRESSED_BIT = 0x40000000 // bit 62 in the high word
const L2_COPIED_BIT = 0x80000000 // bit 63 in the high word
const OFFSET_HIGH_MASK = 0x00ffffff // bits 32..55
const SECTOR = 512

const Kind = {Zero: UNIT_ZERO, Unallocated: UNIT_UNALLOCATED, Data: UNIT_DATA, Compressed: UNIT_COMPRESSED} as const

export class Qcow2Image implements DiskImage, UnitMap {
  readonly format = 'qcow2'
  private readonly l2Cache: LruCache<number, Buffer>
  private readonly clusterCache = new LruCache<number, Buffer>(COMPRESSED_CACHE_ENTRIES)
  private readonly cs: number
  private readonly l2Entries: number
  private readonly subSize: number
  private ranges?: Promise<{data: Range[]; zero: Range[]}>

  private constructor(
    readonly path: string,
    private readonly file: ImageFile,
    private readonly dataFile: ImageFile,
    private readonly h: Qcow2Header,
    private readonly l1: Float64Array,
    readonly virtualSize: number,
    readonly parent: DiskImage | undefined,
  ) {
    this.cs = h.clusterSize
    this.l2Entries = h.clusterSize / (h.extendedL2 ? 16 : 8)
    this.subSize = h.extendedL2 ? h.clusterSize / SUBCLUSTERS_PER_CLUSTER : h.clusterSize
    this.l2Cache = new LruCache(Math.max(4, Math.floor(L2_CACHE_BYTES / h.clusterSize)))
  }

  static async open(path: string, options: ChainOpenOptions = {}): Promise<Qcow2Image> {
    const file = await ImageFile.open(path)
    let dataFile: ImageFile | undefined
    let parent: DiskImage | undefined
    try {
      const h = await readQcow2Header(file)
      const chain = await enterChain(path, options)
      let l1Offset = h.l1Offset
      let l1Size = h.l1Size
      let virtualSize = h.virtualSize
      if (options.imageSnapshot !== undefined) {
        const want = options.imageSnapshot
        const snap = h.snapshots.find((s) => s.id === want) ?? h.snapshots.find((s) => s.name === want)
        if (!snap) throw new NotFoundError(`${path}: no internal snapshot with id or name "${want}"`)
        checkL1(file, snap.l1Offset, snap.l1Size, snap.virtualSize, h.clusterBits, h.extendedL2, `snapshot "${want}" L1 table`)
        ;({l1Offset, l1Size, virtualSize} = {l1Offset: snap.l1Offset, l1Size: snap.l1Size, virtualSize: snap.virtualSize})
      }
      if (h.incompatible & INCOMPAT_DATA_FILE) {
        const name = h.dataFileName!
        const full = isAbsolute(name) ? name : resolve(dirname(path), name)
        dataFile = await ImageFile.open(full).catch((e: unknown) => {
          if (e instanceof NotFoundError) throw new ImageFormatError(path, `external data file "${name}" not found (looked for ${full})`)
          throw e
        })
      }
      const l1 = await loadL1(file, h, l1Offset, l1Size)
      if (h.backingName !== undefined) parent = await openBacking(path, h.backingName, chain, h.backingFormat)
      return new Qcow2Image(path, file, dataFile ?? file, h, l1, virtualSize, parent)
    } catch (e) {
      await parent?.close()
      await dataFile?.close()
      await file.close()
      throw e
    }
  }

  read(buf: Buffer, offset: number, length = buf.length): Promise<number> {
    return readMapped(this, buf, offset, length)
  }

  /** Data runs come straight from the (data) file; a compressed run is one cluster. */
  async readRun(buf: Buffer, r: MappedRun): Promise<void> {
    if (r.kind === Kind.Data) {
      await this.dataFile.readZeroPadded(buf, r.at, r.len, r.host)
      return
    }
    const cluster = await this.compressedCluster(r.host, r.clen, r.guest)
    const inCluster = r.guest % this.cs
    cluster.copy(buf, r.at, inCluster, inCluster + r.len)
  }

  private async compressedCluster(host: number, clen: number, guest: number): Promise<Buffer> {
    const hit = this.clusterCache.get(host)
    if (hit) return hit
    const avail = Math.min(clen, this.file.size - host)
    const raw = Buffer.alloc(avail)
    await this.file.readZeroPadded(raw, 0, avail, host)
    const out = decompressCluster(this.path, this.h.compressionType, raw, this.cs, guest - (guest % this.cs))
    this.clusterCache.set(host, out)
    return out
  }

  private async l2Table(l2Offset: number): Promise<Buffer> {
    const hit = this.l2Cache.get(l2Offset)
    if (hit) return hit
    const table = await this.file.readStruct(l2Offset, this.cs, 'L2 table')
    this.l2Cache.set(l2Offset, table)
    return table
  }

  /** Maps one guest offset to the unit holding it. */
  async lookupUnit(guest: number, u: MappedUnit): Promise<void> {
    const cluster = Math.floor(guest / this.cs)
    const l1Index = Math.floor(cluster / this.l2Entries)
    const l2Offset = this.l1[l1Index] ?? 0
    if (l2Offset === 0) {
      u.kind = Kind.Unallocated
      u.len = (l1Index + 1) * this.l2Entries * this.cs - guest
      return
    }
    const table = this.l2Cache.get(l2Offset) ?? (await this.l2Table(l2Offset))
    const inCluster = guest - cluster * this.cs
    const sub = Math.floor(inCluster / this.subSize)
    this.decode(table, cluster % this.l2Entries, sub, cluster * this.cs, u)
    if (u.kind === Kind.Data) u.host += inCluster - sub * this.subSize
    u.len = (sub + 1) * this.subSize - inCluster
    if (u.kind === Kind.Compressed) u.len = this.cs - inCluster
  }

  /** Decodes L2 entry `j` (subcluster `sub`) into `u`; host is the unit's start. */
  private decode(table: Buffer, j: number, sub: number, guestCluster: number, u: MappedUnit): void {
    const ext = this.h.extendedL2
    const at = j * (ext ? 16 : 8)
    const hi = table.readUInt32BE(at)
    const lo = table.readUInt32BE(at + 4)
    if (hi & L2_COMPRESSED_BIT) {
      if (this.dataFile !== this.file) throw new ImageFormatError(this.path, 'compressed cluster in an image with an external data file')
      const offsetBits = 62 - (this.h.clusterBits - 8) - 32
      const host = (hi & ((1 << offsetBits) - 1)) * TWO_32 + lo
      const sectors = (hi & 0x3fffffff) >>> offsetBits
      if (host >= this.file.size) throw this.pastEof('compressed cluster', guestCluster, host)
      u.kind = Kind.Compressed
      u.host = host
      u.clen = (sectors + 1) * SECTOR - (host % SECTOR)
      return
    }
    const host = (hi & OFFSET_HIGH_MASK) * TWO_32 + ((lo & ~0x1ff) >>> 0)
    const hasHost = host !== 0 || (this.dataFile !== this.file && (hi & L2_COPIED_BIT) !== 0)
    if (ext) {
      const zeroBits = table.readUInt32BE(at + 8)
      const allocBits = table.readUInt32BE(at + 12)
      if ((allocBits >>> sub) & 1) {
        if (!hasHost) throw new ImageFormatError(this.path, `subcluster at guest offset ${guestCluster} is allocated without a host cluster`)
        this.setData(host + sub * this.subSize, guestCluster, u)
      } else u.kind = (zeroBits >>> sub) & 1 ? Kind.Zero : Kind.Unallocated
      return
    }
    if (lo & 1) u.kind = Kind.Zero
    else if (!hasHost) u.kind = Kind.Unallocated
    else this.setData(host, guestCluster, u)
  }

  private setData(host: number, guestCluster: number, u: MappedUnit): void {
    if (host % this.subSize !== 0) throw new ImageFormatError(this.path, `L2 entry for guest offset ${guestCluster} is not cluster-aligned`)
    if (host >= this.dataFile.size) throw this.pastEof('data cluster', guestCluster, host)
    u.kind = Kind.Data
    u.host = host
  }

  private pastEof(what: string, guest: number, host: number): ImageFormatError {
    return new ImageFormatError(this.path, `${what} for guest offset ${guest} points past the end of the file (${host})`, {code: 'IMAGE_BOUNDS', offset: guest})
  }

  /** Scans all L2 tables once: this layer's data ranges and explicit-zero ranges. */
  private ownRanges(): Promise<{data: Range[]; zero: Range[]}> {
    this.ranges ??= this.scan()
    return this.ranges
  }

  private async scan(): Promise<{data: Range[]; zero: Range[]}> {
    const data: Range[] = []
    const zero: Range[] = []
    const units = this.cs / this.subSize
    const u = newUnit()
    for (let i = 0; i < this.l1.length; i++) {
      const l2Offset = this.l1[i]!
      if (l2Offset === 0) continue
      const table = await this.l2Table(l2Offset)
      for (let j = 0; j < this.l2Entries; j++) {
        const base = (i * this.l2Entries + j) * this.cs
        if (base >= this.virtualSize) break
        for (let s = 0; s < units; s++) {
          this.decode(table, j, s, base, u)
          const k = u.kind
          const start = base + s * this.subSize
          const len = k === Kind.Compressed ? this.cs : this.subSize
          if (k === Kind.Data || k === Kind.Compressed) pushRange(data, start, len)
          else if (k === Kind.Zero) pushRange(zero, start, len)
          if (k === Kind.Compressed) break
        }
      }
    }
    return {data: clipRanges(data, this.virtualSize), zero: clipRanges(zero, this.virtualSize)}
  }

  async allocatedRanges(): Promise<Range[]> {
    const own = await this.ownRanges()
    return chainAllocatedRanges(this, own.data, own.zero)
  }

  async overlayRanges(): Promise<Range[]> {
    const own = await this.ownRanges()
    return normalizeRanges([...own.data, ...own.zero])
  }

  info(): Promise<ImageInfo> {
    const raw = this.h.autoclear & AUTOCLEAR_RAW_DATA ? ' (raw external data)' : ''
    return layeredInfo(this, {
      subformat: `v${this.h.version}${this.dataFile !== this.file ? ` with external data file${raw}` : ''}`,
      clusterSize: this.cs,
      logicalSectorSize: SECTOR,
      snapshots: this.h.snapshots.map((s) => ({id: s.id, name: s.name, virtualSize: s.virtualSize, date: s.date})),
      fileSize: this.file.size + (this.dataFile !== this.file ? this.dataFile.size : 0),
    })
  }

  async close(): Promise<void> {
    this.l2Cache.clear()
    this.clusterCache.clear()
    await this.parent?.close()
    if (this.dataFile !== this.file) await this.dataFile.close()
    await this.file.close()
  }
}

async function loadL1(file: ImageFile, h: Qcow2Header, offset: number, size: number): Promise<Float64Array> {
  const raw = size > 0 ? await file.readStruct(offset, size * 8, 'L1 table') : Buffer.alloc(0)
  const l1 = new Float64Array(size)
  for (let i = 0; i < size; i++) {
    const hi = raw.readUInt32BE(i * 8)
    const lo = raw.readUInt32BE(i * 8 + 4)
    const l2 = (hi & OFFSET_HIGH_MASK) * TWO_32 + ((lo & ~0x1ff) >>> 0)
    if (l2 === 0) continue
    if (l2 % h.clusterSize !== 0) throw new ImageFormatError(file.path, `L1 entry ${i} (L2 table at ${l2}) is not cluster-aligned`)
    file.checkSpan(l2, h.clusterSize, `L2 table of L1 entry ${i}`)
    l1[i] = l2
  }
  return l1
}
