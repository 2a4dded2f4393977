// Reads a vdsnap pax tar archive in one forward pass (a pipe, a tape, a
// file): headers, pax extended headers (path, size, GNU sparse 1.0), then
// each entry's data. Regular entries come back whole; the sparse image
// member comes back as a stream the caller consumes to its end, holes
// expanded to zeros. finish() checks that only zeros follow the end.
import {DataError} from '../errors.js'
import type {ByteReader} from './byte-reader.js'
import type {EntryReader, StreamEntry} from './archive-source.js'
import {BLOCK, decodeHeader, decodePax, decodeSparseMap, TYPE_FILE, TYPE_PAX, type Segment} from './tar-format.js'

const MAX_WHOLE_ENTRY = 64 * 1024 * 1024
const MAX_PAX = 1024 * 1024
const ZERO_PIECE = Buffer.alloc(4 * 1024 * 1024)

interface SparseInfo {
  dataSize: number
  realSize: number
}

export class TarStreamReader implements EntryReader {
  private readonly sparse = new Map<StreamEntry, SparseInfo>()

  constructor(private readonly r: ByteReader) {}

  get describe(): string {
    return this.r.describe
  }

  private async block(n: number, what: string): Promise<Buffer> {
    return this.r.read(Math.ceil(n / BLOCK) * BLOCK, what)
  }

  async next(): Promise<StreamEntry | null> {
    let h = decodeHeader(await this.r.read(BLOCK, 'a tar header'), this.describe)
    if (!h) return null
    let pax = new Map<string, string>()
    if (h.type === TYPE_PAX) {
      if (h.size > MAX_PAX) throw new DataError(`${this.describe}: a pax header claims ${h.size} bytes (corrupt)`, {code: 'ARCHIVE_CORRUPT'})
      pax = decodePax((await this.block(h.size, 'a pax header')).subarray(0, h.size), this.describe)
      h = decodeHeader(await this.r.read(BLOCK, 'a tar header'), this.describe)
      if (!h) throw new DataError(`${this.describe}: a pax header is not followed by an entry (corrupt)`, {code: 'ARCHIVE_CORRUPT'})
    }
    if (h.type !== TYPE_FILE && h.type !== '\0') throw new DataError(`${this.describe}: entry ${h.name} has tar type ${JSON.stringify(h.type)}, which vdsnap never writes`, {code: 'ARCHIVE_CORRUPT'})
    const size = pax.has('size') ? Number(pax.get('size')) : h.size
    if (!Number.isSafeInteger(size) || size < 0) throw new DataError(`${this.describe}: entry ${h.name} has an impossible size (corrupt)`, {code: 'ARCHIVE_CORRUPT'})
    if (pax.get('GNU.sparse.major') === '1') {
      const realSize = Number(pax.get('GNU.sparse.realsize'))
      const name = pax.get('GNU.sparse.name')
      if (!name || !Number.isSafeInteger(realSize) || realSize < 0) throw new DataError(`${this.describe}: a sparse entry lacks its name or size (corrupt)`, {code: 'ARCHIVE_CORRUPT'})
      const e: StreamEntry = {header: {name}, streamed: true}
      this.sparse.set(e, {dataSize: size, realSize})
      return e
    }
    const name = pax.get('path') ?? h.name
    if (size > MAX_WHOLE_ENTRY) throw new DataError(`${this.describe}: entry ${name} claims ${size} bytes, more than any vdsnap entry of its kind`, {code: 'ARCHIVE_CORRUPT'})
    const data = (await this.block(size, `entry ${name}`)).subarray(0, size)
    return {header: {name}, data, streamed: false}
  }

  /** The sparse member's full image: each hole as zeros, each segment's data as read. */
  async *image(e: StreamEntry): AsyncGenerator<Buffer> {
    const info = this.sparse.get(e)
    if (!info) throw new DataError(`${this.describe}: entry ${e.header.name} is not a sparse image (corrupt)`, {code: 'ARCHIVE_CORRUPT'})
    let head = Buffer.alloc(0)
    let parsed: {segments: Segment[]; mapBytes: number} | null = null
    while (!parsed) {
      if (head.length >= Math.min(info.dataSize, 64 * BLOCK) + BLOCK) throw new DataError(`${this.describe}: the sparse map of ${e.header.name} is malformed (corrupt)`, {code: 'ARCHIVE_CORRUPT'})
      head = Buffer.concat([head, await this.r.read(BLOCK, `the sparse map of ${e.header.name}`)])
      parsed = decodeSparseMap(head, info.realSize, this.describe)
    }
    const extra = parsed.mapBytes - head.length
    if (extra > 0) await this.r.read(extra, `the sparse map of ${e.header.name}`)
    const dataBytes = parsed.segments.reduce((n, s) => n + s.length, 0)
    if (parsed.mapBytes + dataBytes !== info.dataSize) throw new DataError(`${this.describe}: the sparse map of ${e.header.name} disagrees with its size (corrupt)`, {code: 'ARCHIVE_CORRUPT'})
    let pos = 0
    for (const s of [...parsed.segments, {offset: info.realSize, length: 0}]) {
      for (; pos < s.offset; ) {
        const n = Math.min(ZERO_PIECE.length, s.offset - pos)
        yield ZERO_PIECE.subarray(0, n)
        pos += n
      }
      for (let done = 0; done < s.length; ) {
        const n = Math.min(4 * 1024 * 1024, s.length - done)
        yield await this.r.read(n, `entry ${e.header.name}`)
        done += n
        pos += n
      }
    }
    const r = info.dataSize % BLOCK
    if (r > 0) await this.r.read(BLOCK - r, `entry ${e.header.name}`)
  }

  /** After the first end block: only zeros may follow (the second end block, record padding). */
  async finish(): Promise<void> {
    const rest = await this.r.drain()
    if (rest.nonZero) throw new DataError(`${this.describe}: data follows the end of the archive (two archives concatenated?)`, {code: 'ARCHIVE_CORRUPT'})
  }
}
