// What every archive reader gives the use cases (restore, check, import):
// the manifest, the head entries (config, key slots, snapshot object,
// index), chunk objects by id, the portable image as a stream, and the
// image SHA-256 from SHA256SUMS. A seekable file is read by entry
// (node-stream-zip); a pipe or tape in one forward pass.
import type {ArchiveManifest} from './layout.js'

export interface ArchiveSource {
  readonly describe: string
  readonly manifest: ArchiveManifest
  /** config, keys/<slot>, snapshots/<id>, indexes/<id> (chunks archives). */
  readonly head: Map<string, Buffer>
  /**
   * The stored object of chunk `idHex`, first needed at block `atBlock`.
   * `lastUse` (block of each chunk's last use) lets a forward reader hold
   * only chunks still to come back.
   */
  loadChunk(idHex: string, atBlock: number): Promise<Buffer>
  /** Tells a forward reader which chunks it will be asked for again, and until when. */
  planUses(lastUse: Map<string, number>): void
  /** The portable image's bytes, in order. */
  image(): AsyncIterable<Buffer>
  /** The image SHA-256 from SHA256SUMS; a forward reader reads (and checks) the rest of the archive first. */
  imageSha256(): Promise<string>
  close(): Promise<void>
}

/** An entry read by a forward reader: whole (with its integrity checked as far as the format allows), or a stream. */
export type StreamEntry = {header: {name: string}; data: Buffer; streamed: false} | {header: {name: string}; streamed: true}

/** A forward-only reader of archive entries (ZIP or tar). */
export interface EntryReader {
  readonly describe: string
  /** The next entry, or null at the end of the entries. */
  next(): Promise<StreamEntry | null>
  /** A streamed entry's (the portable image's) bytes, consumed to its end. */
  image(e: StreamEntry): AsyncIterable<Buffer>
  /** Reads to the end of the stream, checking the archive is whole. */
  finish(): Promise<void>
}
