// Writes VirtualBox VDI 1.1 images with 1 MiB blocks (the only block size
// qemu reads): dynamic (blocks appended in the order the ascending writes
// complete them; all-zero blocks stay unallocated), fixed (every block
// mapped to its own slot, the file preallocated as a sparse file), and, for
// tests and tools that build chains, differencing over a parent VDI (link
// UUID = the parent's image UUID; an all-zero block written to it becomes a
// zero block, hiding the parent).
// Steps: 1) plan header and block map (map at 512, data after it, aligned to
// 4 KiB); 2) take blocks through a UnitAssembler into a temporary file;
// 3) close() writes the block map and then the header, fsyncs and renames,
// so a crash never leaves a valid-looking partial image. blocks_allocated
// counts the mapped slots, as `qemu-img check` verifies.
import {randomBytes} from 'node:crypto'
import {UsageError} from '../errors.js'
import {ImageOutput, UnitAssembler} from './image-output.js'
import type {ImageWriter} from './types.js'
import {
  encodeVdiHeader, VDI_BLOCK_SIZE, VDI_HEADER_BYTES, VDI_MAX_BLOCKS, VDI_SECTOR, VDI_TYPE_DIFF, VDI_TYPE_DYNAMIC, VDI_TYPE_FIXED,
  VDI_UNALLOCATED, VDI_ZERO, type VdiHeader,
} from './vdi-header.js'
import {VdiImage} from './vdi-reader.js'

const DATA_ALIGN = 4096

export interface VdiCreateOptions {
  subformat?: string
  /** Makes a differencing VDI over this VDI (tests, tools). */
  parent?: string
}

export class VdiWriter implements ImageWriter {
  readonly format = 'vdi'
  private readonly bmap: Uint32Array
  private readonly units: UnitAssembler
  private nextSlot = 0
  /** Differencing: the block being assembled over the parent's bytes (VDI has no sector bitmap). */
  private current?: {index: number; data: Buffer}

  private constructor(
    private readonly out: ImageOutput,
    private readonly header: VdiHeader,
    private readonly virtualSize: number,
    private readonly parent?: VdiImage,
  ) {
    this.bmap = new Uint32Array(header.blocks).fill(VDI_UNALLOCATED)
    if (header.imageType === VDI_TYPE_FIXED) this.bmap.forEach((_, i, a) => (a[i] = i))
    this.units = new UnitAssembler(out.path, VDI_BLOCK_SIZE, virtualSize, (i, d) => this.block(i, d))
  }

  static async create(path: string, virtualSize: number, options: VdiCreateOptions = {}): Promise<VdiWriter> {
    const sub = options.parent ? 'differencing' : (options.subformat ?? 'dynamic')
    if (!options.parent && sub !== 'dynamic' && sub !== 'fixed') throw new UsageError(`VDI subformat "${sub}" is not one of dynamic, fixed`)
    if (!Number.isSafeInteger(virtualSize) || virtualSize < 0) throw new UsageError(`virtual size ${virtualSize} is invalid`)
    const diskSize = Math.ceil(virtualSize / VDI_SECTOR) * VDI_SECTOR
    const blocks = Math.ceil(diskSize / VDI_BLOCK_SIZE)
    if (blocks > VDI_MAX_BLOCKS) throw new UsageError(`a VDI with 1 MiB blocks holds at most ${VDI_MAX_BLOCKS} MiB, not ${virtualSize} bytes`)
    const offsetData = Math.ceil((VDI_HEADER_BYTES + blocks * 4) / DATA_ALIGN) * DATA_ALIGN
    const header: VdiHeader = {
      imageType: sub === 'fixed' ? VDI_TYPE_FIXED : sub === 'dynamic' ? VDI_TYPE_DYNAMIC : VDI_TYPE_DIFF,
      flags: 0,
      offsetBmap: VDI_HEADER_BYTES,
      offsetData,
      diskSize,
      blockSize: VDI_BLOCK_SIZE,
      blocks,
      blocksAllocated: 0,
      uuidImage: randomBytes(16),
      uuidModify: randomBytes(16),
      uuidLink: Buffer.alloc(16),
      uuidParent: Buffer.alloc(16),
    }
    let parent: VdiImage | undefined
    if (options.parent) {
      parent = await VdiImage.open(options.parent)
      header.uuidLink = Buffer.from(parent.header.uuidImage)
      header.uuidParent = Buffer.from(parent.header.uuidModify)
    }
    return new VdiWriter(await ImageOutput.create(path, offsetData), header, virtualSize, parent)
  }

