// Export: one snapshot as a self-contained archive, written forward only.
//
// 1. Resolve the snapshot's chain to one entry per block (metadata only)
//    and list its distinct chunks in the order of first use.
// 2. Write manifest.json, README.txt, then (chunks archives) config, key
//    slots, the snapshot object made a full and the resolved full index,
//    so a reader in one pass knows everything before the first chunk.
// 3. Chunks archives whose image SHA-256 the repository already holds
//    (image-sum.ts): each chunk object is loaded (a few ahead) and written
//    as stored, nothing decoded: the cost is that of copying the objects.
//    Otherwise, walk the blocks in offset order through the BlockSource:
//    each chunk is loaded once, decoded and verified in the worker pool,
//    and its stored object written at its first use; the plaintext feeds
//    the image hash worker, and the hash is recorded for the next export.
//    Portable archives deflate (or sparse-tar) the plaintext instead.
// 4. SHA256SUMS with the image hash, then the central directory.
// The output is a temporary file renamed when complete, or a pipe or tape.
// Readers verify every chunk's digest and the image SHA-256 whatever path
// wrote the archive.
import {randomBytes} from 'node:crypto'
import {encodeObject, ObjectKind} from '../chunk/object-codec.js'
import {ChangedBlockMap} from '../cbt/changed-block-map.js'
import {resolveSnapshot, type ResolvedIndex} from '../repo/chain.js'
import {listKeySlots} from '../repo/keys.js'
import type {Manifest} from '../repo/manifest.js'
import type {Repository} from '../repo/repository.js'
import {BlockSource} from '../repo/block-source.js'
import {ImageHasher} from './image-hasher.js'
import {loadImageSum, saveImageSum} from './image-sum.js'
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
  /** Decode and verify every chunk and hash the image even when the repository holds the image SHA-256. */
  verify?: boolean
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
  /** computed: decoded and hashed now (and recorded); repository: the recorded hash, chunks copied as stored. */
  imageSha256From: 'computed' | 'repository'
  durationMs: number
}

/** Chunk objects loaded ahead of the one being written, on the copying path. */
const COPY_AHEAD = 16

export async function runExport(repo: Repository, opts: ExportOptions): Promise<ExportResult> {
  const started = Date.now()
  const snap = opts.snapshot
  const portable = opts.portable ?? false
  const resolved = await resolveSnapshot(repo, snap)
  const known = portable || opts.verify ? null : await loadImageSum(repo, snap, resolved.virtualSize)
  let out: VolumeWriter | undefined
  let source: BlockSource | undefined
  let hasher: ImageHasher | undefined
  try {
    const first = firstUses(resolved)
    const manifest = archiveManifest(snap, resolved, first.size, portable, repo.chunks.encrypted)
    const head = portable ? [] : await repositoryHead(repo, snap, resolved, manifest)
    out = new VolumeWriter({to: opts.to, force: opts.force, recordSize: opts.recordSize, split: opts.split, format: opts.format, time: snap.time, comment: `vdsnap archive of ${snap.disk} snapshot ${snap.id}; see README.txt`}, manifest, head)
    await out.open()
    let chunkBytes = 0
    let sha: string
    if (known) {
      chunkBytes = await copyChunks(repo, out, first, resolved, opts.onProgress)
      sha = known
    } else {
      // rehash false: an encrypted chunk is proven by its GCM tag (its AAD
      // holds its id); plaintext chunks are always re-hashed.
      // the repository's chunk store stays open: the repository closes it
      const reader = {getObject: (hex: string) => repo.chunks.getObject(hex), decodePool: () => repo.chunks.decodePool(), close: async () => {}}
      source = BlockSource.fromResolved(reader, snap, resolved, {keepStored: !portable, rehash: false})
      hasher = new ImageHasher()
      if (portable) await writeImage(out.writer, source, manifest.image, hasher, opts.onProgress)
      else chunkBytes = await writeChunks(out, source, first, hasher, opts.onProgress)
      sha = await hasher.digest()
    }
    await out.finish(sha)
    if (!known) await saveImageSum(repo, snap, resolved.virtualSize, sha)
    return {
      snapshot: snap.id,
      disk: snap.disk,
      to: opts.to,
      kind: manifest.kind,
      virtualSize: resolved.virtualSize,
      chunks: first.size,
      chunkBytes,
      archiveBytes: out.bytes,
      volumes: opts.split === undefined ? undefined : out.paths,
      imageSha256: sha,
      imageSha256From: known ? 'repository' : 'computed',
      durationMs: Date.now() - started,
    }
  } catch (e) {
    await out?.abort()
    throw e
  } finally {
    await hasher?.close()
    await source?.close()
  }
}

