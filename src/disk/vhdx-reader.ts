// Reads VHDX images: fixed, dynamic and differencing, any block size
// (1–256 MiB) and logical sector size (512 or 4096). Opening:
//  1. check the file identifier, take the valid header (CRC-32C) with the
//     highest sequence number;
//  2. replay a non-empty log in memory (vhdx-log.ts);
//  3. read the region table (first valid copy), then the metadata items and
//     the BAT, checking every size against the virtual size;
//  4. for a differencing disk, find and open the parent (backing-chain.ts)
//     and check its DataWriteGuid against parent_linkage.
// BAT layout: after every `chunkRatio` payload entries comes one sector
// bitmap entry; a sector bitmap block (1 MiB) holds one bit per logical
// sector (LSB first) for the chunk's payload blocks.
import {ImageFormatError} from '../errors.js'
import {ImageFile} from './image-file.js'
import {type MappedRun, type MappedUnit, pushDataRanges, pushRange, readMapped, setUnit, UNIT_DATA, UNIT_UNALLOCATED, UNIT_ZERO, type UnitMap} from './mapped-read.js'
import {LruCache} from './lru-cache.js'
import {MAX_CACHED_BITMAPS, PagedTable, bitRun} from './paged-table.js'
import {chainAllocatedRanges, enterChain, findParent, layeredInfo, type ChainOpenOptions} from './backing-chain.js'
import type {DiskImage, ImageInfo, Range} from './types.js'
import {replayLog} from './vhdx-log.js'
import {readVhdxLayout, type VhdxLayout} from './vhdx-layout.js'
import {
  BLOCK_FULLY_PRESENT, BLOCK_NOT_PRESENT, BLOCK_PARTIALLY_PRESENT, BLOCK_UNDEFINED, BLOCK_UNMAPPED, BLOCK_ZERO, MIB, SB_BLOCK_PRESENT,
  decodeBatEntry,
} from './vhdx-structures.js'

export class VhdxImage implements DiskImage, UnitMap {
  readonly format = 'vhdx'
  readonly virtualSize: number
  private readonly bitmaps = new LruCache<number, Buffer>(MAX_CACHED_BITMAPS)

  private constructor(
    readonly path: string,
    private readonly file: ImageFile,
    private readonly layout: VhdxLayout,
    private readonly bat: PagedTable,
    readonly parent: VhdxImage | undefined,
  ) {
    this.virtualSize = layout.virtualSize
  }

  get identity(): string | undefined {
    return this.layout.virtualDiskId ? `vhdx:${this.layout.virtualDiskId}` : undefined
  }

