// Export: one snapshot as a self-contained archive, written forward only.
//
// 1. Resolve the snapshot's chain to one entry per block (metadata only)
//    and count its distinct chunks.
// 2. Write manifest.json, README.txt, then (chunks archives) config, key
//    slots, the snapshot object made a full and the resolved full index,
//    so a reader in one pass knows everything before the first chunk.
// 3. Walk the blocks in offset order through the BlockSource: each chunk is
//    loaded once while its uses are in flight, verified, and its stored
//    object written at its first use (compressed, encrypted as stored);
//    the plaintext feeds the image SHA-256. Portable archives deflate the
//    plaintext into one image entry instead.
// 4. SHA256SUMS with the image hash, then the central directory.
// The output is a temporary file renamed when complete, or a pipe or tape.
import {createHash, randomBytes, type Hash} from 'node:crypto'
import {encodeObject, ObjectKind} from '../chunk/object-codec.js'
import {ChangedBlockMap} from '../cbt/changed-block-map.js'
import {encodeIndex} from '../repo/index-codec.js'
import {listKeySlots} from '../repo/keys.js'
import type {Manifest} from '../repo/manifest.js'
import type {Repository} from '../repo/repository.js'
import {BlockSource} from '../repo/block-source.js'
import {ARCHIVE_FORMAT, chunkEntryName, imageName, SUMS_NAME, type ArchiveManifest} from './layout.js'
import {VolumeWriter} from './volume-writer.js'
import {vdsnapVersion} from './version.js'
import type {ArchiveWriter, ImageBlock} from './archive-writer.js'
import type {Segment} from './tar-format.js'

export interface ExportOptions {
  snapshot: Manifest
  to: string
  portable?: boolean
  /** zip (default, ZIP64) or tar (POSIX pax, GNU sparse image). */
  format?: 'zip' | 'tar'
  recordSize?: number
  /** Cut the archive into volumes of at most this many bytes (NAME.001, …). */
  split?: number
  force?: boolean
  onProgress?: (done: number, total: number) => void
}

export interface ExportResult {
  snapshot: string
  disk: string
  to: string
  kind: 'chunks' | 'portable'
  virtualSize: number
  chunks: number
  chunkBytes: number
  archiveBytes: number
  /** Split archives: the volume files, in order. */
  volumes?: string[]
  imageSha256: string
  durationMs: number
}

const ZERO_BLOCK_CACHE = new Map<number, Buffer>()
function zeros(n: number): Buffer {
  let z = ZERO_BLOCK_CACHE.get(n)
  if (!z) ZERO_BLOCK_CACHE.set(n, (z = Buffer.alloc(n)))
  return z
}

export async function runExport(repo: Repository, opts: ExportOptions): Promise<ExportResult> {
  const started = Date.now()
  const snap = opts.snapshot
  const portable = opts.portable ?? false
  // rehash false: an encrypted chunk is proven by its GCM tag (its AAD holds
  // its id); plaintext chunks are always re-hashed. The image SHA-256 is a
  // second pass over every byte already, so this saves the third.
  const source = await BlockSource.open(repo, snap, {keepStored: !portable, rehash: false})
  let out: VolumeWriter | undefined
  try {
    const first = firstUses(source)
    const manifest = archiveManifest(snap, source, first.size, portable, repo.encKey !== undefined)
    const head = portable ? [] : await repositoryHead(repo, snap, source, manifest)
    out = new VolumeWriter({to: opts.to, force: opts.force, recordSize: opts.recordSize, split: opts.split, format: opts.format, time: snap.time, comment: `vdsnap archive of ${snap.disk} snapshot ${snap.id}; see README.txt`}, manifest, head)
    await out.open()
    const hash = createHash('sha256')
    let chunkBytes = 0
    if (portable) await writeImage(out.writer, source, manifest.image, hash, opts.onProgress)
    else chunkBytes = await writeChunks(out, source, first, hash, opts.onProgress)
    const sha = hash.digest('hex')
    await out.finish(sha)
    return {
      snapshot: snap.id,
      disk: snap.disk,
      to: opts.to,
      kind: manifest.kind,
      virtualSize: source.virtualSize,
      chunks: first.size,
      chunkBytes,
      archiveBytes: out.bytes,
      volumes: opts.split === undefined ? undefined : out.paths,
      imageSha256: sha,
      durationMs: Date.now() - started,
    }
  } catch (e) {
    await out?.abort()
    throw e
  } finally {
    await source.close()
  }
}

