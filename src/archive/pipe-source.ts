// A vdsnap archive (ZIP or tar) read in one forward pass from a pipe or a tape, with
// no temporary copy:
//
// 1. The head (manifest.json, README.txt, config, key slots, snapshot
//    object, index) is read before any chunk; the caller opens and checks
//    it before anything is written.
// 2. Chunks are asked for in the order of their first use by offset, which
//    is the order export writes them in, so each request is normally the
//    next entry. An entry that arrives before it is asked for, or a chunk
//    used again further on, is held (as stored, compressed) until the block
//    of its last use has passed; planUses() says which those are. More than
//    `maxHeldBytes` held means the archive was written in another order:
//    the error says to restore from a file instead.
// 3. imageSha256() reads on to SHA256SUMS and through the central
//    directory, checking the archive is whole.
import type {Readable} from 'node:stream'
import {DataError, UsageError} from '../errors.js'
import type {ArchiveSource, EntryReader, StreamEntry} from './archive-source.js'
import {ByteReader} from './byte-reader.js'
import {decodeManifest, decodeSums, MANIFEST_NAME, SUMS_NAME, type ArchiveManifest} from './layout.js'
import {ZipStreamReader} from './zip-stream-reader.js'
import {TarStreamReader} from './tar-stream-reader.js'
import {SIG_LOCAL} from './zip-format.js'
import {PADDING_NAME} from './zip-writer.js'

export const MAX_HELD_BYTES = 1024 * 1024 * 1024
const CHUNK_ENTRY = /^chunks\/[0-9a-f]{2}\/([0-9a-f]{64})$/

/** Opens a ZIP or tar archive (told apart by its first bytes) for one forward pass. */
export async function openPipe(input: Readable, describe: string, maxHeldBytes = MAX_HELD_BYTES): Promise<ArchiveSource> {
  return openEntries(await entryReader(input, describe), describe, maxHeldBytes)
}

/** A forward entry reader over `input`, ZIP or tar by its first bytes. */
export async function entryReader(input: Readable, describe: string): Promise<EntryReader> {
  const bytes = new ByteReader(input, describe)
  const magic = await bytes.peek(4)
  return magic.length === 4 && magic.readUInt32LE(0) === SIG_LOCAL ? new ZipStreamReader(bytes) : new TarStreamReader(bytes)
}

/** Reads the manifest and the head from `zip` (one archive, or tar volumes chained in order). */
export async function openEntries(zip: EntryReader, describe: string, maxHeldBytes = MAX_HELD_BYTES): Promise<ArchiveSource> {
  const first = await zip.next()
  if (!first || first.streamed || first.header.name !== MANIFEST_NAME) throw new DataError(`${describe} does not begin with ${MANIFEST_NAME}: not a vdsnap archive`, {code: 'ARCHIVE_CORRUPT'})
  const manifest = decodeManifest(first.data, describe)
  const head = new Map<string, Buffer>()
  let pending: StreamEntry | null = null
  for (;;) {
    const e = await zip.next()
    if (!e) break
    if (e.streamed || CHUNK_ENTRY.test(e.header.name) || e.header.name === SUMS_NAME) {
      pending = e
      break
    }
    head.set(e.header.name, e.data)
    if (e.header.name.startsWith('indexes/')) break
  }
  return new PipeSource(zip, manifest, head, maxHeldBytes, pending)
}

class PipeSource implements ArchiveSource {
  private held = new Map<string, Buffer>()
  private heldBytes = 0
  private lastUse = new Map<string, number>()
  private queue: Promise<unknown> = Promise.resolve()
  private sums: string | null = null

  constructor(
    private readonly zip: EntryReader,
    readonly manifest: ArchiveManifest,
    readonly head: Map<string, Buffer>,
    private readonly maxHeldBytes: number,
    private pending: StreamEntry | null,
  ) {}

  get describe(): string {
    return this.zip.describe
  }

  planUses(lastUse: Map<string, number>): void {
    this.lastUse = lastUse
  }

