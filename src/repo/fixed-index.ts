// A snapshot's fixed-size-block index: which chunk holds each block. One
// type for the three shapes an index takes:
//   - full: one entry per block (a stored full index, or a chain resolved
//     to one entry per block);
//   - delta: one entry per block its changed-block map marks, in ascending
//     block order (a stored delta index).
// Both carry the changed-block map stored with them (against the parent);
// a resolved index made here carries "every block".
//
// An entry is a 32-byte chunk id; 32 zero bytes mean "this block is all
// zeros". No code outside this module (and the byte codec, index-codec.ts)
// computes an entry's offset: callers ask by block number. That keeps the
// storage of the entries private, so a compact or file-backed form can
// replace the Buffer for multi-TiB disks (16 TiB in 512 KiB blocks is
// 33.5 M entries, 1 GiB) without touching a caller.
//
// Block-addressed methods (entry, isZero, hex, set, ...) need a full index;
// delta indexes are read through chunkIds(), applyOlder() and encode().
// Hot loops (diff, delta, applyOlder) compare and copy byte ranges in place:
// no allocation per block.
import {ChangedBlockMap} from '../cbt/changed-block-map.js'
import {DIGEST_SIZE, ZERO_ID} from '../chunk/digest.js'
import {blockCountFor, decodeIndex, encodeIndex, type SnapshotIndex} from './index-codec.js'

const E = DIGEST_SIZE
/** Entries compared at once by diff() before it looks at single ones (32 KiB). */
const RUN = 1024

export class FixedIndex {
  readonly blockCount: number
  private map: ChangedBlockMap | undefined

  private constructor(
    readonly kind: 'full' | 'delta',
    readonly blockSize: number,
    readonly virtualSize: number,
    map: ChangedBlockMap | undefined,
    /** full: blockCount entries; delta: map.count() entries in ascending block order. */
    private readonly slots: Buffer,
  ) {
    this.blockCount = blockCountFor(virtualSize, blockSize)
    this.map = map
  }

  /** A full index of `virtualSize` bytes whose every block is a zero block. */
  static empty(blockSize: number, virtualSize: number): FixedIndex {
    return new FixedIndex('full', blockSize, virtualSize, undefined, Buffer.alloc(blockCountFor(virtualSize, blockSize) * E))
  }

  /** Wraps a codec record (its entries are taken, not copied). */
  static fromRecord(r: SnapshotIndex): FixedIndex {
    const want = r.kind === 'full' ? r.blockCount : r.cbm.count()
    if (r.blockCount !== blockCountFor(r.virtualSize, r.blockSize) || r.cbm.blockCount !== r.blockCount || r.entries.length !== want * E) {
      throw new RangeError(`index of ${r.blockCount} blocks with ${r.entries.length / E} entries and a map of ${r.cbm.blockCount} blocks`)
    }
    return new FixedIndex(r.kind, r.blockSize, r.virtualSize, r.cbm, r.entries)
  }

  /** Decodes a stored index object's plaintext; DataError when it is truncated, corrupt or inconsistent. */
  static decode(buf: Buffer, name: string): FixedIndex {
    return FixedIndex.fromRecord(decodeIndex(buf, name))
  }

  /** The stored form (docs/FORMAT.md, "Indexes"). */
  encode(): Buffer {
    return encodeIndex({kind: this.kind, blockSize: this.blockSize, virtualSize: this.virtualSize, blockCount: this.blockCount, cbm: this.cbm, entries: this.slots})
  }

  /** The map stored with the index: blocks changed against the parent (a delta holds exactly these). */
  get cbm(): ChangedBlockMap {
    this.map ??= allBlocks(this.blockCount)
    return this.map
  }

  /** This full index, to be stored with `cbm` as its map; shares the entries (later changes show). */
  asFull(cbm: ChangedBlockMap): FixedIndex {
    this.needFull()
    if (cbm.blockCount !== this.blockCount) throw new RangeError(`map of ${cbm.blockCount} blocks for an index of ${this.blockCount}`)
    return new FixedIndex('full', this.blockSize, this.virtualSize, cbm, this.slots)
  }

