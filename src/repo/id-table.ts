// A hash table of 32-byte ids with a fixed-size record per id, kept in three
// flat allocations instead of a Map of hex strings (which costs ~200 bytes
// per id). Ids are SHA-256 or HMAC-SHA-256 outputs, uniformly distributed,
// so their first four bytes are the hash. Open addressing with linear
// probing; the slot array holds entry number + 1 (0 = empty) and is kept at
// most 3/4 full. Entries are never removed: an index is rebuilt, not edited.
//
// Memory per id: 32 (id) + recordSize + 4 / load factor (slots, load in
// (3/8, 3/4]) bytes, plus the unused tail of the entry arrays, which grow by
// half (none after reserve()).
import {VdsnapError} from '../errors.js'
import {DIGEST_SIZE} from '../chunk/digest.js'

const MAX_LOAD = 0.75
const MIN_SLOTS = 16

export class IdTable {
  private ids: Buffer
  private records: Buffer
  private slots: Uint32Array
  private mask: number
  private count = 0

  constructor(
    readonly recordSize: number,
    expected = 0,
  ) {
    this.ids = Buffer.alloc(0)
    this.records = Buffer.alloc(0)
    this.slots = new Uint32Array(MIN_SLOTS)
    this.mask = MIN_SLOTS - 1
    this.reserve(expected)
  }

  get size(): number {
    return this.count
  }

  /** Makes room for `n` ids in total without further allocation. */
  reserve(n: number): void {
    if (n > this.ids.length / DIGEST_SIZE) this.growEntries(n)
    let slots = this.slots.length
    while (n > slots * MAX_LOAD) slots *= 2
    if (slots !== this.slots.length) this.rehash(slots)
  }

  /** Entry number of `id` (id bytes at `at`), or -1. */
  find(id: Uint8Array, at = 0): number {
    for (let s = hash(id, at) & this.mask; ; s = (s + 1) & this.mask) {
      const e = this.slots[s]!
      if (e === 0) return -1
      if (this.sameId(e - 1, id, at)) return e - 1
    }
  }

  /** Entry number of `id`, added (with a zeroed record) when new; `added` tells which. */
  add(id: Uint8Array, at = 0): {entry: number; added: boolean} {
    if (this.count + 1 > this.slots.length * MAX_LOAD) this.rehash(this.slots.length * 2)
    let s = hash(id, at) & this.mask
    for (; ; s = (s + 1) & this.mask) {
      const e = this.slots[s]!
      if (e === 0) break
      if (this.sameId(e - 1, id, at)) return {entry: e - 1, added: false}
    }
    if (this.count >= 0xffff_fffe) throw new VdsnapError('more than 4 billion ids in one table')
    if (this.count * DIGEST_SIZE >= this.ids.length) this.growEntries(Math.max(MIN_SLOTS, Math.ceil(this.count * 1.5)))
    const entry = this.count++
    this.ids.set(id.subarray(at, at + DIGEST_SIZE), entry * DIGEST_SIZE)
    this.records.fill(0, entry * this.recordSize, (entry + 1) * this.recordSize)
    this.slots[s] = entry + 1
    return {entry, added: true}
  }

  /** The id of entry `entry` (a view, valid until the next add). */
  idAt(entry: number): Buffer {
    return this.ids.subarray(entry * DIGEST_SIZE, (entry + 1) * DIGEST_SIZE)
  }

  /** The record of entry `entry` (a view, valid until the next add). */
  recordAt(entry: number): Buffer {
    return this.records.subarray(entry * this.recordSize, (entry + 1) * this.recordSize)
  }

  /** Bytes allocated (ids, records, slots). */
  get allocatedBytes(): number {
    return this.ids.length + this.records.length + this.slots.byteLength
  }

  private sameId(entry: number, id: Uint8Array, at: number): boolean {
    return this.ids.compare(id, at, at + DIGEST_SIZE, entry * DIGEST_SIZE, (entry + 1) * DIGEST_SIZE) === 0
  }

  private growEntries(n: number): void {
    const ids = Buffer.allocUnsafe(n * DIGEST_SIZE)
    this.ids.copy(ids, 0, 0, this.count * DIGEST_SIZE)
    const records = Buffer.allocUnsafe(n * this.recordSize)
    this.records.copy(records, 0, 0, this.count * this.recordSize)
    this.ids = ids
    this.records = records
  }

  private rehash(size: number): void {
    this.slots = new Uint32Array(size)
    this.mask = size - 1
    for (let e = 0; e < this.count; e++) {
      let s = hash(this.ids, e * DIGEST_SIZE) & this.mask
      while (this.slots[s] !== 0) s = (s + 1) & this.mask
      this.slots[s] = e + 1
    }
  }
}

function hash(id: Uint8Array, at: number): number {
  return (id[at]! | (id[at + 1]! << 8) | (id[at + 2]! << 16) | (id[at + 3]! << 24)) >>> 0
}
