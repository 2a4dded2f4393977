// Opening an archive for restore, check and import: everything is checked
// before a single byte goes to a target or a repository.
//
// 1. The reader: a path is read by entry (node-stream-zip), "-" (stdin), a
//    FIFO or a tape in one forward pass.
// 2. Chunks archives: the config, the key slots (opened with the password
//    alone), the snapshot object and the index are decoded, and the
//    manifest's facts are checked against them.
// 3. blocks(): a BlockSource over the archive (chunks: each verified against
//    its id in the worker pool) or the portable image cut into blocks; both
//    feed restore's copyBlocks. The image SHA-256 is computed on the way and
//    compared with SHA256SUMS by verifyImage() before the target is kept.
import {createReadStream} from 'node:fs'
import {stat} from 'node:fs/promises'
import {decodeObject, ObjectKind} from '../chunk/object-codec.js'
import {DataError, PasswordError, UsageError, toVdsnapError} from '../errors.js'
import {parseConfig, type RepoConfig} from '../repo/config.js'
import {FixedIndex} from '../repo/fixed-index.js'
import {openKeySlot, type KeySlot, type MasterKey} from '../repo/keys.js'
import type {Manifest} from '../repo/manifest.js'
import type {ResolvedIndex} from '../repo/chain.js'
import {ChunkCodec} from '../repo/chunk-store.js'
import {BlockSource, type BlockSourceOptions} from '../repo/block-source.js'
import type {BlockStream} from '../repo/block-stream.js'
import type {ArchiveSource} from './archive-source.js'
import {ImageHasher} from './image-hasher.js'
import {PortableBlocks} from './portable-blocks.js'
import {isZipFile, openZipFile} from './zip-file-source.js'
import {openPipe} from './pipe-source.js'
import {openVolumes} from './volume-source.js'

export interface OpenedArchive {
  source: ArchiveSource
  snapshot: Manifest
  config?: RepoConfig
  master: MasterKey | null
  resolved?: ResolvedIndex
}

export async function openArchiveSource(path: string): Promise<ArchiveSource> {
  if (path === '-') return openPipe(process.stdin, 'the archive on stdin')
  const st = await stat(path).catch((e: unknown) => Promise.reject(toVdsnapError(e, `opening archive ${path}`)))
  if (st.isFIFO() || st.isCharacterDevice()) return openPipe(createReadStream(path, {highWaterMark: 1024 * 1024}), path)
  if (!st.isFile()) throw new UsageError(`${path} is not an archive file, a pipe or a tape`)
  // A ZIP file is read by entry; a tar file (no index to seek by) in one pass.
  if (await isZipFile(path)) return openZipFile(path)
  return openPipe(createReadStream(path, {highWaterMark: 1024 * 1024}), path)
}

/** Opens and checks an archive; `password` is asked for only when the archive is encrypted. */
export async function openArchive(paths: string[], password: () => Promise<string>): Promise<OpenedArchive> {
  if (paths.length === 0) throw new UsageError('give an archive')
  if (paths.length > 1 && paths.includes('-')) throw new UsageError('volumes of a split archive are read from files, not from -')
  const source = paths.length > 1 ? await openVolumes(paths) : await openArchiveSource(paths[0]!)
  if (paths.length === 1 && source.manifest.volume !== undefined) {
    await source.close().catch(() => {})
    throw new UsageError(`${source.describe} is volume ${source.manifest.volume} of a split archive`, {hint: 'give every volume (NAME.001 NAME.002 …), in any order'})
  }
  try {
    return await decodeHead(source, password)
  } catch (e) {
    await source.close().catch(() => {})
    throw e
  }
}

