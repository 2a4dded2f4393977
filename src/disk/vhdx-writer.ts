// Writes VHDX images: dynamic (default), fixed, and differencing (for
// tests and chain-building tools; qemu cannot create those).
// Layout (all 1 MiB aligned): identifier + headers + region tables | log
// (1 MiB, empty) | metadata (1 MiB) | BAT | payload blocks.
// Steps: 1) the virtual size is rounded up to the logical sector size (the
// spec requires it; the extra bytes read as zero); 2) blocks are allocated in
// the order writes arrive (ascending) and written in place; a differencing
// child records written sectors in the chunk's sector bitmap block;
// 3) close() writes the BAT, metadata, region tables and both headers, sets
// the file length to cover the last block, and fsyncs. Unwritten blocks stay
// NOT_PRESENT; abort() unlinks the partial file.
import {open, unlink, type FileHandle} from 'node:fs/promises'
import {randomUUID} from 'node:crypto'
import {dirname, relative, resolve} from 'node:path'
import {UsageError, toVdsnapError} from '../errors.js'
import {writeAt} from './image-output.js'
import type {CreateOptions, ImageWriter} from './types.js'
import {MAX_VIRTUAL_SIZE} from './vhdx-layout.js'
import {VhdxImage} from './vhdx-reader.js'
import {
  BLOCK_FULLY_PRESENT, BLOCK_PARTIALLY_PRESENT, FILE_SIGNATURE, GUID_BAT, GUID_FILE_PARAMETERS, GUID_LOGICAL_SECTOR, GUID_METADATA,
  GUID_PARENT_LOCATOR, GUID_PHYSICAL_SECTOR, GUID_VIRTUAL_DISK_ID, GUID_VIRTUAL_DISK_SIZE, HEADER_OFFSETS, MIB, META_IS_REQUIRED,
  META_IS_VIRTUAL_DISK, REGION_TABLE_OFFSETS, SB_BLOCK_PRESENT, ZERO_GUID, encodeBatEntry, encodeHeader, encodeMetadataTable,
  encodeParentLocator, encodeRegionTable, writeGuid, type MetadataEntry,
} from './vhdx-structures.js'

const LOG_OFFSET = MIB
const LOG_LENGTH = MIB
const METADATA_OFFSET = 2 * MIB
const METADATA_LENGTH = MIB
const BAT_OFFSET = 3 * MIB
const METADATA_ITEMS_START = 64 * 1024
const SMALL_DISK = 1024 ** 3
const MAX_DATA_BLOCKS = 2 ** 22

export interface VhdxCreateOptions extends CreateOptions {
  blockSize?: number
  logicalSectorSize?: 512 | 4096
  /** Makes a differencing disk over this VHDX. */
  parent?: string
  /** Overrides the parent paths stored in the locator (tests). */
  parentPaths?: {relative?: string; absolute?: string; volume?: string}
}

interface Geometry {
  virtualSize: number
  blockSize: number
  sectorSize: number
  chunkRatio: number
  dataBlocks: number
  batEntries: number
  dataStart: number
}

function geometry(virtualSize: number, options: VhdxCreateOptions, differencing: boolean): Geometry {
  const sectorSize = options.logicalSectorSize ?? 512
  const size = Math.ceil(virtualSize / sectorSize) * sectorSize
  if (size > MAX_VIRTUAL_SIZE) throw new UsageError(`a VHDX holds at most 64 TiB, not ${virtualSize} bytes`)
  let blockSize = options.blockSize ?? (size <= SMALL_DISK ? MIB : 32 * MIB)
  while (Math.ceil(size / blockSize) > MAX_DATA_BLOCKS && blockSize < 256 * MIB) blockSize *= 2
  const chunkRatio = (2 ** 23 * sectorSize) / blockSize
  const dataBlocks = Math.ceil(size / blockSize)
  const batEntries = differencing ? Math.ceil(dataBlocks / chunkRatio) * (chunkRatio + 1) : dataBlocks + Math.max(0, Math.floor((dataBlocks - 1) / chunkRatio))
  const dataStart = BAT_OFFSET + Math.ceil((batEntries * 8) / MIB) * MIB
  return {virtualSize: size, blockSize, sectorSize, chunkRatio, dataBlocks, batEntries, dataStart}
}