/** The block at which each distinct chunk is first used, in offset order. */
function firstUses(source: BlockSource): Map<string, number> {
  const first = new Map<string, number>()
  for (let b = 0; b < source.blockCount; b++) {
    if (source.isZero(b)) continue
    const hex = source.entry(b).toString('hex')
    if (!first.has(hex)) first.set(hex, b)
  }
  return first
}

function archiveManifest(snap: Manifest, source: BlockSource, chunkCount: number, portable: boolean, encrypted: boolean): ArchiveManifest {
  return {
    vdsnapArchive: ARCHIVE_FORMAT,
    vdsnapVersion: vdsnapVersion(),
    kind: portable ? 'portable' : 'chunks',
    disk: snap.disk,
    snapshot: snap.id,
    time: snap.time,
    virtualSize: source.virtualSize,
    blockSize: source.blockSize,
    blockCount: source.blockCount,
    chunkCount: portable ? 0 : chunkCount,
    image: imageName(snap.disk),
    imageSha256: `in ${SUMS_NAME}, the last entry (known only once the image has streamed by)`,
    encryption: portable || !encrypted ? 'none' : 'aes-256-gcm',
    snapshotObject: portable ? undefined : `snapshots/${snap.id}`,
    source: snap.source?.path ?? '',
    tags: snap.tags ?? [],
    archiveId: randomBytes(8).toString('hex'),
  }
}

/** config, key slots, the snapshot object (made a full, no parent) and the resolved full index; names the index in `manifest`. */
async function repositoryHead(repo: Repository, snap: Manifest, source: BlockSource, manifest: ArchiveManifest): Promise<[string, Buffer][]> {
  const head: [string, Buffer][] = [['config', await repo.backend.load('config')]]
  if (repo.encKey) {
    for (const {id} of await listKeySlots(repo.backend)) head.push([`keys/${id}`, await repo.backend.load(`keys/${id}`)])
  }
  const plainIndex = encodeIndex({
    kind: 'full',
    blockSize: source.blockSize,
    virtualSize: source.virtualSize,
    blockCount: source.blockCount,
    cbm: ChangedBlockMap.all(source.blockCount),
    entries: source.resolved.entries,
  })
  const indexId = repo.digest(plainIndex).toString('hex')
  const level = Math.max(1, repo.level)
  const indexName = `indexes/${indexId}`
  manifest.indexObject = indexName
  const full: Manifest = {...snap, parent: null, index: indexId, indexKind: 'full', chainLength: 0}
  const snapName = `snapshots/${snap.id}`
  head.push([snapName, encodeObject(ObjectKind.Manifest, snapName, Buffer.from(JSON.stringify(full)), {level, key: repo.encKey})])
  head.push([indexName, encodeObject(ObjectKind.Index, indexName, plainIndex, {level, key: repo.encKey})])
  return head
}

async function writeChunks(out: VolumeWriter, source: BlockSource, first: Map<string, number>, hash: Hash, onProgress?: (d: number, t: number) => void): Promise<number> {
  let bytes = 0
  for await (const block of source.blocks()) {
    hash.update(block.data ?? zeros(block.length))
    if (block.data === null) continue
    const hex = source.entry(block.index).toString('hex')
    const stored = source.takeStored(hex)
    if (first.get(hex) === block.index) {
      if (!stored) throw new Error(`internal: chunk ${hex.slice(0, 16)} was not kept for block ${block.index}`)
      await out.addChunk(chunkEntryName(hex), stored)
      bytes += stored.length
    }
    onProgress?.(block.offset + block.length, source.virtualSize)
  }
  return bytes
}

/** The plain disk image as one entry (zip: deflated; tar: a sparse member); the plaintext feeds the hash. */
async function writeImage(w: ArchiveWriter, source: BlockSource, name: string, hash: Hash, onProgress?: (d: number, t: number) => void): Promise<void> {
  async function* blocks(): AsyncGenerator<ImageBlock> {
    for await (const block of source.blocks()) {
      hash.update(block.data ?? zeros(block.length))
      yield block
      onProgress?.(block.offset + block.length, source.virtualSize)
    }
  }
  await w.addImage(name, source.virtualSize, dataSegments(source), blocks())
}

/** Runs of non-zero blocks, from the index alone. */
function dataSegments(source: BlockSource): Segment[] {
  const out: Segment[] = []
  for (let b = 0; b < source.blockCount; b++) {
    if (source.isZero(b)) continue
    const offset = b * source.blockSize
    const last = out[out.length - 1]
    if (last && last.offset + last.length === offset) last.length += source.blockLength(b)
    else out.push({offset, length: source.blockLength(b)})
  }
  return out
}
