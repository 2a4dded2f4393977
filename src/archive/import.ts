// Import: an archive's snapshot back into a repository, the one it came
// from or another (another key: every chunk re-encrypted under it).
//
// 1. The archive is opened and checked (open-archive.ts) before anything is
//    written; a snapshot the repository already holds is left alone.
// 2. Its blocks come in offset order, each verified (chunk digest, or the
//    portable image). A block's id in the repository is its plaintext's
//    digest under the repository's id key; a chunk the repository lacks is
//    stored: the archive's object as it is when both use the same keys,
//    else encoded afresh (compressed, encrypted under the repository's key).
// 3. The image SHA-256 is compared with SHA256SUMS; only then are the full
//    index and the manifest written (chunks, index, manifest: the usual
//    order, so a failed import leaves at most unreferenced chunks, which
//    prune removes, as after an interrupted backup).
// The imported snapshot is a full: later backups of the disk chain onto it.
import {hostname} from 'node:os'
import {ChangedBlockMap} from '../cbt/changed-block-map.js'
import {DIGEST_SIZE} from '../chunk/digest.js'
import {UsageError} from '../errors.js'
import type {Manifest} from '../repo/manifest.js'
import type {Repository} from '../repo/repository.js'
import {BlockSource} from '../restore/block-source.js'
import {ArchiveBlocks, type OpenedArchive} from './open-archive.js'

export interface ImportOptions {
  onProgress?: (done: number, total: number) => void
  /** Called before the manifest is written (the command checks its lock is still held). */
  beforeCommit?: () => Promise<void>
}

export interface ImportResult {
  snapshot: string
  disk: string
  archive: string
  alreadyPresent: boolean
  reencrypted: boolean
  chunksStored: number
  chunksPresent: number
  bytesStored: number
  durationMs: number
}

/** Saves in flight at once (the backend's own limit applies as well). */
const SAVES_IN_FLIGHT = 16

export async function runImport(repo: Repository, a: OpenedArchive, opts: ImportOptions = {}): Promise<ImportResult> {
  const started = Date.now()
  const m = a.source.manifest
  const result: ImportResult = {snapshot: m.snapshot, disk: m.disk, archive: a.source.describe, alreadyPresent: false, reencrypted: false, chunksStored: 0, chunksPresent: 0, bytesStored: 0, durationMs: 0}
  try {
    if (m.blockSize !== repo.blockSize) {
      throw new UsageError(`${a.source.describe} has ${m.blockSize}-byte blocks and ${repo.location} ${repo.blockSize}-byte blocks`, {hint: `import into a repository made with "vdsnap init --block-size ${m.blockSize}"`})
    }
    if ((await repo.listSnapshotIds()).includes(m.snapshot)) {
      result.alreadyPresent = true
      return result
    }
    const sameKeys = a.resolved !== undefined && repo.chunks.sharesKeysWith(a.master)
    result.reencrypted = !sameKeys
    const blocks = new ArchiveBlocks(a, {keepStored: sameKeys})
    const entries = Buffer.alloc(Math.ceil(m.virtualSize / m.blockSize) * DIGEST_SIZE)
    const seen = new Set<string>()
    const saves = new Set<Promise<void>>()
    try {
      for await (const block of blocks.stream.blocks()) {
        opts.onProgress?.(block.offset + block.length, m.virtualSize)
        if (block.data === null) continue
        const id = repo.chunks.digest(block.data)
        id.copy(entries, block.index * DIGEST_SIZE)
        const hex = id.toString('hex')
        const stored = sameKeys ? (blocks.stream as BlockSource).takeStored(hex) : undefined
        if (seen.has(hex)) continue
        seen.add(hex)
        if (await repo.chunks.has(hex)) {
          result.chunksPresent++
          continue
        }
        const p = repo.chunks
          .put(hex, stored ? {encoded: stored} : {plain: block.data})
          .then((put) => {
            if (!put.isNew) return void result.chunksPresent++
            result.chunksStored++
            result.bytesStored += put.storedSize
          })
          .finally(() => saves.delete(p))
        saves.add(p)
        if (saves.size >= SAVES_IN_FLIGHT) await Promise.race(saves)
      }
      await Promise.all(saves)
      await blocks.verifyImage()
    } finally {
      await Promise.allSettled(saves)
      await blocks.stream.close()
    }
    const blockCount = entries.length / DIGEST_SIZE
    const index = await repo.saveIndex({kind: 'full', blockSize: m.blockSize, virtualSize: m.virtualSize, blockCount, cbm: ChangedBlockMap.all(blockCount), entries})
    await opts.beforeCommit?.()
    await repo.saveManifest(importedManifest(a, index, result, Date.now() - started))
    result.durationMs = Date.now() - started
    return result
  } finally {
    await a.source.close()
  }
}

/** The archive's snapshot made a full in this repository (a portable archive's from its manifest). */
function importedManifest(a: OpenedArchive, index: string, r: ImportResult, durationMs: number): Manifest {
  const m = a.source.manifest
  const base: Partial<Manifest> = a.resolved ? a.snapshot : {}
  const blocksUsed = r.chunksStored + r.chunksPresent
  return {
    version: 1,
    id: m.snapshot,
    disk: m.disk,
    time: m.time,
    parent: null,
    index,
    indexKind: 'full',
    chainLength: 0,
    blockSize: m.blockSize,
    virtualSize: m.virtualSize,
    source: base.source ?? {path: m.source, format: 'raw', size: m.virtualSize, mtimeMs: 0},
    tags: base.tags ?? m.tags ?? [],
    hostname: base.hostname ?? hostname(),
    stats: {bytesRead: 0, bytesChanged: 0, bytesNew: 0, bytesStored: r.bytesStored, blocksChanged: 0, blocksNew: r.chunksStored, blocksUsed, durationMs},
    warnings: [...(base.warnings ?? []), `imported from archive ${a.source.describe}`],
  }
}