  /** The delta index holding this full index's entries for the blocks `cbm` marks (against a parent). */
  delta(cbm: ChangedBlockMap): FixedIndex {
    this.needFull()
    if (cbm.blockCount !== this.blockCount) throw new RangeError(`map of ${cbm.blockCount} blocks for an index of ${this.blockCount}`)
    const out = Buffer.allocUnsafe(cbm.count() * E)
    let i = 0
    forEachSet(cbm.bits, (b) => {
      this.slots.copy(out, i++ * E, b * E, (b + 1) * E)
    })
    return new FixedIndex('delta', this.blockSize, this.virtualSize, cbm, out)
  }

  /**
   * Chain replay: fills this full index's blocks not yet in `resolved` from
   * `older` (the next index down the chain, same geometry) and marks them.
   * A full `older` fills every block still open. Returns true when every
   * block is resolved.
   */
  applyOlder(older: FixedIndex, resolved: ChangedBlockMap): boolean {
    this.needFull()
    if (older.blockSize !== this.blockSize || older.virtualSize !== this.virtualSize) throw new RangeError('index geometry differs')
    const bits = resolved.bits
    if (older.kind === 'full') {
      for (let byte = 0; byte < bits.length; byte++) {
        const v = bits[byte]!
        if (v === 0xff) continue
        const first = byte * 8
        const last = Math.min(first + 8, this.blockCount)
        if (v === 0) older.slots.copy(this.slots, first * E, first * E, last * E)
        else for (let b = first; b < last; b++) if (!(v & (1 << (b & 7)))) older.slots.copy(this.slots, b * E, b * E, (b + 1) * E)
        bits[byte] = v | ((1 << (last - first)) - 1)
      }
      return true
    }
    let i = 0
    forEachSet(older.cbm.bits, (b) => {
      if (!(bits[b >>> 3]! & (1 << (b & 7)))) {
        older.slots.copy(this.slots, b * E, i * E, (i + 1) * E)
        bits[b >>> 3]! |= 1 << (b & 7)
      }
      i++
    })
    return false
  }

  /**
   * The blocks that differ between two full indexes of the same block size.
   * A block both disks hold whole differs when its entries differ; when the
   * disk grew or shrank, every block past the smaller disk's last whole
   * block differs (its short last block, now longer, and the blocks only the
   * larger disk has). The map covers the larger disk.
   */
  diff(other: FixedIndex): ChangedBlockMap {
    this.needFull()
    other.needFull()
    if (other.blockSize !== this.blockSize) throw new RangeError(`block sizes differ (${this.blockSize} vs ${other.blockSize})`)
    const blockCount = Math.max(this.blockCount, other.blockCount)
    const comparable = this.virtualSize === other.virtualSize ? blockCount : Math.floor(Math.min(this.virtualSize, other.virtualSize) / this.blockSize)
    const map = new ChangedBlockMap(blockCount)
    const a = this.slots
    const o = other.slots
    for (let run = 0; run < comparable; run += RUN) {
      const end = Math.min(run + RUN, comparable)
      if (a.compare(o, run * E, end * E, run * E, end * E) === 0) continue
      for (let b = run; b < end; b++) if (a.compare(o, b * E, (b + 1) * E, b * E, (b + 1) * E) !== 0) map.set(b)
    }
    for (let b = comparable; b < blockCount; b++) map.set(b)
    return map
  }

  /** Block `b`'s chunk id (all zero for a zero block): a view, valid while the index lives; do not keep or change it. */
  entry(b: number): Buffer {
    const off = this.at(b)
    return this.slots.subarray(off, off + E)
  }

  /** Block `b`'s chunk id in hex (64 zeros for a zero block). */
  hex(b: number): string {
    const off = this.at(b)
    return this.slots.toString('hex', off, off + E)
  }

