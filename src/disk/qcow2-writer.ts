// qcow2 v3 writer: 64 KiB clusters, 16-bit refcounts, no backing file.
//
// Layout, in the order bytes are produced:
//   1. cluster 0 is the header (written last, so a crash leaves no valid image);
//   2. data clusters are appended as the ascending writes complete them; when
//      the writes move into the next L2 table's range, the finished L2 table
//      is appended too, so only one L2 table is ever held in memory;
//   3. close() appends the L1 table, the refcount table and the refcount
//      blocks, then writes the header.
// Every cluster in the file is referenced exactly once (refcount 1, COPIED
// set in L1/L2), so `qemu-img check` finds neither errors nor leaks. The
// virtual size is rounded up to whole sectors, as qcow2 requires.
import {ImageFormatError} from '../errors.js'
import {ImageOutput, UnitAssembler} from './image-output.js'
import {writeU64be} from './image-file.js'
import {l2Coverage, MAX_L1_BYTES, QCOW2_MAGIC, V3_HEADER_LENGTH} from './qcow2-header.js'
import type {ImageWriter} from './types.js'

const CLUSTER_BITS = 16
const CLUSTER_SIZE = 1 << CLUSTER_BITS
const L2_ENTRIES = CLUSTER_SIZE / 8
const REFCOUNT_ORDER = 4 // 16-bit refcounts
const REFCOUNTS_PER_BLOCK = (CLUSTER_SIZE * 8) / (1 << REFCOUNT_ORDER)
const SECTOR = 512

export class Qcow2Writer implements ImageWriter {
  readonly format = 'qcow2'
  private readonly l1: Buffer
  private l2 = Buffer.alloc(CLUSTER_SIZE)
  private l2Index = -1
  private readonly units: UnitAssembler

  private constructor(
    private readonly out: ImageOutput,
    private readonly virtualSize: number,
    l1Size: number,
    dataSize: number,
  ) {
    this.l1 = Buffer.alloc(l1Size * 8)
    this.units = new UnitAssembler(out.path, CLUSTER_SIZE, dataSize, (i, d) => this.cluster(i, d))
  }

  static async create(path: string, virtualSize: number): Promise<Qcow2Writer> {
    if (!Number.isSafeInteger(virtualSize) || virtualSize < 0) throw new ImageFormatError(path, `virtual size ${virtualSize} is invalid`)
    const rounded = Math.ceil(virtualSize / SECTOR) * SECTOR
    const l1Size = Math.ceil(rounded / l2Coverage(CLUSTER_BITS, false))
    if (l1Size * 8 > MAX_L1_BYTES) throw new ImageFormatError(path, `virtual size ${virtualSize} is too large for qcow2 with 64 KiB clusters`)
    const out = await ImageOutput.create(path, CLUSTER_SIZE)
    return new Qcow2Writer(out, rounded, l1Size, virtualSize)
  }

  write(offset: number, data: Buffer): Promise<void> {
    return this.units.write(offset, data)
  }

  /** A finished data cluster: append it and map it in the current L2 table. */
  private async cluster(index: number, data: Buffer): Promise<void> {
    const l1i = Math.floor(index / L2_ENTRIES)
    if (l1i !== this.l2Index) {
      await this.finishL2()
      this.l2Index = l1i
    }
    const host = await this.out.append(data)
    entry(this.l2, (index % L2_ENTRIES) * 8, host)
  }

  private async finishL2(): Promise<void> {
    if (this.l2Index < 0) return
    const host = await this.out.append(this.l2)
    entry(this.l1, this.l2Index * 8, host)
    this.l2 = Buffer.alloc(CLUSTER_SIZE)
    this.l2Index = -1
  }

  async close(): Promise<void> {
    try {
      await this.units.flush()
      await this.finishL2()
      const l1Offset = this.out.end
      if (this.l1.length > 0) await this.out.append(padToCluster(this.l1))
      const {tableOffset, tableClusters, total} = await this.appendRefcounts()
      await this.out.flush()
      await this.out.writeAt(this.header(l1Offset, tableOffset, tableClusters), 0)
      await this.out.finish(total * CLUSTER_SIZE)
    } catch (e) {
      await this.out.abort()
      throw e
    }
  }

  /** Appends the refcount table and blocks giving every cluster (including themselves) refcount 1. */
  private async appendRefcounts(): Promise<{tableOffset: number; tableClusters: number; total: number}> {
    const used = this.out.end / CLUSTER_SIZE
    let blocks = 0
    let tableClusters = 0
    for (;;) {
      const total = used + blocks + tableClusters
      const b = Math.ceil(total / REFCOUNTS_PER_BLOCK)
      const t = Math.ceil((b * 8) / CLUSTER_SIZE)
      if (b === blocks && t === tableClusters) break
      blocks = b
      tableClusters = t
    }
    const total = used + blocks + tableClusters
    const tableOffset = this.out.end
    const table = Buffer.alloc(tableClusters * CLUSTER_SIZE)
    for (let i = 0; i < blocks; i++) writeU64be(table, tableOffset + (tableClusters + i) * CLUSTER_SIZE, i * 8)
    await this.out.append(table)
    for (let i = 0; i < blocks; i++) {
      const block = Buffer.alloc(CLUSTER_SIZE)
      const n = Math.min(REFCOUNTS_PER_BLOCK, total - i * REFCOUNTS_PER_BLOCK)
      for (let j = 0; j < n; j++) block.writeUInt16BE(1, j * 2)
      await this.out.append(block)
    }
    return {tableOffset, tableClusters, total}
  }

  private header(l1Offset: number, refcountOffset: number, refcountClusters: number): Buffer {
    const h = Buffer.alloc(CLUSTER_SIZE)
    h.writeUInt32BE(QCOW2_MAGIC, 0)
    h.writeUInt32BE(3, 4)
    h.writeUInt32BE(CLUSTER_BITS, 20)
    writeU64be(h, this.virtualSize, 24)
    h.writeUInt32BE(this.l1.length / 8, 36)
    writeU64be(h, this.l1.length > 0 ? l1Offset : 0, 40)
    writeU64be(h, refcountOffset, 48)
    h.writeUInt32BE(refcountClusters, 56)
    h.writeUInt32BE(REFCOUNT_ORDER, 96)
    h.writeUInt32BE(V3_HEADER_LENGTH, 100)
    // Header extensions would start at 104; the zero bytes there are the end marker.
    return h
  }

  async abort(): Promise<void> {
    await this.out.abort()
  }
}

/** Writes a table entry: host offset with the COPIED flag (refcount is exactly 1). */
function entry(table: Buffer, at: number, host: number): void {
  writeU64be(table, host, at)
  table.writeUInt32BE((table.readUInt32BE(at) | 0x80000000) >>> 0, at)
}

function padToCluster(buf: Buffer): Buffer {
  const len = Math.ceil(buf.length / CLUSTER_SIZE) * CLUSTER_SIZE
  return len === buf.length ? buf : Buffer.concat([buf, Buffer.alloc(len - buf.length)])
}

