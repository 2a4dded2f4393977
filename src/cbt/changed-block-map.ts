// A changed-block map: one bit per block of the virtual disk, least
// significant bit first within each byte (block i is bit i%8 of byte i/8).
// Stored verbatim inside every index (docs/FORMAT.md).

export interface BlockRange {
  firstBlock: number
  count: number
}

export class ChangedBlockMap {
  readonly bits: Uint8Array

  constructor(
    readonly blockCount: number,
    bits?: Uint8Array,
  ) {
    const bytes = Math.ceil(blockCount / 8)
    if (bits && bits.length !== bytes) throw new RangeError(`bitmap of ${bits.length} bytes for ${blockCount} blocks`)
    this.bits = bits ?? new Uint8Array(bytes)
  }

  static all(blockCount: number): ChangedBlockMap {
    const m = new ChangedBlockMap(blockCount)
    for (let i = 0; i < blockCount; i++) m.set(i)
    return m
  }

  set(block: number): void {
    this.bits[block >>> 3]! |= 1 << (block & 7)
  }

  clear(block: number): void {
    this.bits[block >>> 3]! &= ~(1 << (block & 7))
  }

  has(block: number): boolean {
    return (this.bits[block >>> 3]! & (1 << (block & 7))) !== 0
  }

  count(): number {
    let n = 0
    for (const b of this.bits) {
      let v = b
      while (v) {
        v &= v - 1
        n++
      }
    }
    return n
  }

  /** Adds every block set in `other` (same block count). */
  union(other: ChangedBlockMap): void {
    for (let i = 0; i < this.bits.length; i++) this.bits[i]! |= other.bits[i]!
  }

  *blocks(): Iterable<number> {
    for (let byte = 0; byte < this.bits.length; byte++) {
      const v = this.bits[byte]!
      if (!v) continue
      for (let bit = 0; bit < 8; bit++) if (v & (1 << bit)) yield byte * 8 + bit
    }
  }

  /** Runs of consecutive set blocks. */
  ranges(): BlockRange[] {
    const out: BlockRange[] = []
    for (const b of this.blocks()) {
      const last = out[out.length - 1]
      if (last && last.firstBlock + last.count === b) last.count++
      else out.push({firstBlock: b, count: 1})
    }
    return out
  }
}
