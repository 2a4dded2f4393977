// A portable archive's disk image cut into blocks of the snapshot's block
// size, in offset order, for restore's copyBlocks: all-zero blocks come
// back as null, so a new file target keeps them as holes.
import {isAllZero} from '../chunk/digest.js'
import {DataError} from '../errors.js'
import type {Manifest} from '../repo/manifest.js'
import type {Block} from '../restore/block-source.js'

export class PortableBlocks {
  chunksRead = 0
  bytesFetched = 0
  readonly blockCount: number

  constructor(
    readonly snapshot: Manifest,
    private readonly image: AsyncIterable<Buffer>,
  ) {
    this.blockCount = Math.ceil(snapshot.virtualSize / snapshot.blockSize)
  }

  get virtualSize(): number {
    return this.snapshot.virtualSize
  }

  blockLength(b: number): number {
    return Math.min(this.snapshot.blockSize, this.virtualSize - b * this.snapshot.blockSize)
  }

  async *blocks(wanted: (b: number) => boolean = () => true): AsyncGenerator<Block> {
    const bs = this.snapshot.blockSize
    let pending: Buffer[] = []
    let pendingBytes = 0
    let b = 0
    const take = (): Buffer => {
      const len = this.blockLength(b)
      const all = pending.length === 1 ? pending[0]! : Buffer.concat(pending)
      pending = all.length > len ? [all.subarray(len)] : []
      pendingBytes = all.length - len
      return all.subarray(0, len)
    }
    for await (const piece of this.image) {
      pending.push(piece)
      pendingBytes += piece.length
      this.bytesFetched += piece.length
      while (b < this.blockCount && pendingBytes >= this.blockLength(b)) {
        const data = take()
        if (wanted(b)) yield {index: b, offset: b * bs, length: data.length, data: isAllZero(data) ? null : Buffer.from(data)}
        b++
      }
      if (b >= this.blockCount && pendingBytes > 0) throw new DataError(`the portable image is longer than the ${this.virtualSize} bytes its manifest says (corrupt archive)`, {code: 'ARCHIVE_CORRUPT'})
    }
    if (b < this.blockCount) throw new DataError(`the portable image ends at byte ${b * bs + pendingBytes}, before the ${this.virtualSize} bytes its manifest says (truncated archive)`, {code: 'ARCHIVE_CORRUPT'})
  }

  async close(): Promise<void> {}
}
