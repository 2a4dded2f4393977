// Reads VirtualBox VDI images: dynamic ("normal"), fixed and differencing.
// A block map entry names the block's slot in the data area; an unallocated
// block reads from the parent (differencing) or as zeros, a discarded
// ("zero") block reads as zeros. VDI has no sector bitmap: an allocated
// block is wholly this image's.
// Opening a differencing VDI:
//   1. its link UUID is the image UUID of its parent; VDI stores no path;
//   2. the parent is the VDI with that image UUID among the files beside it,
//      then in the directory above (VirtualBox keeps a VM's snapshot
//      differencing images in its Snapshots/ folder, the base one level up);
//   3. none found: refused, naming the UUID and the folders searched.
// Invariants: the virtual size is the header's disk size rounded up to a
// sector (qemu's rule); the block map is bounds-checked before use and read
// page by page; a data block must lie inside the file.
import {opendir, open as fsOpen} from 'node:fs/promises'
import {dirname, join, resolve} from 'node:path'
import {ImageFormatError} from '../errors.js'
import {chainAllocatedRanges, enterChain, layeredInfo, type ChainOpenOptions} from './backing-chain.js'
import {ImageFile} from './image-file.js'
import {type MappedRun, type MappedUnit, pushRange, readMapped, setUnit, UNIT_DATA, UNIT_UNALLOCATED, UNIT_ZERO, type UnitMap} from './mapped-read.js'
import {PagedTable} from './paged-table.js'
import {normalizeRanges, type DiskImage, type ImageInfo, type Range} from './types.js'
import {
  formatVdiUuid, isVdiHead, parseVdiUuidImage, parseVdiHeader, VDI_HEADER_BYTES, VDI_SECTOR, VDI_TYPE_DIFF, VDI_TYPE_FIXED, VDI_UNALLOCATED, VDI_ZERO, type VdiHeader,
} from './vdi-header.js'

/** Files we look at when searching a folder for a parent (bounds the search). */
const MAX_PARENT_CANDIDATES = 10000

export class VdiImage implements DiskImage, UnitMap {
  readonly format = 'vdi'
  readonly virtualSize: number
  private readonly bmap: PagedTable

  private constructor(
    readonly path: string,
    private readonly file: ImageFile,
    readonly header: VdiHeader,
    readonly parent: DiskImage | undefined,
  ) {
    this.virtualSize = Math.ceil(header.diskSize / VDI_SECTOR) * VDI_SECTOR
    this.bmap = new PagedTable(file, header.offsetBmap, header.blocks, 4, (b, o) => b.readUInt32LE(o), 'VDI block map')
  }

  static async open(path: string, options: ChainOpenOptions = {}): Promise<VdiImage> {
    const chain = await enterChain(path, options)
    const file = await ImageFile.open(path)
    let parent: DiskImage | undefined
    try {
      const header = parseVdiHeader(await file.readStruct(0, Math.min(file.size, VDI_HEADER_BYTES), 'VDI header'), path)
      file.checkSpan(header.offsetBmap, header.blocks * 4, 'VDI block map')
      if (header.imageType === VDI_TYPE_DIFF) parent = await openVdiParent(path, header, chain)
      return new VdiImage(path, file, header, parent)
    } catch (e) {
      await parent?.close()
      await file.close()
      throw e
    }
  }

  async lookupUnit(guest: number, u: MappedUnit, wanted: number): Promise<void> {
    const bs = this.header.blockSize
    const index = Math.floor(guest / bs)
    const inBlock = guest - index * bs
    const avail = Math.min(wanted, bs - inBlock)
    const entry = await this.bmap.get(index)
    if (entry === VDI_UNALLOCATED) return setUnit(u, UNIT_UNALLOCATED, avail)
    if (entry === VDI_ZERO) return setUnit(u, UNIT_ZERO, avail)
    setUnit(u, UNIT_DATA, avail, this.blockHost(index, entry) + inBlock)
  }

  /** Where block `index` (map entry `entry`) starts in the file; checked against the file. */
  private blockHost(index: number, entry: number): number {
    const h = this.header
    if (entry >= h.blocks) throw new ImageFormatError(this.path, `block map entry ${index} points to slot ${entry}, past the ${h.blocks} blocks`)
    const host = h.offsetData + entry * h.blockSize
    // The image's last block may be cut short where the disk ends.
    const used = Math.min(h.blockSize, this.virtualSize - index * h.blockSize)
    this.file.checkSpan(host, Math.max(0, used), `block ${index} (slot ${entry})`)
    return host
  }

