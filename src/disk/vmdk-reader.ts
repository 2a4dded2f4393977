// Native VMDK reader: hosted sparse (monolithicSparse, streamOptimized),
// descriptor + extent files (monolithicFlat, twoGbMaxExtentSparse,
// twoGbMaxExtentFlat, VMFS, ESXi seSparse (vmdk-sesparse.ts), ZERO
// extents) and delta disks whose unallocated grains
// come from the parent named by parentFileNameHint.
//
// Opening:
//   1. a file starting with "KDMV" is one sparse extent; its embedded
//      descriptor only tells us the create type and the parent;
//   2. otherwise the file must be a text descriptor; each extent line opens
//      its file (relative to the descriptor's directory);
//   3. a descriptor with a parentCID other than ffffffff opens the parent.
// The virtual disk is the extents laid end to end. Reads go through the
// shared run loop (mapped-read.ts), so contiguous grains or flat spans
// become one file read.
import {dirname, isAbsolute, resolve} from 'node:path'
import {ImageFormatError, NotFoundError} from '../errors.js'
import {chainAllocatedRanges, type ChainOpenOptions, enterChain, clipRanges, layeredInfo, openBacking} from './backing-chain.js'
import {ImageFile} from './image-file.js'
import {type MappedRun, type MappedUnit, readMapped, UNIT_DATA, UNIT_ZERO, type UnitMap} from './mapped-read.js'
import {type DiskImage, type ImageInfo, type Range, normalizeRanges} from './types.js'
import {hasParent, looksLikeDescriptor, MAX_DESCRIPTOR_BYTES, parseDescriptor, SECTOR, type VmdkDescriptor} from './vmdk-descriptor.js'
import {isSeSparseHead, SeSparseExtent} from './vmdk-sesparse.js'
import {SparseExtent, SPARSE_MAGIC} from './vmdk-sparse.js'

const MAX_EXTENTS = 4096

interface Extent {
  start: number
  size: number
  kind: 'flat' | 'sparse' | 'zero'
  file?: ImageFile
  /** flat: byte offset of the extent in its file. */
  fileOffset: number
  /** sparse: a hosted sparse extent, or an ESXi seSparse one. */
  sparse?: SparseExtent | SeSparseExtent
}

export class VmdkImage implements DiskImage, UnitMap {
  readonly format = 'vmdk'
  readonly virtualSize: number
  private ranges?: Promise<{data: Range[]; zero: Range[]}>

  private constructor(
    readonly path: string,
    private readonly extents: Extent[],
    private readonly descriptor: VmdkDescriptor,
    readonly parent: DiskImage | undefined,
  ) {
    const last = extents[extents.length - 1]
    this.virtualSize = last ? last.start + last.size : 0
  }

  static async open(path: string, options: ChainOpenOptions = {}): Promise<VmdkImage> {
    const extents: Extent[] = []
    let parent: DiskImage | undefined
    const main = await ImageFile.open(path)
    try {
      const head = await main.readStruct(0, Math.min(main.size, SECTOR), 'VMDK header')
      let descriptor: VmdkDescriptor
      if (head.length >= 4 && head.readUInt32LE(0) === SPARSE_MAGIC) {
        const sparse = await SparseExtent.open(main)
        extents.push({start: 0, size: sparse.capacity, kind: 'sparse', file: main, fileOffset: 0, sparse})
        descriptor = sparse.descriptor ? parseDescriptor(path, sparse.descriptor) : {createType: 'monolithicSparse', extents: []}
      } else {
        if (isSeSparseHead(head)) {
          throw new ImageFormatError(path, 'this is the seSparse data extent of an ESXi snapshot disk, not the disk', {
            hint: 'back up its descriptor: the small .vmdk file whose extent line names this file',
          })
        }
        if (!looksLikeDescriptor(head)) throw new ImageFormatError(path, 'not a VMDK image (neither a sparse header nor a descriptor)')
        if (main.size > MAX_DESCRIPTOR_BYTES) throw new ImageFormatError(path, `descriptor file is too large (${main.size} bytes)`)
        descriptor = parseDescriptor(path, await main.readStruct(0, main.size, 'descriptor'))
        await main.close()
        await openExtents(path, descriptor, extents)
      }
      const chain = await enterChain(path, options)
      if (hasParent(descriptor)) parent = await openBacking(path, descriptor.parentFileNameHint!, chain)
      return new VmdkImage(path, extents, descriptor, parent)
    } catch (e) {
      await parent?.close()
      for (const x of extents) if (x.file !== main) await x.file?.close()
      await main.close().catch(() => undefined)
      throw e
    }
  }

  read(buf: Buffer, offset: number, length = buf.length): Promise<number> {
    return readMapped(this, buf, offset, length)
  }

