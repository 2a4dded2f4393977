// Split tar archives, read from their volume files in one forward pass.
// Each volume is a complete tar (GNU tar lists it alone) that begins with
// manifest.json (carrying its volume number) and the repository head, then
// chunks in the order of first use; the last ends with SHA256SUMS and
// VOLUMES. tar has no index to seek by, so:
// 1. each volume's manifest is read from its first entry, and its tail is
//    looked at for VOLUMES (the last non-zero 512-byte block is VOLUMES'
//    data, the block before it VOLUMES' header): orderVolumes then names
//    any missing volume before a byte is restored;
// 2. the volumes are chained in number order into one stream of entries,
//    the head each later volume repeats skipped (its manifest checked), so
//    the pipe reader reads them as the one archive they were cut from.
import {createReadStream, type ReadStream} from 'node:fs'
import {open} from 'node:fs/promises'
import {DataError, toVdsnapError} from '../errors.js'
import type {ArchiveSource, EntryReader, StreamEntry} from './archive-source.js'
import {decodeManifest, MANIFEST_NAME, VOLUMES_NAME, type ArchiveManifest} from './layout.js'
import {entryReader, openEntries} from './pipe-source.js'
import {BLOCK, decodeHeader} from './tar-format.js'
import {describeVolumes, orderVolumes, type VolumeFacts} from './volume-set.js'

/** Record padding after the end of a tar volume is at most one record (64 MiB) and the two end blocks. */
const MAX_TAIL_SCAN = 64 * 1024 * 1024 + 4 * BLOCK
/** Entries every volume repeats before its chunks. */
const HEAD_ENTRY = /^(manifest\.json|README\.txt|config|keys\/[0-9a-f]+|snapshots\/[0-9a-f]{64}|indexes\/[0-9a-f]{64})$/

const readStream = (path: string): ReadStream => createReadStream(path, {highWaterMark: 1024 * 1024})

export async function openTarVolumes(paths: string[]): Promise<ArchiveSource> {
  const facts: VolumeFacts[] = []
  for (const p of paths) facts.push({describe: p, manifest: await firstManifest(p), total: await volumeTotal(p)})
  const vols = orderVolumes(facts)
  const describe = describeVolumes(vols[0]!.describe, vols.length)
  return openEntries(new ChainedVolumes(vols), describe)
}

async function firstManifest(path: string): Promise<ArchiveManifest> {
  const input = readStream(path)
  try {
    const e = await (await entryReader(input, path)).next()
    if (!e || e.streamed || e.header.name !== MANIFEST_NAME) throw new DataError(`${path} does not begin with ${MANIFEST_NAME}: not a vdsnap archive volume`)
    return decodeManifest(e.data, path)
  } finally {
    input.destroy()
  }
}

/** The volume count when `path` ends with a VOLUMES entry (the last volume), else null. */
async function volumeTotal(path: string): Promise<number | null> {
  const fh = await open(path, 'r').catch((e: unknown) => Promise.reject(toVdsnapError(e, `opening archive ${path}`)))
  try {
    const size = (await fh.stat()).size
    const piece = Buffer.alloc(1024 * 1024)
    let end = size
    let lastNonZero = -1
    while (end > 0 && size - end < MAX_TAIL_SCAN && lastNonZero < 0) {
      const n = Math.min(piece.length, end)
      await fh.read(piece, 0, n, end - n)
      for (let i = n - 1; i >= 0; i--) {
        if (piece[i] !== 0) {
          lastNonZero = end - n + i
          break
        }
      }
      end -= n
    }
    const data = lastNonZero - (lastNonZero % BLOCK)
    if (lastNonZero < 0 || data < BLOCK) return null
    const blocks = Buffer.alloc(2 * BLOCK)
    await fh.read(blocks, 0, 2 * BLOCK, data - BLOCK)
    let header
    try {
      header = decodeHeader(blocks.subarray(0, BLOCK), path)
    } catch {
      return null // a chunk's data, not a header: not the last volume
    }
    if (header?.name !== VOLUMES_NAME || header.size > BLOCK) return null
    return Number(blocks.toString('ascii', BLOCK, BLOCK + header.size).trim())
  } finally {
    await fh.close()
  }
}

/** The entries of volumes 1..N as one archive's: later volumes' heads skipped, VOLUMES dropped. */
class ChainedVolumes implements EntryReader {
  private next_ = 0
  private cur: EntryReader | null = null
  private input: ReadStream | null = null
  private inHead = false

  constructor(private readonly vols: VolumeFacts[]) {}

  get describe(): string {
    return this.cur?.describe ?? this.vols[0]!.describe
  }

  private async openNext(): Promise<void> {
    this.input?.destroy()
    const v = this.vols[this.next_++]!
    this.input = readStream(v.describe)
    this.cur = await entryReader(this.input, v.describe)
    this.inHead = this.next_ > 1
  }

  async next(): Promise<StreamEntry | null> {
    if (!this.cur) await this.openNext()
    for (;;) {
      const e = await this.cur!.next()
      if (!e) {
        if (this.next_ >= this.vols.length) return null
        await this.cur!.finish()
        await this.openNext()
        continue
      }
      if (this.inHead && !e.streamed && HEAD_ENTRY.test(e.header.name)) {
        if (e.header.name === MANIFEST_NAME) this.checkManifest(e.data)
        continue
      }
      this.inHead = false
      if (!e.streamed && e.header.name === VOLUMES_NAME) continue
      return e
    }
  }

  private checkManifest(data: Buffer): void {
    const want = this.vols[this.next_ - 1]!.manifest
    const m = decodeManifest(data, this.describe)
    if (m.volume !== want.volume || m.archiveId !== want.archiveId) throw new DataError(`${this.describe} changed while it was read (its manifest is now volume ${m.volume} of archive ${m.archiveId})`)
  }

  image(e: StreamEntry): AsyncIterable<Buffer> {
    return this.cur!.image(e)
  }

  async finish(): Promise<void> {
    await this.cur!.finish()
    this.input?.destroy()
  }
}
