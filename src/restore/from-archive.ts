// Restore and check straight from an archive, with no repository: the same
// copyBlocks and targets as a restore from the repository, fed by the
// archive's blocks (archive/open-archive.ts). The image SHA-256 is compared
// with SHA256SUMS before the target is kept: a new file is renamed into
// place only then (stdout and devices have received the bytes already, as
// in any streamed restore; the exit code says whether they are good).
import type {OpenedArchive} from '../archive/open-archive.js'
import {ArchiveBlocks} from '../archive/open-archive.js'
import {completeOrAbort, copyBlocks, type RestoreResult} from './restore.js'
import {openTarget, type TargetOptions} from './targets.js'

export interface ArchiveRestoreOptions extends TargetOptions {
  rehash?: boolean
  onProgress?: (done: number, total: number) => void
}

export interface ArchiveRestoreResult extends RestoreResult {
  archive: string
  imageSha256: string
}

export async function restoreFromArchive(a: OpenedArchive, opts: ArchiveRestoreOptions): Promise<ArchiveRestoreResult> {
  const started = Date.now()
  const blocks = new ArchiveBlocks(a, {rehash: opts.rehash ?? true})
  try {
    const target = await openTarget({...opts, virtualSize: a.snapshot.virtualSize, delta: false, disk: a.snapshot.disk})
    const result = await completeOrAbort(target, async () => {
      const copied = await copyBlocks(blocks.stream, target, () => true, opts.onProgress)
      return {...copied, archive: a.source.describe, imageSha256: await blocks.verifyImage()}
    })
    return {...result, durationMs: Date.now() - started}
  } finally {
    await blocks.stream.close()
    await a.source.close()
  }
}

export interface ArchiveCheckResult {
  archive: string
  kind: 'chunks' | 'portable'
  snapshot: string
  disk: string
  virtualSize: number
  chunksVerified: number
  imageSha256: string
  durationMs: number
}

/** Reads the whole archive as a restore would, verifying every chunk and the image SHA-256, writing nothing. */
export async function checkArchive(a: OpenedArchive, onProgress?: (done: number, total: number) => void): Promise<ArchiveCheckResult> {
  const started = Date.now()
  const blocks = new ArchiveBlocks(a, {rehash: true})
  try {
    for await (const block of blocks.stream.blocks()) onProgress?.(block.offset + block.length, a.snapshot.virtualSize)
    const imageSha256 = await blocks.verifyImage()
    return {
      archive: a.source.describe,
      kind: a.source.manifest.kind,
      snapshot: a.snapshot.id,
      disk: a.snapshot.disk,
      virtualSize: a.snapshot.virtualSize,
      chunksVerified: blocks.stream.chunksRead,
      imageSha256,
      durationMs: Date.now() - started,
    }
  } finally {
    await blocks.stream.close()
    await a.source.close()
  }
}