  async readRun(buf: Buffer, r: MappedRun): Promise<void> {
    await this.file.readInto(buf, r.at, r.len, r.host, 'image data')
  }

  read(buf: Buffer, offset: number, length = buf.length): Promise<number> {
    return readMapped(this, buf, offset, length)
  }

  /** The blocks this file maps: data ones, and the zero (discarded) ones that hide the parent. */
  private async ownRanges(): Promise<{data: Range[]; zero: Range[]}> {
    const data: Range[] = []
    const zero: Range[] = []
    const bs = this.header.blockSize
    const count = Math.ceil(this.virtualSize / bs)
    for (let i = 0; i < count; i++) {
      const entry = await this.bmap.get(i)
      const len = Math.min(bs, this.virtualSize - i * bs)
      if (entry === VDI_UNALLOCATED) continue
      if (entry === VDI_ZERO) pushRange(zero, i * bs, len)
      else {
        this.blockHost(i, entry)
        pushRange(data, i * bs, len)
      }
    }
    return {data, zero}
  }

  async allocatedRanges(): Promise<Range[]> {
    // Only unallocated blocks show the parent: data blocks cover it, zero (discarded) ones hide it.
    const own = await this.ownRanges()
    return chainAllocatedRanges(this, own.data, own.zero)
  }

  async overlayRanges(): Promise<Range[]> {
    const own = await this.ownRanges()
    return normalizeRanges([...own.data, ...own.zero])
  }

  info(): Promise<ImageInfo> {
    const t = this.header.imageType
    return layeredInfo(this, {
      subformat: t === VDI_TYPE_FIXED ? 'fixed' : t === VDI_TYPE_DIFF ? 'differencing' : 'dynamic',
      clusterSize: this.header.blockSize,
      logicalSectorSize: VDI_SECTOR,
      fileSize: this.file.physicalSize,
    })
  }

  async close(): Promise<void> {
    await this.parent?.close()
    await this.file.close()
  }
}

/** Finds and opens the VDI whose image UUID is `header`'s link UUID (see the module comment). */
async function openVdiParent(path: string, header: VdiHeader, chain: string[]): Promise<VdiImage> {
  const want = header.uuidLink
  const dirs = [dirname(resolve(path)), dirname(dirname(resolve(path)))]
  const self = resolve(path)
  for (const dir of [...new Set(dirs)]) {
    for (const candidate of await vdiFilesIn(dir)) {
      if (candidate === self) continue
      const uuid = await imageUuid(candidate)
      if (uuid?.equals(want)) return VdiImage.open(candidate, {chainAbove: chain})
    }
  }
  throw new ImageFormatError(path, `parent VDI {${formatVdiUuid(want)}} not found (looked in ${[...new Set(dirs)].join(' and ')})`)
}

async function vdiFilesIn(dir: string): Promise<string[]> {
  const out: string[] = []
  const d = await opendir(dir).catch(() => undefined)
  if (!d) return out
  let seen = 0
  for await (const e of d) {
    if (++seen > MAX_PARENT_CANDIDATES) break
    if (e.isFile()) out.push(join(dir, e.name))
  }
  // Files named *.vdi first: the usual case costs one header read per VDI.
  return out.sort((a, b) => Number(!a.toLowerCase().endsWith('.vdi')) - Number(!b.toLowerCase().endsWith('.vdi')) || a.localeCompare(b))
}

/** The image UUID of a VDI file, or undefined for anything else. */
async function imageUuid(path: string): Promise<Buffer | undefined> {
  const fh = await fsOpen(path, 'r').catch(() => undefined)
  if (!fh) return undefined
  try {
    const head = Buffer.alloc(VDI_HEADER_BYTES)
    const {bytesRead} = await fh.read(head, 0, VDI_HEADER_BYTES, 0)
    if (bytesRead < VDI_HEADER_BYTES || !isVdiHead(head)) return undefined
    return parseVdiUuidImage(head)
  } finally {
    await fh.close()
  }
}
