// Reads VHD images (Virtual PC / Hyper-V v1): fixed, dynamic and
// differencing. Layout: fixed = guest bytes then a 512-byte footer;
// dynamic = footer copy, dynamic header, BAT of big-endian sector numbers,
// blocks of [sector bitmap | data], footer. In a block, bit i of the bitmap
// (MSB first) says whether sector i is stored here: when unset, a
// differencing disk reads the parent and a dynamic disk reads zeros.
// Invariants: the virtual size follows qemu's rule (see footerVirtualSize)
// so we agree with `qemu-img info`; every file offset is bounds-checked
// before use; BAT and bitmaps are cached with bounded memory.
import {ImageFormatError} from '../errors.js'
import {ImageFile} from './image-file.js'
import {type MappedRun, type MappedUnit, pushDataRanges, pushRange, readMapped, setUnit, UNIT_DATA, UNIT_UNALLOCATED, UNIT_ZERO, type UnitMap} from './mapped-read.js'
import {LruCache} from './lru-cache.js'
import {MAX_CACHED_BITMAPS, PagedTable, bitRun} from './paged-table.js'
import {chainAllocatedRanges, decodeUtf16, enterChain, findParent, layeredInfo, type ChainOpenOptions} from './backing-chain.js'
import type {DiskImage, ImageInfo, Range} from './types.js'
import {
  DISK_DIFFERENCING, DISK_FIXED, DYN_HEADER_SIZE, FOOTER_SIZE, SECTOR, UNALLOCATED, footerVirtualSize,
  parseDynamicHeader, parseFooter, type VhdDynamicHeader, type VhdFooter,
} from './vhd-footer.js'

const MAX_BLOCK_SIZE = 256 * 1024 * 1024
/** qemu refuses BATs of more entries (INT_MAX / 4). */
const MAX_TABLE_ENTRIES = 0x1fff_ffff
/** BAT bytes checked per read when the table is scanned at open. */
const BAT_SCAN_BYTES = 4 * 1024 * 1024
const MAX_LOCATOR_BYTES = 64 * 1024
/** Locator platform codes in the order we trust them: relative first, then absolute. */
const LOCATOR_PREFERENCE = ['W2ru', 'W2ku', 'MacX', 'Wi2r', 'Wi2k']

interface Dynamic {
  header: VhdDynamicHeader
  bat: PagedTable
  blockSize: number
  bitmapSize: number
}

export class VhdImage implements DiskImage, UnitMap {
  readonly format = 'vhd'
  private readonly bitmaps = new LruCache<number, Buffer>(MAX_CACHED_BITMAPS)

  private constructor(
    readonly path: string,
    private readonly file: ImageFile,
    private readonly footer: VhdFooter,
    readonly virtualSize: number,
    private readonly dyn: Dynamic | undefined,
    readonly parent: VhdImage | undefined,
  ) {}

  static async open(path: string, options: ChainOpenOptions = {}): Promise<VhdImage> {
    const chain = await enterChain(path, options)
    const file = await ImageFile.open(path)
    try {
      const footer = await readFooter(file)
      const virtualSize = footerVirtualSize(footer)
      if (footer.diskType === DISK_FIXED) {
        if (file.size - FOOTER_SIZE < Math.min(virtualSize, footer.currentSize)) {
          throw new ImageFormatError(path, `fixed VHD is truncated: ${file.size} bytes for a ${footer.currentSize}-byte disk`)
        }
        return new VhdImage(path, file, footer, virtualSize, undefined, undefined)
      }
      const dyn = await readDynamic(file, footer, virtualSize)
      let parent: VhdImage | undefined
      if (footer.diskType === DISK_DIFFERENCING) parent = await openParent(file, dyn.header, chain)
      return new VhdImage(path, file, footer, virtualSize, dyn, parent)
    } catch (e) {
      await file.close()
      throw e
    }
  }

  /** The footer's unique id: set at creation, unchanged by writes. */
  get identity(): string {
    return `vhd:${this.footer.uniqueId.toString('hex')}`
  }

  /** The footer's unique id, which a differencing child records as its parent id. */
  get uniqueId(): Buffer {
    return this.footer.uniqueId
  }

