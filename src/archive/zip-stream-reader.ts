// Reads a ZIP archive in one forward pass (a pipe, a tape, stdin): local
// entries one after the other, then the central directory, which is parsed
// only to check that the archive is whole (entry count, end record) and
// that what follows it is record padding (zeros).
//
// Entries with sizes in their local header (all of vdsnap's except the
// portable image) come back whole with their CRC checked. A data-descriptor
// entry comes back as a stream the caller must consume to its end.
import {crc32, createInflateRaw} from 'node:zlib'
import {DataError} from '../errors.js'
import type {ByteReader} from './byte-reader.js'
import type {EntryReader, StreamEntry} from './archive-source.js'
import {
  CENTRAL_HEADER_SIZE,
  decodeLocalHeader,
  EOCD_SIZE,
  FLAG_DESCRIPTOR,
  LOCAL_HEADER_SIZE,
  METHOD_DEFLATE,
  METHOD_STORED,
  readU64,
  SIG_CENTRAL,
  SIG_DESCRIPTOR,
  SIG_EOCD,
  SIG_LOCAL,
  SIG_ZIP64_EOCD,
  SIG_ZIP64_LOCATOR,
  ZIP64_LOCATOR_SIZE,
  type LocalHeader,
} from './zip-format.js'

export type ZipEntry = {header: LocalHeader; data: Buffer; streamed: false} | {header: LocalHeader; streamed: true}

/** Entries this large are never held whole in memory (a chunk is at most 16 MiB plus its envelope). */
const MAX_WHOLE_ENTRY = 64 * 1024 * 1024

export class ZipStreamReader implements EntryReader {
  entriesSeen = 0

  constructor(private readonly r: ByteReader) {}

  get describe(): string {
    return this.r.describe
  }

  /** The next local entry, or null when the central directory begins. */
  async next(): Promise<ZipEntry | null> {
    const sig = await this.r.peek(4)
    if (sig.length < 4) throw new DataError(`${this.describe} is truncated: it ends after ${this.r.position} bytes, before its central directory`, {hint: 'the archive was cut short; use a complete copy'})
    const s = sig.readUInt32LE(0)
    if (s === SIG_CENTRAL || s === SIG_ZIP64_EOCD || s === SIG_EOCD) return null
    if (s !== SIG_LOCAL) throw new DataError(`${this.describe}: no ZIP entry at byte ${this.r.position} (not a ZIP archive, or corrupt)`)
    const fixed = await this.r.peek(LOCAL_HEADER_SIZE)
    if (fixed.length < LOCAL_HEADER_SIZE) await this.r.read(LOCAL_HEADER_SIZE, 'a local file header') // throws: truncated
    const total = LOCAL_HEADER_SIZE + fixed.readUInt16LE(26) + fixed.readUInt16LE(28)
    const header = decodeLocalHeader(await this.r.read(total, 'a local file header'), this.describe)
    if (!header) throw new DataError(`${this.describe}: a local header is cut short`)
    this.entriesSeen++
    if (header.flags & FLAG_DESCRIPTOR) return {header, streamed: true}
    if (header.method !== METHOD_STORED) throw new DataError(`${this.describe}: entry ${header.name} uses compression method ${header.method}, which vdsnap never writes there`)
    if (header.compressedSize !== header.size) throw new DataError(`${this.describe}: stored entry ${header.name} has two different sizes (corrupt)`)
    if (header.size > MAX_WHOLE_ENTRY) throw new DataError(`${this.describe}: entry ${header.name} claims ${header.size} bytes, more than any vdsnap entry of its kind`)
    const data = await this.r.read(header.size, `entry ${header.name}`)
    if (crc32(data) !== header.crc) throw new DataError(`${this.describe}: entry ${header.name} fails its CRC (corrupt)`, {hint: 'the archive is damaged; use another copy'})
    return {header, data, streamed: false}
  }

  image(e: StreamEntry): AsyncIterable<Buffer> {
    return this.inflate((e as ZipEntry).header)
  }

