// Export's output, whole or in volumes. With `split`, the archive is cut
// into NAME.001, NAME.002, … each a complete archive of its own (passes
// `unzip -t`, or for tar `tar -tf`, alone) that opens with manifest.json carrying its volume
// number, README.txt and the repository head (config, key slots, snapshot,
// index), then as many chunks as fit; the last volume ends with
// SHA256SUMS and VOLUMES (the volume count), so a reader can name the
// volumes that are missing. A volume is cut before a chunk that would take
// it past `split` bytes, counting the central directory still to come
// (ZIP) and the record padding.
import {unlink} from 'node:fs/promises'
import {UsageError} from '../errors.js'
import type {ArchiveWriter} from './archive-writer.js'
import {encodeSums, MANIFEST_NAME, README_NAME, SUMS_NAME, VOLUMES_NAME, type ArchiveManifest} from './layout.js'
import {archiveReadme} from './readme.js'
import {openSink, RecordSink, type ByteSink} from './sink.js'
import {TarWriter} from './tar-writer.js'
import {dosDateTime} from './zip-format.js'
import {ZipWriter} from './zip-writer.js'

export interface VolumeOptions {
  to: string
  force?: boolean
  recordSize?: number
  split?: number
  format?: 'zip' | 'tar'
  time: string
  comment: string
}

/** Per entry in a ZIP central directory, at most: header, a chunk's name, a ZIP64 extra field. */
const CENTRAL_PER_ENTRY = 46 + 80 + 28
const END_RESERVE = 4096

/** A tar volume's bytes for a chunk of `size` and what must still fit after it: SHA256SUMS and VOLUMES (header and a data block each), the two end blocks. */
function tarCost(size: number): number {
  return 512 + Math.ceil(size / 512) * 512 + 2 * 1024 + 1024
}

export class VolumeWriter {
  readonly paths: string[] = []
  private sink?: ByteSink
  private w?: ArchiveWriter
  private entries = 0
  private chunksInVolume = 0
  private done = 0

  constructor(
    private readonly o: VolumeOptions,
    private readonly manifest: ArchiveManifest,
    private readonly head: [string, Buffer][],
  ) {
    if (o.split !== undefined) {
      if (o.to === '-') throw new UsageError('--split writes volume files (NAME.001, …): give --to a file name, not -')
      if (manifest.kind === 'portable') throw new UsageError('--split applies to chunk archives; a portable image is one entry that cannot be cut')
      const least = 2 * manifest.blockSize + 1024 * 1024 + (o.recordSize ?? 0)
      if (o.split < least) throw new UsageError(`--split ${o.split} is too small for this snapshot`, {hint: `use at least ${least} bytes (two blocks and the archive's head)`})
    }
  }

  /** Bytes written so far, all volumes. */
  get bytes(): number {
    return this.done + (this.sink?.position ?? 0)
  }

  async open(): Promise<void> {
    const n = this.paths.length + 1
    const path = this.o.split === undefined ? this.o.to : `${this.o.to}.${String(n).padStart(3, '0')}`
    const base = await openSink(path, this.o.force)
    this.paths.push(path)
    this.sink = this.o.recordSize ? new RecordSink(base, this.o.recordSize) : base
    this.w = this.o.format === 'tar' ? new TarWriter(this.sink, Math.floor(Date.parse(this.o.time) / 1000)) : new ZipWriter(this.sink, dosDateTime(new Date(this.o.time)))
    this.entries = 0
    this.chunksInVolume = 0
    const m = this.o.split === undefined ? this.manifest : {...this.manifest, volume: n}
    await this.add(MANIFEST_NAME, Buffer.from(JSON.stringify(m, null, 2) + '\n'))
    await this.add(README_NAME, Buffer.from(archiveReadme(m)))
    for (const [name, data] of this.head) await this.add(name, data)
  }

  get writer(): ArchiveWriter {
    return this.w!
  }

  private async add(name: string, data: Buffer): Promise<void> {
    await this.w!.addStored(name, data)
    this.entries++
  }

  /** A chunk entry; with split, first closes the volume it would overflow. */
  async addChunk(name: string, data: Buffer): Promise<void> {
    if (this.o.split !== undefined && this.chunksInVolume > 0) {
      const cost = this.o.format === 'tar' ? tarCost(data.length) : 30 + name.length + data.length + (this.entries + 3) * CENTRAL_PER_ENTRY + END_RESERVE
      if (this.sink!.position + cost + (this.o.recordSize ?? 0) > this.o.split) {
        await this.close()
        await this.open()
      }
    }
    await this.add(name, data)
    this.chunksInVolume++
  }

  /** The last entries (SHA256SUMS, and VOLUMES when split) and the end of the last volume. */
  async finish(sha256: string): Promise<void> {
    await this.add(SUMS_NAME, encodeSums(sha256, this.manifest.image))
    if (this.o.split !== undefined) await this.add(VOLUMES_NAME, Buffer.from(`${this.paths.length}\n`))
    await this.close()
  }

  private async close(): Promise<void> {
    await this.w!.finish(this.o.comment, this.o.recordSize)
    await this.sink!.finish()
    this.done += this.sink!.position
    this.sink = undefined
  }

  /** Drops the volume being written and the complete ones before it. */
  async abort(): Promise<void> {
    await this.sink?.abort()
    const complete = this.sink ? this.paths.slice(0, -1) : this.paths
    if (this.o.split !== undefined) for (const p of complete) await unlink(p).catch(() => {})
  }
}
