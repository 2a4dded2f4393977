// Writes VHD images: fixed (guest bytes then footer) or dynamic (footer
// copy, header, BAT, [locators], blocks, footer), plus differencing for
// tests and tools that build chains (qemu cannot create those).
// Steps: 1) the footer keeps the exact size (a size that is not a whole
// number of sectors is rounded up to one) with a geometry that makes qemu
// and Hyper-V read that size back (see vhdGeometry); 2) blocks are appended in the
// order writes arrive (ascending), each with a bitmap whose bits are set
// exactly for the sectors written; 3) close() writes BAT, header and both
// footers, then fsyncs. Unwritten blocks stay unallocated; abort() unlinks.
import {open, unlink, type FileHandle} from 'node:fs/promises'
import {basename, relative, dirname, resolve} from 'node:path'
import {randomBytes} from 'node:crypto'
import {UsageError, toVdsnapError} from '../errors.js'
import {writeAt} from './image-output.js'
import type {CreateOptions, ImageWriter} from './types.js'
import {
  DISK_DIFFERENCING, DISK_DYNAMIC, DISK_FIXED, DYN_HEADER_SIZE, FOOTER_SIZE, MAX_VHD_BYTES, SECTOR, UNALLOCATED,
  encodeDynamicHeader, encodeFooter, vhdGeometry, type EncodedLocator, type VhdFooter,
} from './vhd-footer.js'
import {VhdImage} from './vhd-reader.js'

export const DEFAULT_VHD_BLOCK_SIZE = 2 * 1024 * 1024
const CREATOR_APP = 'vdsn'
const VHD_EPOCH_MS = Date.UTC(2000, 0, 1)

export interface VhdCreateOptions extends CreateOptions {
  /** Makes a differencing disk over this VHD (the virtual size should be the parent's). */
  parent?: string
  /** Which parent locators to write (default W2ru and W2ku). */
  locators?: ('W2ru' | 'W2ku' | 'MacX')[]
  blockSize?: number
  now?: () => number
}

interface Layout {
  blockSize: number
  bitmapSize: number
  bat: Uint32Array
  dataStart: number
  locators: {loc: EncodedLocator; data: Buffer}[]
  parentId: Buffer
  parentName: Buffer
}

export async function createVhdWriter(path: string, virtualSize: number, options: VhdCreateOptions = {}): Promise<ImageWriter> {
  const sub = options.parent ? 'differencing' : (options.subformat ?? 'dynamic')
  // A differencing disk needs its parent (options.parent): it cannot be asked for by subformat alone.
  if (!options.parent && !['dynamic', 'fixed'].includes(sub)) throw new UsageError(`VHD subformat "${sub}" is not one of dynamic, fixed`)
  const geo = vhdGeometry(virtualSize)
  if (geo.size > MAX_VHD_BYTES) throw new UsageError(`a VHD holds at most 2040 GiB, not ${virtualSize} bytes`, {hint: 'use the vhdx format'})
  const layout = sub === 'fixed' ? undefined : await planDynamic(path, geo.size, options)
  let fh: FileHandle
  try {
    fh = await open(path, 'w')
  } catch (e) {
    throw toVdsnapError(e, `creating ${path}`)
  }
  const footer: VhdFooter = {
    dataOffset: layout ? FOOTER_SIZE : undefined,
    creatorApp: CREATOR_APP,
    currentSize: geo.size,
    cylinders: geo.cylinders,
    heads: geo.heads,
    sectorsPerTrack: geo.sectorsPerTrack,
    diskType: sub === 'fixed' ? DISK_FIXED : sub === 'dynamic' ? DISK_DYNAMIC : DISK_DIFFERENCING,
    uniqueId: randomBytes(16),
  }
  const now = options.now ?? Date.now
  return new VhdWriter(path, fh, footer, layout, Math.floor((now() - VHD_EPOCH_MS) / 1000))
}