async function decodeHead(source: ArchiveSource, password: () => Promise<string>): Promise<OpenedArchive> {
  const m = source.manifest
  const where = source.describe
  if (m.kind === 'portable') {
    const snapshot = {id: m.snapshot, disk: m.disk, time: m.time, virtualSize: m.virtualSize, blockSize: m.blockSize, tags: m.tags} as Manifest
    return {source, snapshot, master: null}
  }
  const need = (name: string | undefined): Buffer => {
    const data = name ? source.head.get(name) : undefined
    if (!data) throw new DataError(`${where} lacks entry ${name ?? 'indexes/…'} (incomplete or corrupt archive)`, {code: 'ARCHIVE_CORRUPT'})
    return data
  }
  const config = parseConfig(need('config').toString('utf8'), where)
  let master: MasterKey | null = null
  if (config.encryption !== 'none') master = await unlock(source, await password())
  const snapName = m.snapshotObject ?? `snapshots/${m.snapshot}`
  const snapshot = JSON.parse(decodeObject(ObjectKind.Manifest, snapName, need(snapName), master?.encKey).toString('utf8')) as Manifest
  const indexName = m.indexObject
  const ix = FixedIndex.decode(decodeObject(ObjectKind.Index, indexName ?? '', need(indexName), master?.encKey), `${where}: ${indexName}`)
  const facts: [string, unknown, unknown][] = [
    ['snapshot', snapshot.id, m.snapshot],
    ['disk', snapshot.disk, m.disk],
    ['virtual size', ix.virtualSize, m.virtualSize],
    ['block size', ix.blockSize, m.blockSize],
    ['index', `indexes/${snapshot.index}`, indexName],
  ]
  for (const [what, have, said] of facts) {
    if (have !== said) throw new DataError(`${where}: manifest.json says ${what} ${String(said)}, the archive holds ${String(have)} (corrupt archive)`, {code: 'ARCHIVE_CORRUPT'})
  }
  if (ix.kind !== 'full') throw new DataError(`${where}: ${indexName} is not a full index (corrupt archive)`, {code: 'ARCHIVE_CORRUPT'})
  const resolved: ResolvedIndex = {blockSize: ix.blockSize, virtualSize: ix.virtualSize, blockCount: ix.blockCount, entries: ix, chain: [snapshot]}
  return {source, snapshot, config, master, resolved}
}

async function unlock(source: ArchiveSource, password: string): Promise<MasterKey> {
  const slots = [...source.head].filter(([name]) => name.startsWith('keys/'))
  if (slots.length === 0) throw new DataError(`${source.describe} is encrypted but holds no key slots (incomplete archive)`, {code: 'ARCHIVE_CORRUPT'})
  for (const [name, data] of slots) {
    let slot: KeySlot
    try {
      slot = JSON.parse(data.toString('utf8')) as KeySlot
    } catch {
      throw new DataError(`${source.describe}: key slot ${name} is not valid JSON (corrupt archive)`, {code: 'ARCHIVE_CORRUPT'})
    }
    const master = await openKeySlot(password, slot)
    if (master) return master
  }
  throw new PasswordError(`wrong password: no key slot of ${source.describe} opens with it`, {hint: 'give the password of the repository the archive was exported from'})
}

/** A BlockSource over a chunks archive's index, each chunk loaded from the archive by id (random access when the source reads by entry). */
export function chunkBlockSource(a: OpenedArchive, resolved: ResolvedIndex, opts: BlockSourceOptions = {}): BlockSource {
  const codec = new ChunkCodec({idKey: a.master?.idKey, encKey: a.master?.encKey}, a.config?.compression.level ?? 0, resolved.blockSize)
  const reader = {getObject: (hex: string, b: number) => a.source.loadChunk(hex, b), decodePool: () => codec.decodePool(), close: () => codec.close()}
  return BlockSource.fromResolved(reader, a.snapshot, resolved, opts)
}

/** Last block that uses each chunk (for a forward reader's holding). */
function lastUses(r: ResolvedIndex): Map<string, number> {
  const last = new Map<string, number>()
  for (let b = 0; b < r.blockCount; b++) {
    if (!r.entries.isZero(b)) last.set(r.entries.hex(b), b)
  }
  return last
}

/** The archive's blocks in offset order, hashed on the way (in the image hash worker) for verifyImage(). */
export class ArchiveBlocks {
  readonly stream: BlockStream & {close(): Promise<void>}
  private readonly hasher = new ImageHasher()

  constructor(
    private readonly a: OpenedArchive,
    opts: BlockSourceOptions = {},
  ) {
    let inner: BlockStream & {close(): Promise<void>}
    if (a.resolved) {
      a.source.planUses(lastUses(a.resolved))
      inner = chunkBlockSource(a, a.resolved, opts)
    } else inner = new PortableBlocks(a.snapshot, a.source.image())
    const hasher = this.hasher
    this.stream = Object.assign(Object.create(inner) as typeof inner, {
      async *blocks(wanted?: (b: number) => boolean) {
        for await (const block of inner.blocks(wanted)) {
          await hasher.update(block.data, block.length)
          yield block
        }
      },
      async close() {
        await hasher.close()
        await inner.close()
      },
    })
  }

  /** Compares the hash of every block with SHA256SUMS (all blocks must have passed). */
  async verifyImage(): Promise<string> {
    const want = await this.a.source.imageSha256()
    const have = await this.hasher.digest()
    if (have !== want) throw new DataError(`${this.a.source.describe}: the restored image's SHA-256 ${have} differs from SHA256SUMS ${want} (corrupt archive)`, {code: 'ARCHIVE_CORRUPT', hint: 'use another copy of the archive'})
    return have
  }
}