  write(offset: number, data: Buffer): Promise<void> {
    return this.parent ? this.writeOverParent(offset, data) : this.units.write(offset, data)
  }

  /** Differencing: a touched block starts as the parent's bytes, then takes the writes. */
  private async writeOverParent(offset: number, data: Buffer): Promise<void> {
    const parent = this.parent!
    if (offset + data.length > this.virtualSize) throw new UsageError(`VDI writer: write at ${offset} runs past the virtual size`)
    for (let pos = 0; pos < data.length; ) {
      const index = Math.floor((offset + pos) / VDI_BLOCK_SIZE)
      if (this.current?.index !== index) {
        if (this.current && this.current.index > index) throw new UsageError(`VDI writer: write at ${offset} is not in ascending order`)
        await this.flushCurrent()
        const block = Buffer.alloc(VDI_BLOCK_SIZE)
        const start = index * VDI_BLOCK_SIZE
        const n = Math.max(0, Math.min(VDI_BLOCK_SIZE, parent.virtualSize - start))
        if (n > 0) await parent.read(block, start, n)
        this.current = {index, data: block}
      }
      const inBlock = offset + pos - index * VDI_BLOCK_SIZE
      const n = Math.min(data.length - pos, VDI_BLOCK_SIZE - inBlock)
      data.copy(this.current.data, inBlock, pos, pos + n)
      pos += n
    }
  }

  private async flushCurrent(): Promise<void> {
    if (!this.current) return
    const {index, data} = this.current
    this.current = undefined
    await this.block(index, data)
  }

  private async block(index: number, data: Buffer): Promise<void> {
    const h = this.header
    if (h.imageType === VDI_TYPE_FIXED) {
      if (!isZero(data)) await this.out.writeAt(data, h.offsetData + index * VDI_BLOCK_SIZE)
      return
    }
    if (isZero(data)) {
      if (h.imageType === VDI_TYPE_DIFF) this.bmap[index] = VDI_ZERO
      return
    }
    await this.out.append(data)
    this.bmap[index] = this.nextSlot++
  }

  async close(): Promise<void> {
    const h = this.header
    try {
      await this.units.flush()
      await this.flushCurrent()
      await this.parent?.close()
      await this.out.flush()
      const fixed = h.imageType === VDI_TYPE_FIXED
      h.blocksAllocated = fixed ? h.blocks : this.nextSlot
      const map = Buffer.alloc(h.offsetData - h.offsetBmap)
      this.bmap.forEach((v, i) => map.writeUInt32LE(v, i * 4))
      await this.out.writeAt(map, h.offsetBmap)
      await this.out.writeAt(encodeVdiHeader(h), 0)
      await this.out.finish(h.offsetData + (fixed ? h.blocks : this.nextSlot) * VDI_BLOCK_SIZE)
    } catch (e) {
      await this.out.abort()
      throw e
    }
  }

  async abort(): Promise<void> {
    await this.parent?.close().catch(() => undefined)
    await this.out.abort()
  }
}

const ZERO_BLOCK = Buffer.alloc(VDI_BLOCK_SIZE)

function isZero(data: Buffer): boolean {
  return data.length === VDI_BLOCK_SIZE ? data.equals(ZERO_BLOCK) : data.every((b) => b === 0)
}