  loadChunk(hex: string, atBlock: number): Promise<Buffer> {
    // One request at a time: the stream has a single position.
    const p = this.queue.then(() => this.find(hex, atBlock))
    this.queue = p.catch(() => {})
    return p
  }

  private async find(hex: string, atBlock: number): Promise<Buffer> {
    for (const [h, obj] of this.held) {
      if ((this.lastUse.get(h) ?? -1) < atBlock) this.release(h, obj)
    }
    const kept = this.held.get(hex)
    if (kept) return kept
    for (;;) {
      const e = await this.nextEntry()
      const m = e && !e.streamed ? CHUNK_ENTRY.exec(e.header.name) : null
      if (!e || !m || e.streamed) {
        this.pending = e
        throw new DataError(`${this.describe} lacks chunk ${hex.slice(0, 16)}… (${chunkName(hex)}) needed for block ${atBlock}: incomplete or corrupt archive`, {code: 'ARCHIVE_CORRUPT', object: chunkName(hex)})
      }
      const id = m[1]!
      const last = this.lastUse.get(id)
      if (last === undefined) throw new DataError(`${this.describe}: entry ${e.header.name} is a chunk the archive's index does not use (corrupt or mixed archive)`, {code: 'ARCHIVE_CORRUPT'})
      if (id === hex) {
        if (last > atBlock) this.hold(id, e.data)
        return e.data
      }
      if (last >= atBlock) this.hold(id, e.data)
    }
  }

  private hold(id: string, obj: Buffer): void {
    this.held.set(id, obj)
    this.heldBytes += obj.length
    if (this.heldBytes > this.maxHeldBytes) {
      throw new UsageError(`restoring ${this.describe} from a pipe would hold more than ${Math.round(this.maxHeldBytes / 2 ** 20)} MiB of chunks in memory (its chunks are not in the order vdsnap writes them)`, {
        hint: 'restore from the archive as a file instead',
      })
    }
  }

  private release(id: string, obj: Buffer): void {
    this.held.delete(id)
    this.heldBytes -= obj.length
  }

  private async nextEntry(): Promise<StreamEntry | null> {
    if (this.pending) {
      const e = this.pending
      this.pending = null
      return e
    }
    return this.zip.next()
  }

  async *image(): AsyncIterable<Buffer> {
    const e = await this.nextEntry()
    if (!e || !e.streamed || e.header.name !== this.manifest.image) throw new DataError(`${this.describe}: entry ${this.manifest.image} is not where a portable archive holds it (corrupt)`, {code: 'ARCHIVE_CORRUPT'})
    yield* this.zip.image(e)
  }

  async imageSha256(): Promise<string> {
    if (this.sums) return this.sums
    for (;;) {
      const e = await this.nextEntry()
      if (!e) throw new DataError(`${this.describe} lacks ${SUMS_NAME} (incomplete archive)`, {code: 'ARCHIVE_CORRUPT'})
      if (e.streamed) throw new DataError(`${this.describe}: unexpected entry ${e.header.name} after the image (corrupt)`, {code: 'ARCHIVE_CORRUPT'})
      if (e.header.name === SUMS_NAME) {
        this.sums = decodeSums(e.data, this.describe)
        break
      }
      if (!CHUNK_ENTRY.test(e.header.name)) throw new DataError(`${this.describe}: unexpected entry ${e.header.name} (corrupt or not a vdsnap archive)`, {code: 'ARCHIVE_CORRUPT'})
    }
    let last = await this.zip.next()
    if (last?.header.name === PADDING_NAME && !last.streamed) last = await this.zip.next()
    if (last) throw new DataError(`${this.describe}: unexpected entry ${last.header.name} after ${SUMS_NAME} (corrupt)`, {code: 'ARCHIVE_CORRUPT'})
    await this.zip.finish()
    return this.sums
  }

  async close(): Promise<void> {
    this.held.clear()
  }
}

function chunkName(hex: string): string {
  return `chunks/${hex.slice(0, 2)}/${hex}`
}