export async function createVhdxWriter(path: string, virtualSize: number, options: VhdxCreateOptions = {}): Promise<ImageWriter> {
  const sub = options.parent ? 'differencing' : (options.subformat ?? 'dynamic')
  // A differencing disk needs its parent (options.parent): it cannot be asked for by subformat alone.
  if (!options.parent && !['dynamic', 'fixed'].includes(sub)) throw new UsageError(`VHDX subformat "${sub}" is not one of dynamic, fixed`)
  const g = geometry(virtualSize, options, sub === 'differencing')
  let locator: Buffer | undefined
  if (options.parent) {
    const parent = await VhdxImage.open(options.parent)
    const linkage = `{${parent.dataWriteGuid}}`
    await parent.close()
    const abs = resolve(options.parent)
    const p = options.parentPaths ?? {relative: `.\\${relative(dirname(resolve(path)), abs).replace(/\//g, '\\')}`, absolute: abs}
    const pairs: [string, string][] = [['parent_linkage', linkage]]
    if (p.relative) pairs.push(['relative_path', p.relative])
    if (p.volume) pairs.push(['volume_path', p.volume])
    if (p.absolute) pairs.push(['absolute_win32_path', p.absolute])
    locator = encodeParentLocator(pairs)
  }
  let fh: FileHandle
  try {
    fh = await open(path, 'w')
  } catch (e) {
    throw toVdsnapError(e, `creating ${path}`)
  }
  return new VhdxWriter(path, fh, g, sub === 'fixed', locator)
}

class VhdxWriter implements ImageWriter {
  readonly format = 'vhdx'
  /** BAT entries as offsetMiB * 8 + state; 0 is NOT_PRESENT. */
  private readonly bat: Float64Array
  private written = 0
  private nextFree: number
  private current?: {index: number; start: number; bits?: Uint8Array}

  constructor(
    private readonly path: string,
    private readonly fh: FileHandle,
    private readonly g: Geometry,
    private readonly fixed: boolean,
    private readonly locator: Buffer | undefined,
  ) {
    this.bat = new Float64Array(g.batEntries)
    this.nextFree = g.dataStart
    if (fixed) {
      for (let i = 0; i < g.dataBlocks; i++) this.bat[this.batIndex(i)] = ((g.dataStart + i * g.blockSize) / MIB) * 8 + BLOCK_FULLY_PRESENT
      this.nextFree = g.dataStart + g.dataBlocks * g.blockSize
    }
  }

  private batIndex(block: number): number {
    return block + Math.floor(block / this.g.chunkRatio)
  }

  async write(offset: number, data: Buffer): Promise<void> {
    const g = this.g
    if (offset < this.written || offset + data.length > g.virtualSize) {
      throw new UsageError(`VHDX writer: write of ${data.length} bytes at ${offset} is out of order or past the end`)
    }
    this.written = offset + data.length
    if (this.fixed) return this.pwrite(data, g.dataStart + offset)
    for (let pos = 0; pos < data.length; ) {
      const index = Math.floor((offset + pos) / g.blockSize)
      const inBlock = offset + pos - index * g.blockSize
      const n = Math.min(data.length - pos, g.blockSize - inBlock)
      const block = await this.block(index)
      if (block.bits) for (let s = Math.floor(inBlock / g.sectorSize); s < Math.ceil((inBlock + n) / g.sectorSize); s++) block.bits[s >> 3]! |= 1 << (s & 7)
      await this.pwrite(data.subarray(pos, pos + n), block.start + inBlock)
      pos += n
    }
  }

  private async block(index: number): Promise<{index: number; start: number; bits?: Uint8Array}> {
    if (this.current?.index === index) return this.current
    await this.finishBlock()
    const start = this.nextFree
    this.nextFree += this.g.blockSize
    this.bat[this.batIndex(index)] = (start / MIB) * 8 + BLOCK_FULLY_PRESENT
    this.current = {index, start, bits: this.locator ? new Uint8Array(this.g.blockSize / this.g.sectorSize / 8) : undefined}
    return this.current
  }

