// A forward-only ZIP64 writer: entries go out one after the other and the
// writer never seeks back, so the archive can go to a pipe or a tape.
//
// 1. An entry whose bytes are in hand (manifest, index, a chunk) is stored
//    with its CRC and sizes in the local header, computed before writing.
// 2. An entry produced as it streams (the portable disk image) gets a ZIP64
//    local header with zero CRC and sizes, then its data, then a 64-bit data
//    descriptor. The central directory repeats the ZIP64 extra field so that
//    unzip's overlap ("zip bomb") check sees the same header length and
//    descriptor size as the local entry.
// 3. finish() writes the central directory (held in memory, ~100 bytes per
//    entry) and the end records, ZIP64 ones when a count or offset overflows.
import {crc32, createDeflateRaw} from 'node:zlib'
import type {ArchiveWriter, ImageBlock} from './archive-writer.js'
import type {Segment} from './tar-format.js'
import {
  encodeCentralHeader,
  encodeDescriptor,
  encodeEnd,
  encodeLocalHeader,
  FLAG_DESCRIPTOR,
  METHOD_DEFLATE,
  METHOD_STORED,
  U32_MAX,
  type CentralFacts,
} from './zip-format.js'
import type {ByteSink} from './sink.js'

export class ZipWriter implements ArchiveWriter {
  private readonly central: {facts: CentralFacts; zip64: boolean}[] = []

  constructor(
    private readonly sink: ByteSink,
    private readonly dosTime: number,
  ) {}

  get entries(): number {
    return this.central.length
  }

  /** Stores `parts` (concatenated) uncompressed, size and CRC in the local header. */
  async addStored(name: string, parts: Buffer | Buffer[]): Promise<void> {
    const list = Array.isArray(parts) ? parts : [parts]
    let crc = 0
    let size = 0
    for (const p of list) {
      crc = crc32(p, crc)
      size += p.length
    }
    const facts: CentralFacts = {name, method: METHOD_STORED, flags: 0, crc, compressedSize: size, size, dosTime: this.dosTime, localOffset: this.sink.position}
    const zip64 = size >= U32_MAX
    await this.sink.write(encodeLocalHeader(facts, zip64))
    for (const p of list) await this.sink.write(p)
    this.central.push({facts, zip64})
  }

  /**
   * Writes an entry from a stream of already-encoded pieces (`encoded`) whose
   * plaintext (`plain`) is counted for CRC and size as it passes; ends with a
   * data descriptor.
   */
  async addStreamed(name: string, method: typeof METHOD_DEFLATE | typeof METHOD_STORED, pieces: AsyncIterable<{plain?: Buffer; encoded?: Buffer}>): Promise<void> {
    const facts: CentralFacts = {name, method, flags: FLAG_DESCRIPTOR, crc: 0, compressedSize: 0, size: 0, dosTime: this.dosTime, localOffset: this.sink.position}
    await this.sink.write(encodeLocalHeader(facts, true))
    for await (const {plain, encoded} of pieces) {
      if (plain) {
        facts.crc = crc32(plain, facts.crc)
        facts.size += plain.length
      }
      if (encoded && encoded.length > 0) {
        facts.compressedSize += encoded.length
        await this.sink.write(encoded)
      }
    }
    await this.sink.write(encodeDescriptor(facts.crc, facts.compressedSize, facts.size, true))
    this.central.push({facts, zip64: true})
  }

  /** The disk image, deflated as it streams (level 1: runs of zeros cost about 1/1000 of their size). */
  async addImage(name: string, _size: number, _segments: Segment[], blocks: AsyncIterable<ImageBlock>): Promise<void> {
    const deflate = createDeflateRaw({level: 1, chunkSize: 256 * 1024})
    const out: Buffer[] = []
    deflate.on('data', (d: Buffer) => out.push(d))
    let zero = Buffer.alloc(0)
    async function* pieces(): AsyncGenerator<{plain?: Buffer; encoded?: Buffer}> {
      for await (const b of blocks) {
        if (b.data === null && zero.length < b.length) zero = Buffer.alloc(b.length)
        const plain = b.data ?? zero.subarray(0, b.length)
        if (!deflate.write(plain)) await new Promise((r) => deflate.once('drain', r))
        yield {plain, encoded: out.length > 0 ? Buffer.concat(out.splice(0)) : undefined}
      }
      await new Promise<void>((resolve, reject) => {
        deflate.once('error', reject)
        deflate.once('end', () => resolve())
        deflate.end()
      })
      yield {encoded: Buffer.concat(out.splice(0))}
    }
    await this.addStreamed(name, METHOD_DEFLATE, pieces())
  }

  /**
   * The central directory and end records; `comment` goes in the end record
   * (readable with `unzip -z`). With `recordSize`, a zero-filled entry
   * PADDING_NAME goes before the central directory, sized so the archive
   * ends on a record boundary: a tape or `dd bs=` copy then holds no bytes
   * after the end record, and unzip, which looks for the end record near
   * the end of the file, still finds it.
   */
  async finish(comment = '', recordSize = 0): Promise<void> {
    if (recordSize > 0) await this.addPadding(comment, recordSize)
    const cdOffset = this.sink.position
    let cdSize = 0
    const batch: Buffer[] = []
    let batchBytes = 0
    for (const {facts, zip64} of this.central) {
      const h = encodeCentralHeader(facts, zip64)
      cdSize += h.length
      batch.push(h)
      batchBytes += h.length
      if (batchBytes >= 256 * 1024) {
        await this.sink.write(Buffer.concat(batch))
        batch.length = 0
        batchBytes = 0
      }
    }
    if (batch.length > 0) await this.sink.write(Buffer.concat(batch))
    await this.sink.write(encodeEnd(this.central.length, cdOffset, cdSize, comment))
  }

  private tailSize(comment: string, extra: CentralFacts | null): number {
    let cd = 0
    for (const {facts, zip64} of this.central) cd += encodeCentralHeader(facts, zip64).length
    if (extra) cd += encodeCentralHeader(extra, false).length
    const cdOffset = extra ? extra.localOffset + PADDING_HEADER + extra.size : this.sink.position
    return cd + encodeEnd(this.central.length + (extra ? 1 : 0), cdOffset, cd, comment).length
  }

  private async addPadding(comment: string, recordSize: number): Promise<void> {
    const facts: CentralFacts = {name: PADDING_NAME, method: METHOD_STORED, flags: 0, crc: 0, compressedSize: 0, size: 0, dosTime: this.dosTime, localOffset: this.sink.position}
    // The tail's size depends (by a few bytes, at 4 GiB and 65535-entry
    // edges) on the padding's own size: settle it in a few rounds.
    for (let round = 0; round < 4; round++) {
      const end = this.sink.position + PADDING_HEADER + facts.size + this.tailSize(comment, facts)
      const short = (recordSize - (end % recordSize)) % recordSize
      if (short === 0) break
      facts.size += short
    }
    facts.compressedSize = facts.size
    const zeros = Buffer.alloc(facts.size)
    facts.crc = crc32(zeros)
    await this.sink.write(encodeLocalHeader(facts, false))
    await this.sink.write(zeros)
    this.central.push({facts, zip64: false})
  }
}

/** The record-padding entry's name (never change: readers skip it). */
export const PADDING_NAME = 'PADDING'
const PADDING_HEADER = 30 + PADDING_NAME.length