async function planDynamic(path: string, size: number, options: VhdCreateOptions): Promise<Layout> {
  const blockSize = options.blockSize ?? DEFAULT_VHD_BLOCK_SIZE
  const entries = Math.ceil(size / blockSize)
  const batBytes = Math.ceil((entries * 4) / SECTOR) * SECTOR
  let pos = FOOTER_SIZE + DYN_HEADER_SIZE + batBytes
  const locators: Layout['locators'] = []
  let parentId = Buffer.alloc(16)
  let parentName = Buffer.alloc(0)
  if (options.parent) {
    const parent = await VhdImage.open(options.parent)
    parentId = Buffer.from(parent.uniqueId)
    await parent.close()
    const abs = resolve(options.parent)
    const rel = relative(dirname(resolve(path)), abs).replace(/\//g, '\\')
    parentName = Buffer.from(basename(abs), 'utf16le').swap16()
    for (const code of options.locators ?? ['W2ru', 'W2ku']) {
      const data = code === 'W2ru' ? Buffer.from(`.\\${rel}`, 'utf16le') : code === 'W2ku' ? Buffer.from(abs, 'utf16le') : Buffer.from(`file://localhost${abs}`, 'utf8')
      const space = Math.ceil(data.length / SECTOR) * SECTOR
      locators.push({loc: {code: code === 'MacX' ? 'MacX' : code, space, dataLength: data.length, dataOffset: pos}, data})
      pos += space
    }
  }
  const bitmapSize = Math.ceil(blockSize / SECTOR / 8 / SECTOR) * SECTOR
  return {blockSize, bitmapSize, bat: new Uint32Array(entries).fill(UNALLOCATED), dataStart: pos, locators, parentId, parentName}
}

class VhdWriter implements ImageWriter {
  readonly format = 'vhd'
  private written = 0
  private nextFree: number
  private current?: {index: number; start: number; bitmap: Buffer}

  constructor(
    private readonly path: string,
    private readonly fh: FileHandle,
    private readonly footer: VhdFooter,
    private readonly layout: Layout | undefined,
    private readonly timestamp: number,
  ) {
    this.nextFree = layout?.dataStart ?? footer.currentSize
  }

  async write(offset: number, data: Buffer): Promise<void> {
    if (offset < this.written || offset + data.length > this.footer.currentSize) {
      throw new UsageError(`VHD writer: write of ${data.length} bytes at ${offset} is out of order or past the end`)
    }
    this.written = offset + data.length
    const l = this.layout
    if (!l) return this.pwrite(data, offset)
    for (let pos = 0; pos < data.length; ) {
      const at = offset + pos
      const index = Math.floor(at / l.blockSize)
      const inBlock = at - index * l.blockSize
      const n = Math.min(data.length - pos, l.blockSize - inBlock)
      const block = await this.block(index)
      for (let s = Math.floor(inBlock / SECTOR); s < Math.ceil((inBlock + n) / SECTOR); s++) block.bitmap[s >> 3]! |= 0x80 >> (s & 7)
      await this.pwrite(data.subarray(pos, pos + n), block.start + l.bitmapSize + inBlock)
      pos += n
    }
  }

  private async block(index: number): Promise<{index: number; start: number; bitmap: Buffer}> {
    if (this.current?.index === index) return this.current
    const l = this.layout!
    await this.flushBitmap()
    const start = this.nextFree
    l.bat[index] = start / SECTOR
    this.nextFree += l.bitmapSize + l.blockSize
    this.current = {index, start, bitmap: Buffer.alloc(l.bitmapSize)}
    return this.current
  }

  private async flushBitmap(): Promise<void> {
    if (this.current) await this.pwrite(this.current.bitmap, this.current.start)
  }

  private pwrite(buf: Buffer, pos: number): Promise<void> {
    return writeAt(this.fh, this.path, buf, pos)
  }

  async close(): Promise<void> {
    const footer = encodeFooter(this.footer, this.timestamp)
    const l = this.layout
    if (l) {
      await this.flushBitmap()
      const bat = Buffer.alloc(Math.ceil((l.bat.length * 4) / SECTOR) * SECTOR, 0xff)
      l.bat.forEach((v, i) => bat.writeUInt32BE(v, i * 4))
      await this.pwrite(bat, FOOTER_SIZE + DYN_HEADER_SIZE)
      for (const {loc, data} of l.locators) await this.pwrite(data, loc.dataOffset)
      const header = encodeDynamicHeader({
        tableOffset: FOOTER_SIZE + DYN_HEADER_SIZE, maxTableEntries: l.bat.length, blockSize: l.blockSize,
        parentId: l.parentId, parentName: l.parentName, parentTime: 0, locators: l.locators.map((x) => x.loc),
      })
      await this.pwrite(footer, 0)
      await this.pwrite(header, FOOTER_SIZE)
    }
    await this.pwrite(footer, this.nextFree)
    try {
      await this.fh.sync()
    } finally {
      await this.fh.close()
    }
  }

  async abort(): Promise<void> {
    await this.fh.close().catch(() => undefined)
    await unlink(this.path).catch(() => undefined)
  }
}
