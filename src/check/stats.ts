// stats: how much the snapshots hold and how much the repository stores.
//   logical bytes  = sum over snapshots of their non-zero blocks' bytes
//   unique bytes   = plaintext bytes of the distinct chunks referenced
//   stored bytes   = bytes of every object in the repository
// dedup ratio = logical / unique; compression ratio = unique / chunk bytes.
import {DIGEST_SIZE, ZERO_ID} from '../chunk/digest.js'
import {resolveSnapshot} from '../repo/chain.js'
import type {Repository} from '../repo/repository.js'

export interface RepoStats {
  snapshots: number
  disks: number
  logicalBytes: number
  uniqueBytes: number
  chunkCount: number
  chunkBytes: number
  metadataBytes: number
  storedBytes: number
  dedupRatio: number
  compressionRatio: number
}

export async function repoStats(repo: Repository): Promise<RepoStats> {
  const snaps = await repo.listSnapshots()
  const unique = new Map<string, number>()
  let logical = 0
  for (const m of snaps) {
    const r = await resolveSnapshot(repo, m)
    for (let b = 0; b < r.blockCount; b++) {
      const e = r.entries.subarray(b * DIGEST_SIZE, (b + 1) * DIGEST_SIZE)
      if (e.equals(ZERO_ID)) continue
      const len = Math.min(r.blockSize, r.virtualSize - b * r.blockSize)
      logical += len
      unique.set(e.toString('hex'), len)
    }
  }
  let chunkBytes = 0
  let chunkCount = 0
  let metadataBytes = 0
  for await (const c of repo.chunks.list()) {
    chunkBytes += c.size
    chunkCount++
  }
  for (const prefix of ['indexes/', 'snapshots/', 'keys/', 'locks/']) for await (const o of repo.backend.list(prefix)) metadataBytes += o.size
  const cfg = await repo.backend.stat('config')
  metadataBytes += cfg?.size ?? 0
  const uniqueBytes = [...unique.values()].reduce((s, n) => s + n, 0)
  return {
    snapshots: snaps.length,
    disks: new Set(snaps.map((s) => s.disk)).size,
    logicalBytes: logical,
    uniqueBytes,
    chunkCount,
    chunkBytes,
    metadataBytes,
    storedBytes: chunkBytes + metadataBytes,
    dedupRatio: uniqueBytes ? logical / uniqueBytes : 1,
    compressionRatio: chunkBytes ? uniqueBytes / chunkBytes : 1,
  }
}
