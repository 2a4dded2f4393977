// The repository index in memory: chunk id → (pack, offset, length), loaded
// once per command from the index files (repo-index-codec.ts) and answering
// has/get for the chunk store. Two IdTables: packs (no record) and chunks
// (a 12-byte record: pack number, offset, length, u32 each). Measured and
// computed bytes per chunk: docs/FORMAT.md §6.2.
import {VdsnapError} from '../errors.js'
import {IdTable} from './id-table.js'
import {packName, type PackEntry} from './pack-format.js'

const RECORD = 12

export interface ChunkLocation {
  packId: Buffer
  pack: string
  offset: number
  length: number
}

export class RepoIndex {
  private readonly packs: IdTable
  private readonly chunks: IdTable
  /** Chunks found in a second pack (kept where first seen); check reports them, prune drops the copies. */
  duplicates = 0

  constructor(expectedChunks = 0, expectedPacks = 0) {
    this.packs = new IdTable(0, expectedPacks)
    this.chunks = new IdTable(RECORD, expectedChunks)
  }

  get chunkCount(): number {
    return this.chunks.size
  }

  get packCount(): number {
    return this.packs.size
  }

  /** Makes room for this many chunks and packs in total (an index loader knows them from the files' headers). */
  reserve(chunks: number, packs: number): void {
    this.chunks.reserve(chunks)
    this.packs.reserve(packs)
  }

  /** Pack number of `packId`, added when new. */
  packNumber(packId: Uint8Array, at = 0): number {
    return this.packs.add(packId, at).entry
  }

  packIdAt(n: number): Buffer {
    if (n < 0 || n >= this.packs.size) throw new VdsnapError(`pack number ${n} out of range`)
    return this.packs.idAt(n)
  }

  /** Records a chunk's place; false (and a duplicate counted) when it was already indexed elsewhere. */
  add(id: Uint8Array, pack: number, offset: number, length: number, at = 0): boolean {
    const {entry, added} = this.chunks.add(id, at)
    if (!added) {
      const r = this.chunks.recordAt(entry)
      if (r.readUInt32LE(0) !== pack || r.readUInt32LE(4) !== offset) this.duplicates++
      return false
    }
    const r = this.chunks.recordAt(entry)
    r.writeUInt32LE(pack, 0)
    r.writeUInt32LE(offset, 4)
    r.writeUInt32LE(length, 8)
    return true
  }

  /** Indexes every chunk of one pack (a sealed pack, or one read back from its trailer). */
  addPack(packId: Buffer, entries: readonly PackEntry[]): void {
    const n = this.packNumber(packId)
    for (const e of entries) this.add(e.id, n, e.offset, e.length)
  }

  has(id: Uint8Array): boolean {
    return this.chunks.find(id) >= 0
  }

  get(id: Uint8Array): ChunkLocation | undefined {
    const entry = this.chunks.find(id)
    if (entry < 0) return undefined
    const r = this.chunks.recordAt(entry)
    const packId = Buffer.from(this.packs.idAt(r.readUInt32LE(0)))
    return {packId, pack: packName(packId), offset: r.readUInt32LE(4), length: r.readUInt32LE(8)}
  }

  /** Every chunk as (id view, pack number, offset, length), in insertion order. */
  *entries(): Generator<{id: Buffer; pack: number; offset: number; length: number}> {
    for (let e = 0; e < this.chunks.size; e++) {
      const r = this.chunks.recordAt(e)
      yield {id: this.chunks.idAt(e), pack: r.readUInt32LE(0), offset: r.readUInt32LE(4), length: r.readUInt32LE(8)}
    }
  }

  /** Bytes held by the two tables. */
  get allocatedBytes(): number {
    return this.chunks.allocatedBytes + this.packs.allocatedBytes
  }
}