  async lookupUnit(offset: number, u: MappedUnit, wanted: number): Promise<void> {
    const dyn = this.dyn
    if (!dyn) {
      const dataEnd = Math.min(this.virtualSize, this.file.size - FOOTER_SIZE)
      if (offset >= dataEnd) setUnit(u, UNIT_ZERO, wanted)
      else setUnit(u, UNIT_DATA, Math.min(wanted, dataEnd - offset), offset)
      return
    }
    const index = Math.floor(offset / dyn.blockSize)
    const inBlock = offset - index * dyn.blockSize
    const avail = Math.min(wanted, dyn.blockSize - inBlock)
    const entry = await dyn.bat.get(index)
    if (entry === UNALLOCATED) return setUnit(u, UNIT_UNALLOCATED, avail)
    const blockStart = entry * SECTOR
    const used = Math.min(dyn.blockSize, this.virtualSize - index * dyn.blockSize)
    this.file.checkSpan(blockStart, dyn.bitmapSize + used, `block ${index} (BAT entry ${entry})`)
    const bitmap = await this.bitmaps.getOrLoad(index, () => this.file.readStruct(blockStart, dyn.bitmapSize, `sector bitmap of block ${index}`))
    const sector = Math.floor(inBlock / SECTOR)
    const sectors = Math.ceil((inBlock + avail) / SECTOR) - sector
    const run = bitRun(bitmap, sector, sectors, true)
    const length = Math.min((sector + run.count) * SECTOR, inBlock + avail) - inBlock
    setUnit(u, run.set ? UNIT_DATA : UNIT_UNALLOCATED, length, blockStart + dyn.bitmapSize + inBlock)
  }

  async readRun(buf: Buffer, r: MappedRun): Promise<void> {
    await this.file.readInto(buf, r.at, r.len, r.host, 'image data')
  }

  read(buf: Buffer, offset: number, length = buf.length): Promise<number> {
    return readMapped(this, buf, offset, length)
  }

  /** Ranges this file stores, at block granularity (or sector granularity when `exact`). */
  private async ownRanges(exact: boolean): Promise<Range[]> {
    const dyn = this.dyn
    if (!dyn) return this.virtualSize > 0 ? [{offset: 0, length: this.virtualSize}] : []
    const out: Range[] = []
    for (let i = 0; i < dyn.bat.entryCount; i++) {
      const start = i * dyn.blockSize
      const len = Math.min(dyn.blockSize, this.virtualSize - start)
      const entry = await dyn.bat.get(i)
      if (entry === UNALLOCATED) continue
      // Checked here too, so `info` and the allocation map refuse a BAT entry past EOF, not only reads.
      this.file.checkSpan(entry * SECTOR, dyn.bitmapSize + len, `block ${i} (BAT entry ${entry})`)
      if (!exact) {
        pushRange(out, start, len)
        continue
      }
      await pushDataRanges(this, out, start, len)
    }
    return out
  }

  async allocatedRanges(): Promise<Range[]> {
    return chainAllocatedRanges(this, await this.ownRanges(false))
  }

  async overlayRanges(): Promise<Range[]> {
    return this.ownRanges(true)
  }

  info(): Promise<ImageInfo> {
    return layeredInfo(this, {
      subformat: this.footer.diskType === DISK_FIXED ? 'fixed' : this.parent ? 'differencing' : 'dynamic',
      clusterSize: this.dyn?.blockSize,
      logicalSectorSize: SECTOR,
      fileSize: this.file.physicalSize,
    })
  }

  async close(): Promise<void> {
    await this.parent?.close()
    await this.file.close()
  }
}

/** The footer at the end; for dynamic disks the copy at offset 0 stands in for a damaged one. */
async function readFooter(file: ImageFile): Promise<VhdFooter> {
  if (file.size < FOOTER_SIZE) throw new ImageFormatError(file.path, `file too small for a VHD footer (${file.size} bytes)`)
  try {
    return parseFooter(await file.readStruct(file.size - FOOTER_SIZE, FOOTER_SIZE, 'VHD footer'), file.path)
  } catch (tailError) {
    try {
      const copy = parseFooter(await file.readStruct(0, FOOTER_SIZE, 'VHD footer copy'), file.path)
      if (copy.diskType !== DISK_FIXED) return copy
    } catch {
      // report the problem with the real footer
    }
    throw tailError
  }
}