  private extentIndex(guest: number): number {
    let lo = 0
    let hi = this.extents.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (this.extents[mid]!.start <= guest) lo = mid
      else hi = mid - 1
    }
    return lo
  }

  async lookupUnit(guest: number, u: MappedUnit): Promise<void> {
    const idx = this.extentIndex(guest)
    const x = this.extents[idx]!
    const inExtent = guest - x.start
    u.source = idx
    if (x.kind === 'sparse') await x.sparse!.lookup(inExtent, u)
    else if (x.kind === 'flat') {
      u.kind = UNIT_DATA
      u.host = x.fileOffset + inExtent
    } else u.kind = UNIT_ZERO
    u.len = Math.min(x.kind === 'sparse' ? u.len : Infinity, x.size - inExtent)
  }

  async readRun(buf: Buffer, r: MappedRun): Promise<void> {
    const x = this.extents[r.source]!
    if (r.kind === UNIT_DATA) {
      await x.file!.readZeroPadded(buf, r.at, r.len, r.host)
      return
    }
    // Only hosted sparse extents have compressed grains.
    const sparse = x.sparse as SparseExtent
    const grain = await sparse.grain(r.host, r.guest, r.guest - x.start)
    const inGrain = (r.guest - x.start) % sparse.grainBytes
    grain.copy(buf, r.at, inGrain, inGrain + r.len)
  }

  private ownRanges(): Promise<{data: Range[]; zero: Range[]}> {
    this.ranges ??= (async () => {
      const data: Range[] = []
      const zero: Range[] = []
      for (const x of this.extents) {
        if (x.kind === 'flat') data.push({offset: x.start, length: x.size})
        else if (x.kind === 'sparse') {
          const s = await x.sparse!.scan()
          for (const r of clipRanges(s.data, x.size)) data.push({offset: x.start + r.offset, length: r.length})
          for (const r of clipRanges(s.zero, x.size)) zero.push({offset: x.start + r.offset, length: r.length})
        }
      }
      return {data: normalizeRanges(data), zero: normalizeRanges(zero)}
    })()
    return this.ranges
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
    const files = new Set<ImageFile>()
    for (const x of this.extents) if (x.file) files.add(x.file)
    return layeredInfo(this, {
      subformat: this.descriptor.createType || undefined,
      clusterSize: this.extents.find((x) => x.sparse)?.sparse?.grainBytes,
      logicalSectorSize: SECTOR,
      fileSize: [...files].reduce((s, f) => s + f.size, 0),
    })
  }

  async close(): Promise<void> {
    await this.parent?.close()
    const files = new Set<ImageFile>()
    for (const x of this.extents) {
      x.sparse?.clearCaches()
      if (x.file) files.add(x.file)
    }
    for (const f of files) await f.close()
  }
}

/** Opens the extent files a text descriptor names, appending them to `out`. */
async function openExtents(path: string, d: VmdkDescriptor, out: Extent[]): Promise<void> {
  if (d.extents.length === 0) throw new ImageFormatError(path, 'descriptor lists no extents')
  if (d.extents.length > MAX_EXTENTS) throw new ImageFormatError(path, `descriptor lists ${d.extents.length} extents`)
  let start = 0
  for (const line of d.extents) {
    const size = line.sectors * SECTOR
    const x: Extent = {start, size, kind: 'zero', fileOffset: 0}
    start += size
    if (!Number.isSafeInteger(start)) throw new ImageFormatError(path, 'extents add up to an absurd size')
    out.push(x)
    if (line.type === 'ZERO' || line.access === 'NOACCESS') continue
    if (!['FLAT', 'VMFS', 'SPARSE', 'SESPARSE'].includes(line.type)) throw new ImageFormatError(path, `${line.type} extents are not supported`)
    if (!line.fileName) throw new ImageFormatError(path, `${line.type} extent has no file name`)
    const full = isAbsolute(line.fileName) ? line.fileName : resolve(dirname(path), line.fileName)
    x.file = await ImageFile.open(full).catch((e: unknown) => {
      if (e instanceof NotFoundError) throw new ImageFormatError(path, `extent file "${line.fileName}" not found (looked for ${full})`)
      throw e
    })
    if (line.type === 'SPARSE' || line.type === 'SESPARSE') {
      x.kind = 'sparse'
      x.sparse = line.type === 'SPARSE' ? await SparseExtent.open(x.file) : await SeSparseExtent.open(x.file)
      // qemu sizes a seSparse extent by its header, a sparse one by the descriptor: one mismatched size, two readings.
      if (line.type === 'SESPARSE' && x.sparse.capacity !== size) throw new ImageFormatError(full, `seSparse extent holds ${x.sparse.capacity} bytes, the descriptor says ${size}`)
      if (x.sparse.capacity < size) throw new ImageFormatError(full, `sparse extent holds ${x.sparse.capacity} bytes, the descriptor says ${size}`)
    } else {
      x.kind = 'flat'
      x.fileOffset = line.startSector * SECTOR
      if (!Number.isSafeInteger(x.fileOffset)) throw new ImageFormatError(path, 'flat extent offset is absurd')
    }
  }
}