const blockLength = (r: ResolvedIndex, b: number): number => Math.min(r.blockSize, r.virtualSize - b * r.blockSize)

/** The block at which each distinct chunk is first used, in offset order. */
function firstUses(r: ResolvedIndex): Map<string, number> {
  const first = new Map<string, number>()
  for (let b = 0; b < r.blockCount; b++) {
    if (r.entries.isZero(b)) continue
    const hex = r.entries.hex(b)
    if (!first.has(hex)) first.set(hex, b)
  }
  return first
}

function archiveManifest(snap: Manifest, source: ResolvedIndex, chunkCount: number, portable: boolean, encrypted: boolean): ArchiveManifest {
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
    imageSha256: `in ${SUMS_NAME}, the entry after the chunks (known only once the image has streamed by)`,
    encryption: portable || !encrypted ? 'none' : 'aes-256-gcm',
    snapshotObject: portable ? undefined : `snapshots/${snap.id}`,
    source: snap.source?.path ?? '',
    tags: snap.tags ?? [],
    archiveId: randomBytes(8).toString('hex'),
  }
}

/** config, key slots, the snapshot object (made a full, no parent) and the resolved full index; names the index in `manifest`. */
async function repositoryHead(repo: Repository, snap: Manifest, source: ResolvedIndex, manifest: ArchiveManifest): Promise<[string, Buffer][]> {
  const head: [string, Buffer][] = [['config', await repo.backend.load('config')]]
  if (repo.encKey) {
    for (const {id} of await listKeySlots(repo.backend)) head.push([`keys/${id}`, await repo.backend.load(`keys/${id}`)])
  }
  const plainIndex = source.entries.asFull(ChangedBlockMap.all(source.blockCount)).encode()
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

/** The copying path: each distinct chunk's stored object, in first-use order, a few loaded ahead; nothing decoded. */
async function copyChunks(repo: Repository, out: VolumeWriter, first: Map<string, number>, r: ResolvedIndex, onProgress?: (d: number, t: number) => void): Promise<number> {
  const order = [...first]
  const ahead: Promise<Buffer>[] = []
  let next = 0
  const fill = () => {
    while (ahead.length < COPY_AHEAD && next < order.length) {
      const p = repo.chunks.getObject(order[next++]![0])
      p.catch(() => {}) // surfaced when awaited below
      ahead.push(p)
    }
  }
  fill()
  let bytes = 0
  for (const [hex, block] of order) {
    const stored = await ahead.shift()!
    fill()
    await out.addChunk(chunkEntryName(hex), stored)
    bytes += stored.length
    onProgress?.(Math.min(r.virtualSize, (block + 1) * r.blockSize), r.virtualSize)
  }
  onProgress?.(r.virtualSize, r.virtualSize)
  return bytes
}

/** The decoding path: blocks in offset order, each chunk's stored object written at its first use, every block hashed. */
async function writeChunks(out: VolumeWriter, source: BlockSource, first: Map<string, number>, hasher: ImageHasher, onProgress?: (d: number, t: number) => void): Promise<number> {
  let bytes = 0
  for await (const block of source.blocks()) {
    await hasher.update(block.data, block.length)
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
async function writeImage(w: ArchiveWriter, source: BlockSource, name: string, hasher: ImageHasher, onProgress?: (d: number, t: number) => void): Promise<void> {
  async function* blocks(): AsyncGenerator<ImageBlock> {
    for await (const block of source.blocks()) {
      await hasher.update(block.data, block.length)
      yield block
      onProgress?.(block.offset + block.length, source.virtualSize)
    }
  }
  await w.addImage(name, source.virtualSize, dataSegments(source.resolved), blocks())
}

/** Runs of non-zero blocks, from the index alone. */
function dataSegments(r: ResolvedIndex): Segment[] {
  const out: Segment[] = []
  for (let b = 0; b < r.blockCount; b++) {
    if (r.entries.isZero(b)) continue
    const offset = b * r.blockSize
    const last = out[out.length - 1]
    if (last && last.offset + last.length === offset) last.length += blockLength(r, b)
    else out.push({offset, length: blockLength(r, b)})
  }
  return out
}
