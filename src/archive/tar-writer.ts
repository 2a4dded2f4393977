// A forward-only POSIX pax tar writer holding the same entries as the ZIP
// writer, for tape users whose tooling is tar. Every entry's size is known
// before it is written (tar has no data descriptors): chunks and metadata
// are in hand, and the portable image is a GNU sparse 1.0 member whose map
// (the runs of non-zero blocks) comes from the index before any data, so
// `tar -xSf` gives back a sparse raw image.
import type {ArchiveWriter, ImageBlock} from './archive-writer.js'
import type {ByteSink} from './sink.js'
import {BLOCK, encodeHeader, encodePax, encodeSparseMap, TYPE_FILE, TYPE_PAX, type Segment} from './tar-format.js'

const MAX_OCTAL_SIZE = 8 ** 11 - 1
const ZEROS = Buffer.alloc(BLOCK * 2)

export class TarWriter implements ArchiveWriter {
  constructor(
    private readonly sink: ByteSink,
    private readonly mtime: number,
  ) {}

  async addStored(name: string, parts: Buffer | Buffer[]): Promise<void> {
    const list = Array.isArray(parts) ? parts : [parts]
    const size = list.reduce((n, p) => n + p.length, 0)
    await this.header(name, size, [])
    for (const p of list) await this.sink.write(p)
    await this.pad(size)
  }

  async addImage(name: string, size: number, segments: Segment[], blocks: AsyncIterable<ImageBlock>): Promise<void> {
    const map = [...segments]
    // A trailing hole is marked by an empty segment at the end, as GNU tar writes it.
    if (map.length === 0 || map[map.length - 1]!.offset + map[map.length - 1]!.length < size) map.push({offset: size, length: 0})
    const mapBytes = encodeSparseMap(map)
    const dataBytes = segments.reduce((n, s) => n + s.length, 0)
    const records: [string, string][] = [
      ['GNU.sparse.major', '1'],
      ['GNU.sparse.minor', '0'],
      ['GNU.sparse.name', name],
      ['GNU.sparse.realsize', String(size)],
    ]
    await this.header(`GNUSparseFile.0/${name}`, mapBytes.length + dataBytes, records)
    await this.sink.write(mapBytes)
    let written = 0
    for await (const b of blocks) {
      if (b.data === null) continue
      await this.sink.write(b.data)
      written += b.data.length
    }
    if (written !== dataBytes) throw new Error(`internal: sparse member ${name} wrote ${written} data bytes, its map says ${dataBytes}`)
    await this.pad(mapBytes.length + dataBytes)
  }

  /** Two zero blocks end a tar archive; record padding (zeros) may follow. */
  async finish(): Promise<void> {
    await this.sink.write(ZEROS)
  }

  private async header(name: string, size: number, records: [string, string][]): Promise<void> {
    const pax = [...records]
    if (Buffer.byteLength(name) > 100) pax.push(['path', name])
    if (size > MAX_OCTAL_SIZE) pax.push(['size', String(size)])
    if (pax.length > 0) {
      const body = encodePax(pax)
      await this.sink.write(encodeHeader({name: `PaxHeaders/${name}`.slice(0, 100), size: body.length, mtime: this.mtime, type: TYPE_PAX}))
      await this.sink.write(body)
      await this.pad(body.length)
    }
    await this.sink.write(encodeHeader({name: Buffer.byteLength(name) > 100 ? name.slice(-100) : name, size, mtime: this.mtime, type: TYPE_FILE}))
  }

  private async pad(size: number): Promise<void> {
    const r = size % BLOCK
    if (r > 0) await this.sink.write(ZEROS.subarray(0, BLOCK - r))
  }
}