  /**
   * The plaintext of a deflated data-descriptor entry, piece by piece. The
   * deflate stream marks its own end; the bytes the inflater did not use
   * are the descriptor, which is then read and checked.
   */
  async *inflate(header: LocalHeader): AsyncGenerator<Buffer> {
    if (header.method !== METHOD_DEFLATE) throw new DataError(`${this.describe}: streamed entry ${header.name} uses method ${header.method}; only deflate can be read from a pipe`)
    const inflater = createInflateRaw({chunkSize: 1024 * 1024})
    const out: Buffer[] = []
    let ended = false
    let failed: Error | null = null
    inflater.on('data', (d: Buffer) => out.push(d))
    inflater.on('end', () => (ended = true))
    inflater.on('error', (e) => (failed = new DataError(`${this.describe}: entry ${header.name} has a corrupt deflate stream (${e.message})`)))
    let consumed = 0
    while (!ended) {
      if (failed) throw failed
      const piece = await this.r.peek(256 * 1024)
      if (piece.length === 0) throw new DataError(`${this.describe} is truncated inside entry ${header.name}`, {hint: 'the archive was cut short; use a complete copy'})
      const before = inflater.bytesWritten
      await new Promise<void>((resolve) => inflater.write(piece, () => resolve()))
      await new Promise<void>((resolve) => setImmediate(resolve))
      const used = inflater.bytesWritten - before
      // After the end of the deflate stream zlib stops taking input.
      await this.r.read(ended ? used : piece.length, `entry ${header.name}`)
      consumed += ended ? used : piece.length
      if (failed) throw failed
      if (out.length > 0) yield Buffer.concat(out.splice(0))
    }
    if (out.length > 0) yield Buffer.concat(out.splice(0))
    const desc = await this.r.read(header.zip64 ? 24 : 16, `the data descriptor of ${header.name}`)
    if (desc.readUInt32LE(0) !== SIG_DESCRIPTOR) throw new DataError(`${this.describe}: entry ${header.name} lacks its data descriptor (corrupt)`)
    const size = header.zip64 ? readU64(desc, 8, 'entry size') : desc.readUInt32LE(8)
    if (size !== consumed) throw new DataError(`${this.describe}: entry ${header.name}'s descriptor disagrees with its data (corrupt)`)
  }

  /**
   * Reads the central directory and end records to the end of the stream:
   * one central header per local entry, an end record, then only zeros
   * (record padding). Anything else means a truncated or spliced archive.
   */
  async finish(): Promise<void> {
    let central = 0
    for (;;) {
      const sig = await this.r.peek(4)
      if (sig.length < 4) throw new DataError(`${this.describe} is truncated inside its central directory`, {hint: 'the archive was cut short; use a complete copy'})
      const s = sig.readUInt32LE(0)
      if (s === SIG_CENTRAL) {
        const fixed = await this.r.read(CENTRAL_HEADER_SIZE, 'the central directory')
        await this.r.read(fixed.readUInt16LE(28) + fixed.readUInt16LE(30) + fixed.readUInt16LE(32), 'the central directory')
        central++
      } else if (s === SIG_ZIP64_EOCD) {
        const fixed = await this.r.read(12, 'the ZIP64 end record')
        await this.r.read(readU64(fixed, 4, 'end record size'), 'the ZIP64 end record')
      } else if (s === SIG_ZIP64_LOCATOR) {
        await this.r.read(ZIP64_LOCATOR_SIZE, 'the ZIP64 end locator')
      } else if (s === SIG_EOCD) {
        const end = await this.r.read(EOCD_SIZE, 'the end record')
        await this.r.read(end.readUInt16LE(20), 'the archive comment')
        break
      } else throw new DataError(`${this.describe}: unexpected bytes at ${this.r.position} in the central directory (corrupt)`)
    }
    if (central !== this.entriesSeen) throw new DataError(`${this.describe}: the central directory lists ${central} entries, the archive holds ${this.entriesSeen} (corrupt or spliced)`)
    const rest = await this.r.drain()
    if (rest.nonZero) throw new DataError(`${this.describe}: data follows the end of the archive (two archives concatenated?)`)
  }
}