  isZero(b: number): boolean {
    const off = this.at(b)
    return this.slots.compare(ZERO_ID, 0, E, off, off + E) === 0
  }

  /** True when block `b`'s entry is `id` (32 bytes). */
  matches(b: number, id: Uint8Array): boolean {
    const off = this.at(b)
    return this.slots.compare(id, 0, E, off, off + E) === 0
  }

  /** True when block `b` has the same entry here and in `other` (a full index holding block b). */
  sameAt(b: number, other: FixedIndex): boolean {
    const off = this.at(b)
    return this.slots.compare(other.slots, other.at(b), other.at(b) + E, off, off + E) === 0
  }

  set(b: number, id: Uint8Array): void {
    if (id.length !== E) throw new RangeError(`chunk id of ${id.length} bytes`)
    this.slots.set(id, this.at(b))
  }

  setHex(b: number, hex: string): void {
    if (hex.length !== E * 2) throw new RangeError(`chunk id of ${hex.length} hex digits`)
    this.slots.write(hex, this.at(b), E, 'hex')
  }

  setZero(b: number): void {
    const off = this.at(b)
    this.slots.fill(0, off, off + E)
  }

  /**
   * Sets block `b` to the `k`-th 32-byte id of `ids` (a worker's packed
   * digests). Returns false, changing nothing, when it already holds it.
   */
  update(b: number, ids: Uint8Array, k: number): boolean {
    const off = this.at(b)
    if (this.slots.compare(ids, k * E, (k + 1) * E, off, off + E) === 0) return false
    this.slots.set(ids.subarray(k * E, (k + 1) * E), off)
    return true
  }

  /** Blocks (full) or entries (delta) that are not zero blocks. */
  usedCount(): number {
    let n = 0
    for (let off = 0; off < this.slots.length; off += E) if (this.slots.compare(ZERO_ID, 0, E, off, off + E) !== 0) n++
    return n
  }

  /** Each distinct chunk id (hex) the index names, once, in entry order; zero blocks name none. */
  *chunkIds(): Generator<string> {
    const seen = new Set<string>()
    for (const hex of this.allIds()) {
      if (seen.has(hex)) continue
      seen.add(hex)
      yield hex
    }
  }

  /** Adds every chunk id (hex) the index names to `into` (for a set over many indexes). */
  addChunkIds(into: Set<string>): void {
    for (const hex of this.allIds()) into.add(hex)
  }

  /** Same geometry, kind and entries (the maps are not compared). */
  sameEntries(other: FixedIndex): boolean {
    return this.kind === other.kind && this.blockSize === other.blockSize && this.virtualSize === other.virtualSize && this.slots.equals(other.slots)
  }

  private *allIds(): Generator<string> {
    for (let off = 0; off < this.slots.length; off += E) {
      if (this.slots.compare(ZERO_ID, 0, E, off, off + E) !== 0) yield this.slots.toString('hex', off, off + E)
    }
  }

  private at(b: number): number {
    if (this.kind !== 'full' || !(b >= 0 && b < this.blockCount)) throw new RangeError(`block ${b} of a ${this.kind} index of ${this.blockCount} blocks`)
    return b * E
  }

  private needFull(): void {
    if (this.kind !== 'full') throw new RangeError('a full index is needed here')
  }
}

function allBlocks(blockCount: number): ChangedBlockMap {
  const m = new ChangedBlockMap(blockCount)
  m.bits.fill(0xff)
  if (blockCount % 8) m.bits[m.bits.length - 1] = (1 << (blockCount % 8)) - 1
  return m
}

/** Calls `f` for every set block of a bitmap, in ascending order, skipping empty bytes. */
function forEachSet(bits: Uint8Array, f: (b: number) => void): void {
  for (let byte = 0; byte < bits.length; byte++) {
    const v = bits[byte]!
    if (v === 0) continue
    for (let bit = 0; bit < 8; bit++) if (v & (1 << bit)) f(byte * 8 + bit)
  }
}
