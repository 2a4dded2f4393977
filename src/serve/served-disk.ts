// A snapshot as an NBD export: the BlockSource underneath (verified
// plaintext, cached, prefetched on sequential reads) and, when the export is
// writable, a copy-on-write overlay on top. Reads take the base blocks the
// overlay does not fully cover, then lay the overlay's sectors over them.
// Writes, trims and write-zeroes go to the overlay only; the repository is
// never written.
import type {NbdExport} from '../nbd/export.js'
import {STATE_HOLE, STATE_ZERO} from '../nbd/protocol.js'
import {type Extent} from '../nbd/transmission-codec.js'
import {BASE, DATA, type OverlayFile} from '../overlay/overlay-file.js'
import {SECTOR} from '../overlay/overlay-header.js'
import type {BlockSource} from '../repo/block-source.js'

/** The largest request a client may send (NBD_INFO_BLOCK_SIZE maximum). */
export const MAX_REQUEST = 32 * 1024 * 1024

export class ServedDisk implements NbdExport {
  readonly size: number
  readonly readOnly: boolean
  readonly minBlock = 1
  readonly preferredBlock: number
  readonly maxBlock = MAX_REQUEST
  readonly readBase = (offset: number, length: number) => this.base(offset, length)

  constructor(
    readonly name: string,
    private readonly source: BlockSource,
    private readonly overlay?: OverlayFile,
    readonly description?: string,
  ) {
    this.size = source.virtualSize
    this.readOnly = !overlay
    this.preferredBlock = Math.max(SECTOR, Math.min(source.blockSize, MAX_REQUEST))
  }

  /** Returned for reads inside a zero block; shared, so nobody may write into a buffer read() returns. */
  private zeros?: Buffer

  async read(offset: number, length: number): Promise<Buffer> {
    const bs = this.source.blockSize
    const b = Math.floor(offset / bs)
    if (Math.floor((offset + length - 1) / bs) === b && !this.overlay?.touches(offset, length)) {
      // The common case (requests no larger than a block): a view of the cached
      // block, no copy and no allocation, which keeps the collector out of the way.
      if (this.source.isZero(b)) return (this.zeros ??= Buffer.alloc(bs)).subarray(0, length)
      const data = (await this.source.read(b))!
      return data.subarray(offset - b * bs, offset - b * bs + length)
    }
    if (this.overlay?.covers(offset, length)) {
      const out = Buffer.alloc(length)
      await this.overlay.patch(out, offset)
      return out
    }
    const out = await this.base(offset, length)
    if (this.overlay?.touches(offset, length)) await this.overlay.patch(out, offset)
    return out
  }

  /** The snapshot's bytes of [offset, offset + length), the blocks fetched in parallel. */
  private async base(offset: number, length: number): Promise<Buffer> {
    const out = Buffer.alloc(length)
    const bs = this.source.blockSize
    const end = offset + length
    const jobs: Promise<void>[] = []
    for (let b = Math.floor(offset / bs); b * bs < end; b++) {
      if (this.source.isZero(b)) continue
      const from = Math.max(offset, b * bs)
      const to = Math.min(end, (b + 1) * bs)
      if (this.overlay?.covers(from, to - from)) continue
      jobs.push(
        this.source.read(b).then((data) => {
          data?.copy(out, from - offset, from - b * bs, to - b * bs)
        }),
      )
    }
    await Promise.all(jobs)
    return out
  }

  async write(offset: number, data: Buffer): Promise<void> {
    await this.overlay!.write(offset, data, this.readBase)
  }

  async zero(offset: number, length: number): Promise<void> {
    await this.overlay!.zero(offset, length, this.readBase)
  }

  async flush(): Promise<void> {
    await this.overlay?.flush()
  }

  /** base:allocation: holes where the snapshot has zero blocks or the overlay zeroed, data elsewhere. */
  async extents(offset: number, length: number, maxExtents: number): Promise<Extent[]> {
    const out: Extent[] = []
    const end = offset + length
    const bs = this.source.blockSize
    let at = offset
    while (at < end) {
      // The next boundary where the state may change: a sector edge with an overlay, a block edge without.
      const step = this.overlay ? SECTOR : bs
      const next = Math.min(end, (Math.floor(at / step) + 1) * step)
      const flags = this.stateAt(at)
      const last = out[out.length - 1]
      if (last && last.flags === flags && last.length + (next - at) <= 0xffffffff) last.length += next - at
      else {
        if (out.length === maxExtents) break
        out.push({length: next - at, flags})
      }
      at = next
    }
    return out
  }

  private stateAt(at: number): number {
    const st = this.overlay ? this.overlay.state(Math.floor(at / SECTOR)) : BASE
    if (st === DATA) return 0
    if (st !== BASE) return STATE_HOLE | STATE_ZERO
    return this.source.isZero(Math.floor(at / this.source.blockSize)) ? STATE_HOLE | STATE_ZERO : 0
  }
}
