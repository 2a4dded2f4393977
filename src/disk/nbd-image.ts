// A disk served over NBD (qemu-nbd, qemu's built-in server, nbdkit) as a
// DiskImage, so backup reads it like any image file:
//   - allocation from block status in the base:allocation context: extents
//     the server calls zero are not read (when the server has no such
//     context, every byte is a candidate);
//   - the blocks a QEMU dirty bitmap marks, from the qemu:dirty-bitmap:NAME
//     context, when a bitmap was asked for and the server has it;
//   - reads split into requests of the server's preferred size (at least
//     4 MiB, at most its maximum), all sent at once: the client pipelines
//     them within its in-flight bounds.
import {NbdClient} from '../nbd/client.js'
import {BASE_ALLOCATION, DIRTY_BITMAP_PREFIX, NbdProtocolError, STATE_DIRTY, STATE_ZERO} from '../nbd/protocol.js'
import {nbdError} from '../nbd/errors.js'
import {parseNbdUrl, type NbdAddress} from '../nbd/url.js'
import {normalizeRanges, type DiskImage, type ImageInfo, type Range} from './types.js'

const READ_PIECE = 4 * 1024 * 1024
/** Block status asked for at most 1 GiB at a time: a multiple of any minimum block size, well within u32. */
const STATUS_STEP = 1024 * 1024 * 1024

export class NbdImage implements DiskImage {
  readonly format = 'nbd'
  private readonly piece: number
  /**
   * Declared (never set) so that code holding a DiskImage | NbdImage can call
   * it without a cast: an export is read by offset, not once like a stream,
   * so there is no end to confirm.
   */
  endOfRead?(): Promise<void>

  private constructor(
    private readonly address: NbdAddress,
    private readonly client: NbdClient,
    /** The dirty bitmap asked for, if any (granted or not). */
    readonly bitmap?: string,
  ) {
    const {preferred, max} = client.blockSizes
    this.piece = Math.min(max, Math.max(READ_PIECE, preferred))
  }

  static async open(url: string, opts: {bitmap?: string} = {}): Promise<NbdImage> {
    const address = parseNbdUrl(url)
    const metaContexts = [BASE_ALLOCATION, ...(opts.bitmap !== undefined ? [DIRTY_BITMAP_PREFIX + opts.bitmap] : [])]
    const client = await NbdClient.connect(address, {metaContexts})
    return new NbdImage(address, client, opts.bitmap)
  }

  get path(): string {
    return this.address.url
  }

  get exportName(): string {
    return this.address.exportName
  }

  get virtualSize(): number {
    return this.client.size
  }

  async allocatedRanges(): Promise<Range[]> {
    const id = this.client.contexts.get(BASE_ALLOCATION)
    if (id === undefined) return this.virtualSize > 0 ? [{offset: 0, length: this.virtualSize}] : []
    return this.walk(id, (flags) => !(flags & STATE_ZERO))
  }

  /** Whether the server exports the dirty bitmap asked for. */
  get hasBitmap(): boolean {
    return this.bitmap !== undefined && this.client.contexts.has(DIRTY_BITMAP_PREFIX + this.bitmap)
  }

  /** The ranges the dirty bitmap marks; null when the server does not export that bitmap. */
  async dirtyRanges(): Promise<Range[] | null> {
    const id = this.bitmap === undefined ? undefined : this.client.contexts.get(DIRTY_BITMAP_PREFIX + this.bitmap)
    if (id === undefined) return null
    return this.walk(id, (flags) => (flags & STATE_DIRTY) !== 0)
  }

  async read(buf: Buffer, offset: number, length = buf.length): Promise<number> {
    const parts: Promise<void>[] = []
    for (let at = 0; at < length; at += this.piece) {
      const n = Math.min(this.piece, length - at)
      parts.push(this.client.read(buf.subarray(at, at + n), offset + at, n))
    }
    await Promise.all(parts)
    return length
  }

  async info(): Promise<ImageInfo> {
    const allocated = await this.allocatedRanges()
    return {
      path: this.path,
      format: this.format,
      virtualSize: this.virtualSize,
      allocatedBytes: allocated.reduce((s, r) => s + r.length, 0),
      parents: [],
      snapshots: [],
    }
  }

  close(): Promise<void> {
    return this.client.close()
  }

  /**
   * The extents of one meta context whose flags `keep` accepts, over the
   * whole export. A reply may describe less than asked: ask again from
   * where it stopped; a reply that describes nothing is a protocol error
   * (it would loop forever).
   */
  private async walk(contextId: number, keep: (flags: number) => boolean): Promise<Range[]> {
    const out: Range[] = []
    const size = this.virtualSize
    try {
      for (let at = 0; at < size; ) {
        const length = Math.min(STATUS_STEP, size - at)
        const extents = (await this.client.blockStatus(at, length)).get(contextId) ?? []
        const start = at
        for (const e of extents) {
          if (e.length === 0) throw new NbdProtocolError(`a block status extent of length 0 at offset ${at}`)
          const n = Math.min(e.length, start + length - at)
          if (keep(e.flags)) out.push({offset: at, length: n})
          at += n
          if (at >= start + length) break
        }
        if (at === start) throw new NbdProtocolError(`a block status reply that describes nothing at offset ${at}`)
      }
    } catch (e) {
      throw nbdError(e, this.path, 'while reading block status')
    }
    return normalizeRanges(out)
  }
}
