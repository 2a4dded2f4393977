// VMDK writer for hosted sparse extents: monolithicSparse (default) and
// streamOptimized, one self-contained file each with the descriptor
// embedded at sector 1.
//
// monolithicSparse layout: header | descriptor | GD | all GTs | grains.
//   Grains are appended as the ascending writes complete them; a GT is
//   written to its preallocated slot once the writes move past its range,
//   so one GT is held in memory. GTs never written stay holes (all zero:
//   unallocated). close() writes the GD, the descriptor and the header.
// streamOptimized layout: header (GD_AT_END) | descriptor | grains, each a
//   12-byte marker (lba, size) + zlib data padded to a sector | after each
//   GT's last grain a GT marker + GT | GD marker + GD | footer marker +
//   footer (the header with the real GD offset) | end-of-stream marker.
// The capacity is the virtual size rounded up to whole sectors.
import {randomBytes} from 'node:crypto'
import {basename} from 'node:path'
import {deflateSync} from 'node:zlib'
import {ImageFormatError, UsageError} from '../errors.js'
import {ImageOutput, UnitAssembler} from './image-output.js'
import {writeU64le} from './image-file.js'
import type {ImageWriter} from './types.js'
import {buildDescriptor, SECTOR} from './vmdk-descriptor.js'
import {
  COMPRESS_DEFLATE,
  FLAG_COMPRESSED,
  FLAG_MARKERS,
  FLAG_VALID_NEWLINE,
  H_CAPACITY,
  H_COMPRESS_ALGORITHM,
  H_DESCRIPTOR_OFFSET,
  H_DESCRIPTOR_SIZE,
  H_FLAGS,
  H_GD_OFFSET,
  H_GRAIN_SIZE,
  H_GTES_PER_GT,
  H_NEWLINE_CHARS,
  H_OVERHEAD,
  H_VERSION,
  HEADER_BYTES,
  MARKER_BYTES,
  SPARSE_MAGIC,
} from './vmdk-sparse.js'

const GRAIN_SECTORS = 128
const GRAIN_BYTES = GRAIN_SECTORS * SECTOR
const GTES = 512
const GT_BYTES = GTES * 4
const DESCRIPTOR_SECTOR = 1
const DESCRIPTOR_SECTORS = 20
const STREAM_OVERHEAD_SECTORS = 128
const MARKER_EOS = 0
const MARKER_GT = 1
const MARKER_GD = 2
const MARKER_FOOTER = 3
const GD_AT_END = -1

export type VmdkSubformat = 'monolithicSparse' | 'streamOptimized'

export class VmdkWriter implements ImageWriter {
  readonly format = 'vmdk'
  private gt = Buffer.alloc(GT_BYTES)
  private gtIndex = -1
  private readonly gd: Uint32Array
  private readonly units: UnitAssembler
  private readonly stream: boolean
  private readonly gtStart: number

  private constructor(
    private readonly out: ImageOutput,
    private readonly sub: VmdkSubformat,
    private readonly capacity: number,
    dataSize: number,
    private readonly gdSector: number,
    private readonly overhead: number,
  ) {
    this.stream = sub === 'streamOptimized'
    this.gd = new Uint32Array(Math.ceil(Math.ceil(capacity / GRAIN_SECTORS) / GTES))
    this.gtStart = gdSector + Math.ceil((this.gd.length * 4) / SECTOR)
    this.units = new UnitAssembler(out.path, GRAIN_BYTES, dataSize, (i, d) => this.grain(i, d))
  }

  static async create(path: string, virtualSize: number, subformat = 'monolithicSparse'): Promise<VmdkWriter> {
    if (subformat !== 'monolithicSparse' && subformat !== 'streamOptimized') {
      throw new UsageError(`cannot write VMDK subformat "${subformat}"`, {hint: "use monolithicSparse or streamOptimized"})
    }
    if (!Number.isSafeInteger(virtualSize) || virtualSize < 0) throw new ImageFormatError(path, `virtual size ${virtualSize} is invalid`)
    const capacity = Math.ceil(virtualSize / SECTOR)
    const gdEntries = Math.ceil(Math.ceil(capacity / GRAIN_SECTORS) / GTES)
    if (gdEntries * 4 > 2 ** 31) throw new ImageFormatError(path, `virtual size ${virtualSize} is too large for VMDK`)
    const gdSector = DESCRIPTOR_SECTOR + DESCRIPTOR_SECTORS
    const gtEnd = gdSector + Math.ceil((gdEntries * 4) / SECTOR) + gdEntries * (GT_BYTES / SECTOR)
    const overhead = subformat === 'streamOptimized' ? STREAM_OVERHEAD_SECTORS : Math.ceil(gtEnd / GRAIN_SECTORS) * GRAIN_SECTORS
    const out = await ImageOutput.create(path, overhead * SECTOR)
    return new VmdkWriter(out, subformat, capacity, virtualSize, gdSector, overhead)
  }

  write(offset: number, data: Buffer): Promise<void> {
    return this.units.write(offset, data)
  }