  /** A child's block becomes PARTIALLY_PRESENT, with its bits in the chunk's sector bitmap block, unless every sector was written. */
  private async finishBlock(): Promise<void> {
    const cur = this.current
    if (!cur?.bits) return
    const g = this.g
    const sectors = Math.ceil(Math.min(g.blockSize, g.virtualSize - cur.index * g.blockSize) / g.sectorSize)
    let full = true
    for (let s = 0; s < sectors && full; s++) full = (cur.bits[s >> 3]! & (1 << (s & 7))) !== 0
    if (full) return
    const chunk = Math.floor(cur.index / g.chunkRatio)
    const sbIndex = chunk * (g.chunkRatio + 1) + g.chunkRatio
    if (!this.bat[sbIndex]) {
      this.bat[sbIndex] = (this.nextFree / MIB) * 8 + SB_BLOCK_PRESENT
      this.nextFree += MIB
    }
    const sbStart = Math.floor(this.bat[sbIndex]! / 8) * MIB
    await this.pwrite(Buffer.from(cur.bits), sbStart + (cur.index % g.chunkRatio) * cur.bits.length)
    this.bat[this.batIndex(cur.index)] = (cur.start / MIB) * 8 + BLOCK_PARTIALLY_PRESENT
  }

  private pwrite(buf: Buffer, pos: number): Promise<void> {
    return writeAt(this.fh, this.path, buf, pos)
  }

  async close(): Promise<void> {
    await this.finishBlock()
    const g = this.g
    for (let first = 0; first < g.batEntries; first += MIB / 8) {
      const n = Math.min(MIB / 8, g.batEntries - first)
      const page = Buffer.alloc(n * 8)
      for (let i = 0; i < n; i++) {
        const v = this.bat[first + i]!
        if (v) encodeBatEntry(page, i * 8, v % 8, Math.floor(v / 8) * MIB)
      }
      await this.pwrite(page, BAT_OFFSET + first * 8)
    }
    await this.pwrite(this.metadata(), METADATA_OFFSET)
    const regions = encodeRegionTable([
      {guid: GUID_BAT, offset: BAT_OFFSET, length: g.dataStart - BAT_OFFSET, required: true},
      {guid: GUID_METADATA, offset: METADATA_OFFSET, length: METADATA_LENGTH, required: true},
    ])
    for (const off of REGION_TABLE_OFFSETS) await this.pwrite(regions, off)
    const ident = Buffer.alloc(520)
    ident.write(FILE_SIGNATURE, 0, 'latin1')
    ident.write('vdsnap', 8, 'utf16le')
    await this.pwrite(ident, 0)
    const header = {fileWriteGuid: randomUUID(), dataWriteGuid: randomUUID(), logGuid: ZERO_GUID, logLength: LOG_LENGTH, logOffset: LOG_OFFSET}
    for (const [i, off] of HEADER_OFFSETS.entries()) await this.pwrite(encodeHeader({...header, sequence: i + 1}), off)
    try {
      await this.fh.truncate(Math.max(this.nextFree, g.dataStart))
      await this.fh.sync()
    } catch (e) {
      throw toVdsnapError(e, `finishing ${this.path}`)
    } finally {
      await this.fh.close()
    }
  }

  private metadata(): Buffer {
    const g = this.g
    const region = Buffer.alloc(METADATA_LENGTH)
    const items: [string, Buffer, number][] = []
    const params = Buffer.alloc(8)
    params.writeUInt32LE(g.blockSize, 0)
    params.writeUInt32LE((this.fixed ? 1 : 0) | (this.locator ? 2 : 0), 4)
    items.push([GUID_FILE_PARAMETERS, params, META_IS_REQUIRED])
    const size = Buffer.alloc(8)
    size.writeBigUInt64LE(BigInt(g.virtualSize))
    const diskId = Buffer.alloc(16)
    writeGuid(diskId, 0, randomUUID())
    const sector = (n: number) => Buffer.from(Uint32Array.of(n).buffer)
    const vd = META_IS_REQUIRED | META_IS_VIRTUAL_DISK
    items.push([GUID_VIRTUAL_DISK_SIZE, size, vd], [GUID_VIRTUAL_DISK_ID, diskId, vd], [GUID_LOGICAL_SECTOR, sector(g.sectorSize), vd], [GUID_PHYSICAL_SECTOR, sector(4096), vd])
    if (this.locator) items.push([GUID_PARENT_LOCATOR, this.locator, META_IS_REQUIRED])
    const entries: MetadataEntry[] = []
    let pos = METADATA_ITEMS_START
    for (const [guid, data, flags] of items) {
      data.copy(region, pos)
      entries.push({guid, offset: pos, length: data.length, flags})
      pos += Math.ceil(data.length / 8) * 8
    }
    encodeMetadataTable(entries).copy(region, 0)
    return region
  }

  async abort(): Promise<void> {
    await this.fh.close().catch(() => undefined)
    await unlink(this.path).catch(() => undefined)
  }
}
