// A set of 32-byte chunk ids, compact: the ids sit side by side in large
// Buffers (an open-addressing table with linear probing) plus one
// occupancy bit per slot, so an id costs 46 to 92 bytes (32 / LOAD, twice
// that right after the table doubled) instead of the ~130 bytes of a hex
// string in a JS Set. A JS Set also stops at 2^24 entries (16.7 M ids, 8 TiB
// of 512 KiB blocks), which a large disk reaches.
//
// Ids are HMAC-SHA-256 or SHA-256 outputs, so four of their bytes are
// already a uniform hash. Which four is chosen at random per set: someone
// who can write blocks into a backed-up disk of a plaintext repository
// could grind blocks whose ids share a fixed 32-bit word and make probing
// slow; they cannot aim at a word chosen after they wrote.
//
// The table lives in segments of at most SEGMENT_SLOTS slots (1 GiB),
// because a single Buffer stops at 4 GiB on Node 20.
import {randomInt} from 'node:crypto'
import {DIGEST_SIZE} from './digest.js'

/** Slots per segment: 2^25 × 32 bytes = 1 GiB. */
export const SEGMENT_SLOTS = 2 ** 25
/** The table grows (doubles) when it would be fuller than this. */
const LOAD = 0.7
const MIN_SLOTS = 1024

export class IdSet {
  private segments: Buffer[] = []
  private used = new Uint8Array(0)
  private slots = 0
  private count = 0
  /** Byte offset (a multiple of 4) inside an id of the word used as its hash. */
  private readonly hashAt = randomInt(0, DIGEST_SIZE / 4) * 4

  /** `segmentSlots` (a power of two) is for tests, to cross segments without allocating gigabytes. */
  constructor(
    expected = 0,
    private readonly segmentSlots = SEGMENT_SLOTS,
  ) {
    let slots = MIN_SLOTS
    while (slots * LOAD < expected) slots *= 2
    this.allocate(slots)
  }

  get size(): number {
    return this.count
  }

  /** Bytes held by the table (ids and occupancy bits). */
  get byteLength(): number {
    return this.slots * DIGEST_SIZE + this.used.length
  }

  has(id: Uint8Array): boolean {
    return this.find(checked(id)) < 0
  }

  /** Adds the id; true when it was not in the set yet. */
  add(id: Uint8Array): boolean {
    const at = this.find(checked(id))
    if (at < 0) return false
    if (this.count + 1 > this.slots * LOAD) {
      this.grow()
      return this.add(id)
    }
    this.put(at, id)
    return true
  }

  /** The free slot where `id` belongs, or -1 when it is present. */
  private find(id: Uint8Array): number {
    const mask = this.slots - 1
    const h = (id[this.hashAt]! | (id[this.hashAt + 1]! << 8) | (id[this.hashAt + 2]! << 16) | (id[this.hashAt + 3]! << 24)) >>> 0
    // The loop ends: the table is never full (LOAD < 1).
    for (let slot = h & mask; ; slot = (slot + 1) & mask) {
      if ((this.used[slot >>> 3]! & (1 << (slot & 7))) === 0) return slot
      const seg = this.segments[Math.floor(slot / this.segmentSlots)]!
      const off = (slot % this.segmentSlots) * DIGEST_SIZE
      if (seg.compare(id, 0, DIGEST_SIZE, off, off + DIGEST_SIZE) === 0) return -1
    }
  }

  private put(slot: number, id: Uint8Array): void {
    this.segments[Math.floor(slot / this.segmentSlots)]!.set(id, (slot % this.segmentSlots) * DIGEST_SIZE)
    this.used[slot >>> 3]! |= 1 << (slot & 7)
    this.count++
  }

  private allocate(slots: number): void {
    this.slots = slots
    this.used = new Uint8Array(Math.ceil(slots / 8))
    this.segments = []
    for (let left = slots; left > 0; left -= this.segmentSlots) this.segments.push(Buffer.allocUnsafe(Math.min(left, this.segmentSlots) * DIGEST_SIZE))
  }

  private grow(): void {
    const {segments, used, slots} = this
    this.allocate(slots * 2)
    this.count = 0
    for (let slot = 0; slot < slots; slot++) {
      if ((used[slot >>> 3]! & (1 << (slot & 7))) === 0) continue
      const seg = segments[Math.floor(slot / this.segmentSlots)]!
      const off = (slot % this.segmentSlots) * DIGEST_SIZE
      const id = seg.subarray(off, off + DIGEST_SIZE)
      this.put(this.find(id), id)
    }
  }
}

function checked(id: Uint8Array): Uint8Array {
  if (id.length !== DIGEST_SIZE) throw new RangeError(`a chunk id is ${DIGEST_SIZE} bytes, not ${id.length}`)
  return id
}