  private async grain(index: number, data: Buffer): Promise<void> {
    const gi = Math.floor(index / GTES)
    if (gi !== this.gtIndex) {
      await this.finishGt()
      this.gtIndex = gi
    }
    const sector = this.out.end / SECTOR
    if (this.stream) {
      const z = deflateSync(data)
      const rec = Buffer.alloc(Math.ceil((MARKER_BYTES + z.length) / SECTOR) * SECTOR)
      writeU64le(rec, index * GRAIN_SECTORS, 0)
      rec.writeUInt32LE(z.length, 8)
      z.copy(rec, MARKER_BYTES)
      await this.out.append(rec)
    } else await this.out.append(data)
    this.gt.writeUInt32LE(sector, (index % GTES) * 4)
  }

  private async finishGt(): Promise<void> {
    if (this.gtIndex < 0) return
    if (this.stream) {
      await this.out.append(marker(GT_BYTES / SECTOR, MARKER_GT))
      this.gd[this.gtIndex] = this.out.end / SECTOR
      await this.out.append(this.gt)
    } else {
      await this.out.writeAt(this.gt, (this.gtStart + this.gtIndex * (GT_BYTES / SECTOR)) * SECTOR)
    }
    this.gt = Buffer.alloc(GT_BYTES)
    this.gtIndex = -1
  }

  async close(): Promise<void> {
    try {
      await this.units.flush()
      await this.finishGt()
      const gd = Buffer.alloc(Math.ceil((this.gd.length * 4) / SECTOR) * SECTOR)
      let end: number
      if (this.stream) {
        await this.out.append(marker(gd.length / SECTOR, MARKER_GD))
        const gdSector = this.out.end / SECTOR
        for (let i = 0; i < this.gd.length; i++) gd.writeUInt32LE(this.gd[i]!, i * 4)
        await this.out.append(gd)
        await this.out.append(marker(1, MARKER_FOOTER))
        await this.out.append(this.header(gdSector))
        await this.out.append(marker(0, MARKER_EOS))
        end = this.out.end
        await this.out.writeAt(this.header(GD_AT_END), 0)
      } else {
        for (let i = 0; i < this.gd.length; i++) gd.writeUInt32LE(this.gtStart + i * (GT_BYTES / SECTOR), i * 4)
        await this.out.writeAt(gd, this.gdSector * SECTOR)
        await this.out.writeAt(this.header(this.gdSector), 0)
        end = this.out.end
      }
      await this.out.writeAt(this.descriptor(), DESCRIPTOR_SECTOR * SECTOR)
      await this.out.finish(end)
    } catch (e) {
      await this.out.abort()
      throw e
    }
  }

  private header(gdSector: number): Buffer {
    const h = Buffer.alloc(HEADER_BYTES)
    h.writeUInt32LE(SPARSE_MAGIC, 0)
    h.writeUInt32LE(this.stream ? 3 : 1, H_VERSION)
    h.writeUInt32LE(this.stream ? FLAG_VALID_NEWLINE | FLAG_COMPRESSED | FLAG_MARKERS : FLAG_VALID_NEWLINE, H_FLAGS)
    writeU64le(h, this.capacity, H_CAPACITY)
    writeU64le(h, GRAIN_SECTORS, H_GRAIN_SIZE)
    writeU64le(h, DESCRIPTOR_SECTOR, H_DESCRIPTOR_OFFSET)
    writeU64le(h, DESCRIPTOR_SECTORS, H_DESCRIPTOR_SIZE)
    h.writeUInt32LE(GTES, H_GTES_PER_GT)
    if (gdSector === GD_AT_END) h.fill(0xff, H_GD_OFFSET, H_GD_OFFSET + 8)
    else writeU64le(h, gdSector, H_GD_OFFSET)
    writeU64le(h, this.overhead, H_OVERHEAD)
    Buffer.from('\n \r\n', 'latin1').copy(h, H_NEWLINE_CHARS)
    if (this.stream) h.writeUInt16LE(COMPRESS_DEFLATE, H_COMPRESS_ALGORITHM)
    return h
  }

  private descriptor(): Buffer {
    const text = buildDescriptor({
      cid: randomBytes(4).readUInt32LE(0) || 1,
      createType: this.sub,
      extents: [{sectors: this.capacity, type: 'SPARSE', fileName: basename(this.out.path)}],
      sectors: this.capacity,
    })
    const buf = Buffer.alloc(DESCRIPTOR_SECTORS * SECTOR)
    if (Buffer.byteLength(text) > buf.length) throw new ImageFormatError(this.out.path, 'descriptor does not fit in its sectors')
    buf.write(text, 'utf8')
    return buf
  }

  async abort(): Promise<void> {
    await this.out.abort()
  }
}

/** A metadata marker sector: val (sectors that follow), size 0, type. */
function marker(val: number, type: number): Buffer {
  const m = Buffer.alloc(SECTOR)
  writeU64le(m, val, 0)
  m.writeUInt32LE(type, 12)
  return m
}
