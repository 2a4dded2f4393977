// What export writes through: the ZIP64 writer (default) or the pax tar
// writer. Both take whole entries in hand and the disk image as blocks.
import type {Segment} from './tar-format.js'

export interface ImageBlock {
  length: number
  /** The block's bytes, or null for a block of zeros. */
  data: Buffer | null
}

export interface ArchiveWriter {
  /** An entry whose bytes are all in hand (concatenated `parts`). */
  addStored(name: string, parts: Buffer | Buffer[]): Promise<void>
  /**
   * The portable disk image of `size` bytes from its blocks in order;
   * `segments` are its runs of non-zero blocks, known from the index before
   * any data (tar writes them as a sparse map; ZIP deflates the zeros).
   */
  addImage(name: string, size: number, segments: Segment[], blocks: AsyncIterable<ImageBlock>): Promise<void>
  /** Ends the archive; with `recordSize` (ZIP) it ends on a record boundary. */
  finish(comment: string, recordSize?: number): Promise<void>
}