async function readDynamic(file: ImageFile, footer: VhdFooter, virtualSize: number): Promise<Dynamic> {
  const path = file.path
  if (footer.dataOffset === undefined) throw new ImageFormatError(path, 'dynamic VHD footer has no dynamic header offset')
  const header = parseDynamicHeader(await file.readStruct(footer.dataOffset, DYN_HEADER_SIZE, 'VHD dynamic header'), path)
  const blockSize = header.blockSize
  if (blockSize < SECTOR || blockSize > MAX_BLOCK_SIZE || (blockSize & (blockSize - 1)) !== 0) {
    throw new ImageFormatError(path, `VHD block size ${blockSize} is not a power of two from 512 bytes to 256 MiB`)
  }
  if (header.maxTableEntries > MAX_TABLE_ENTRIES) throw new ImageFormatError(path, `VHD BAT of ${header.maxTableEntries} entries is absurd`)
  const needed = Math.ceil(virtualSize / blockSize)
  if (header.maxTableEntries < needed) {
    throw new ImageFormatError(path, `virtual size ${virtualSize} needs ${needed} BAT entries but the BAT has ${header.maxTableEntries}`)
  }
  const bat = new PagedTable(file, header.tableOffset, needed, 4, (b, o) => b.readUInt32BE(o), 'VHD BAT')
  const bitmapSize = Math.ceil(blockSize / SECTOR / 8 / SECTOR) * SECTOR
  await checkBlocks(file, footer.dataOffset, header.tableOffset, header.maxTableEntries, bitmapSize + blockSize)
  return {header, bat, blockSize, bitmapSize}
}

/**
 * Every allocated block lies wholly inside the file (qemu refuses the image
 * otherwise: "free_data_block_offset points after the end of file") and
 * clear of the footer copy, the dynamic header and the BAT: a block that
 * overlaps them would read the image's own metadata as guest data.
 */
async function checkBlocks(file: ImageFile, headerAt: number, batAt: number, batEntries: number, span: number): Promise<void> {
  // Like qemu, every entry of the table counts, not only those the virtual size needs.
  file.checkSpan(batAt, batEntries * 4, 'VHD BAT')
  const needed = batEntries
  const metadata: [string, number, number][] = [
    ['the footer copy', 0, FOOTER_SIZE],
    ['the dynamic header', headerAt, DYN_HEADER_SIZE],
    ['the BAT', batAt, batEntries * 4],
  ]
  for (let first = 0; first < needed; first += BAT_SCAN_BYTES / 4) {
    const count = Math.min(needed - first, BAT_SCAN_BYTES / 4)
    const raw = await file.readStruct(batAt + first * 4, count * 4, 'VHD BAT')
    for (let i = 0; i < count; i++) {
      const entry = raw.readUInt32BE(i * 4)
      if (entry === UNALLOCATED) continue
      const start = entry * SECTOR
      const what = `block ${first + i} (BAT entry ${entry})`
      if (start + span > file.size) throw new ImageFormatError(file.path, `${what} at offset ${start} (${span} bytes) lies past the end of the file (${file.size} bytes)`)
      for (const [name, at, len] of metadata) {
        if (start < at + len && at < start + span) throw new ImageFormatError(file.path, `${what} at offset ${start} overlaps ${name}: the metadata loops back on itself (corrupt image)`)
      }
    }
  }
}

/** Parent path candidates from the locators (preferred codes first), then the Unicode name. */
async function parentPaths(file: ImageFile, header: VhdDynamicHeader): Promise<string[]> {
  const out: string[] = []
  const sorted = header.locators
    .filter((l) => LOCATOR_PREFERENCE.includes(l.code))
    .sort((a, b) => LOCATOR_PREFERENCE.indexOf(a.code) - LOCATOR_PREFERENCE.indexOf(b.code))
  for (const l of sorted) {
    if (l.dataLength === 0) continue
    if (l.dataLength > MAX_LOCATOR_BYTES) throw new ImageFormatError(file.path, `parent locator ${l.code} claims ${l.dataLength} bytes`)
    const data = await file.readStruct(l.dataOffset, l.dataLength, `parent locator ${l.code}`)
    if (l.code === 'W2ru' || l.code === 'W2ku') out.push(decodeUtf16(data, false))
    else if (l.code === 'MacX') out.push(data.toString('utf8').replace(/\0.*$/s, ''))
    else out.push(data.toString('latin1').replace(/\0.*$/s, ''))
  }
  const name = decodeUtf16(header.parentName, true)
  if (name) out.push(name)
  return out
}

async function openParent(file: ImageFile, header: VhdDynamicHeader, chain: string[]): Promise<VhdImage> {
  const parentPath = await findParent(file.path, await parentPaths(file, header))
  const parent = await VhdImage.open(parentPath, {chainAbove: chain})
  if (!header.parentId.equals(Buffer.alloc(16)) && !parent.uniqueId.equals(header.parentId)) {
    await parent.close()
    throw new ImageFormatError(file.path, `parent ${parentPath} is not the image this differencing disk was made from (unique id differs)`)
  }
  return parent
}