  static async open(path: string, options: ChainOpenOptions = {}): Promise<VhdxImage> {
    const chain = await enterChain(path, options)
    const file = await ImageFile.open(path)
    try {
      const layout = await readVhdxLayout(file, (header) => replayLog(file, header))
      const bat = new PagedTable(file, layout.batOffset, layout.batEntries, 8, decodeBatEntry, 'VHDX BAT')
      let parent: VhdxImage | undefined
      if (layout.parentLocator) {
        const loc = layout.parentLocator
        const stored = ['relative_path', 'absolute_win32_path', 'volume_path'].map((k) => loc.get(k) ?? '').filter((s) => s)
        const parentPath = await findParent(path, stored.map((s) => s.replace(/^\\\\\?\\Volume\{[^}]*\}/i, '')))
        parent = await VhdxImage.open(parentPath, {chainAbove: chain})
        const links = [loc.get('parent_linkage'), loc.get('parent_linkage2')].map((g) => g?.replace(/[{}]/g, '').toLowerCase())
        if (!links.includes(parent.dataWriteGuid)) {
          await parent.close()
          throw new ImageFormatError(path, `parent ${parentPath} is not the image this differencing disk was made from (parent_linkage ${links[0]} != DataWriteGuid ${parent.dataWriteGuid})`)
        }
      }
      return new VhdxImage(path, file, layout, bat, parent)
    } catch (e) {
      await file.close()
      throw e
    }
  }

  /** The header's DataWriteGuid, which a child's parent_linkage names. */
  get dataWriteGuid(): string {
    return this.layout.header.dataWriteGuid
  }

  private async blockState(index: number): Promise<{state: number; fileOffset: number}> {
    const l = this.layout
    const entry = await this.bat.get(index + Math.floor(index / l.chunkRatio))
    return {state: entry % 8, fileOffset: Math.floor(entry / 8) * MIB}
  }

  async lookupUnit(offset: number, u: MappedUnit, wanted: number): Promise<void> {
    const l = this.layout
    const index = Math.floor(offset / l.blockSize)
    const inBlock = offset - index * l.blockSize
    const avail = Math.min(wanted, l.blockSize - inBlock)
    const {state, fileOffset} = await this.blockState(index)
    const used = Math.min(l.blockSize, this.virtualSize - index * l.blockSize)
    switch (state) {
      case BLOCK_NOT_PRESENT:
      case BLOCK_UNDEFINED:
        return setUnit(u, UNIT_UNALLOCATED, avail)
      case BLOCK_ZERO:
      case BLOCK_UNMAPPED:
        return setUnit(u, UNIT_ZERO, avail)
      case BLOCK_FULLY_PRESENT:
        this.checkBlock(index, fileOffset, used)
        return setUnit(u, UNIT_DATA, avail, fileOffset + inBlock)
      case BLOCK_PARTIALLY_PRESENT: {
        if (!this.parent) throw new ImageFormatError(this.path, `block ${index} is partially present in a VHDX without a parent`)
        this.checkBlock(index, fileOffset, used)
        const bitmap = await this.bitmap(index)
        const ss = l.logicalSectorSize
        const sector = Math.floor(inBlock / ss)
        const run = bitRun(bitmap, sector, Math.ceil((inBlock + avail) / ss) - sector, false)
        const length = Math.min((sector + run.count) * ss, inBlock + avail) - inBlock
        return setUnit(u, run.set ? UNIT_DATA : UNIT_UNALLOCATED, length, fileOffset + inBlock)
      }
      default:
        throw new ImageFormatError(this.path, `BAT entry of block ${index} has invalid state ${state}`)
    }
  }

  async readRun(buf: Buffer, r: MappedRun): Promise<void> {
    await this.file.readInto(buf, r.at, r.len, r.host, 'image data')
  }

  private checkBlock(index: number, fileOffset: number, used: number): void {
    if (fileOffset < MIB) throw new ImageFormatError(this.path, `BAT entry of block ${index} points into the file header area`)
    this.file.checkSpan(fileOffset, used, `payload block ${index}`)
  }

  /** This block's slice of its chunk's sector bitmap block. */
  private bitmap(index: number): Promise<Buffer> {
    const l = this.layout
    return this.bitmaps.getOrLoad(index, async () => {
      const chunk = Math.floor(index / l.chunkRatio)
      const entry = await this.bat.get(chunk * (l.chunkRatio + 1) + l.chunkRatio)
      if (entry % 8 !== SB_BLOCK_PRESENT) throw new ImageFormatError(this.path, `sector bitmap of chunk ${chunk} is missing for partially present block ${index}`)
      const bytes = l.blockSize / l.logicalSectorSize / 8
      const at = Math.floor(entry / 8) * MIB + (index % l.chunkRatio) * bytes
      return this.file.readStruct(at, bytes, `sector bitmap of block ${index}`)
    })
  }

  read(buf: Buffer, offset: number, length = buf.length): Promise<number> {
    return readMapped(this, buf, offset, length)
  }

  /** Ranges this file decides itself; `exact` refines partial blocks and counts zeroed blocks of a child. */
  private async ownRanges(exact: boolean): Promise<Range[]> {
    const l = this.layout
    const out: Range[] = []
    for (let i = 0; i < l.dataBlocks; i++) {
      const start = i * l.blockSize
      const len = Math.min(l.blockSize, this.virtualSize - start)
      const {state, fileOffset} = await this.blockState(i)
      // Checked here too, so `info` and the allocation map refuse a BAT entry past EOF, not only reads.
      if (state === BLOCK_FULLY_PRESENT || state === BLOCK_PARTIALLY_PRESENT) this.checkBlock(i, fileOffset, len)
      if (state === BLOCK_FULLY_PRESENT || (state === BLOCK_PARTIALLY_PRESENT && !exact)) pushRange(out, start, len)
      else if (exact && (state === BLOCK_ZERO || state === BLOCK_UNMAPPED)) pushRange(out, start, len)
      else if (state === BLOCK_PARTIALLY_PRESENT) {
        await pushDataRanges(this, out, start, len)
      }
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
      subformat: this.parent ? 'differencing' : this.layout.leaveBlocksAllocated ? 'fixed' : 'dynamic',
      clusterSize: this.layout.blockSize,
      logicalSectorSize: this.layout.logicalSectorSize,
      fileSize: this.file.physicalSize,
    })
  }

  async close(): Promise<void> {
    await this.parent?.close()
    await this.file.close()
  }
}
