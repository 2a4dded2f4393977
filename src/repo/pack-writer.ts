// Collects encoded chunk envelopes into one pack. The writer only builds
// bytes; the chunk store decides when to upload (isFull, or a flush at the
// end of a backup) and writes the repository index after the pack arrived.
import {VdsnapError} from '../errors.js'
import {DIGEST_SIZE} from '../chunk/digest.js'
import {MAX_PACK_SIZE, encodePackTail, packIdOf, packName, type PackEntry, type TrailerKeys} from './pack-format.js'

/**
 * Pack target sizes `init --pack-size` will accept, and the default: 16 MiB
 * is 64 uploads per stored GiB (issue 12's target is at most 100), restic's
 * size; not yet measured on the benchmark set.
 */
export const MIN_PACK_SIZE = 4 << 20
export const MAX_TARGET_PACK_SIZE = 128 << 20
export const DEFAULT_PACK_SIZE = 16 << 20

export interface SealedPack {
  id: Buffer
  name: string
  data: Buffer
  entries: PackEntry[]
}

export class PackWriter {
  private parts: Buffer[] = []
  private entries: PackEntry[] = []
  private size = 0

  /** `targetSize`: a pack is full once its chunk envelopes reach it (the last chunk may pass it). */
  constructor(
    readonly targetSize: number,
    private readonly keys: TrailerKeys,
  ) {
    if (!Number.isSafeInteger(targetSize) || targetSize < 1 || targetSize > MAX_TARGET_PACK_SIZE) throw new VdsnapError(`pack target size ${targetSize} out of range`)
  }

  /** Bytes of chunk envelopes so far. */
  get dataSize(): number {
    return this.size
  }

  get count(): number {
    return this.entries.length
  }

  get isFull(): boolean {
    return this.size >= this.targetSize
  }

  /** Appends one chunk envelope (as encodeObject made it for the chunk's name); the caller avoids duplicates. */
  add(id: Buffer, envelope: Buffer, rawLength: number): void {
    if (id.length !== DIGEST_SIZE) throw new VdsnapError(`chunk id of ${id.length} bytes`)
    // Room for the trailer's own growth is left by MAX_PACK_SIZE's margin over MAX_TARGET_PACK_SIZE.
    if (this.size + envelope.length > MAX_PACK_SIZE - (64 << 20)) throw new VdsnapError(`pack would exceed ${MAX_PACK_SIZE} bytes`)
    this.entries.push({id: Buffer.from(id), offset: this.size, length: envelope.length, rawLength})
    this.parts.push(envelope)
    this.size += envelope.length
  }

  /** The finished pack (envelopes, trailer, footer) and its name; the writer starts empty again. */
  seal(): SealedPack {
    if (this.entries.length === 0) throw new VdsnapError('sealing an empty pack')
    const data = Buffer.concat([...this.parts, encodePackTail(this.entries, this.keys)])
    const id = packIdOf(data)
    const sealed = {id, name: packName(id), data, entries: this.entries}
    this.parts = []
    this.entries = []
    this.size = 0
    return sealed
  }
}
