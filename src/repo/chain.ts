// Chain replay, metadata side: turn a snapshot into one entry per block.
//
// 1. Start with every block unresolved.
// 2. Walk from the snapshot to its parent, its parent's parent...: for each
//    delta index, every changed block not yet resolved takes that entry.
// 3. A full index resolves every block still open and ends the walk.
// 4. A chain that ends (no parent) before a full index is broken: refuse.
// Only metadata is read; each block's data is later read exactly once.
import {DIGEST_SIZE} from '../chunk/digest.js'
import {DataError} from '../errors.js'
import {ChangedBlockMap} from '../cbt/changed-block-map.js'
import type {Manifest} from './manifest.js'
import type {Repository} from './repository.js'

export interface ResolvedIndex {
  blockSize: number
  virtualSize: number
  blockCount: number
  /** blockCount × 32 bytes; all-zero entry = zero block. */
  entries: Buffer
  /** Manifests from the snapshot back to the full it rests on. */
  chain: Manifest[]
}

export const MAX_CHAIN = 100_000

export async function resolveSnapshot(repo: Repository, snap: Manifest): Promise<ResolvedIndex> {
  const {blockSize, virtualSize} = snap
  const blockCount = Math.ceil(virtualSize / blockSize)
  const entries = Buffer.alloc(blockCount * DIGEST_SIZE)
  const resolved = new ChangedBlockMap(blockCount)
  const chain: Manifest[] = []
  const seen = new Set<string>()
  let cur: Manifest | null = snap
  while (cur) {
    if (seen.has(cur.id) || chain.length > MAX_CHAIN) throw new DataError(`snapshot ${snap.id.slice(0, 8)} has a loop in its chain`, {code: 'CHAIN_BROKEN', object: `snapshots/${snap.id}`})
    seen.add(cur.id)
    chain.push(cur)
    const ix = await repo.loadIndex(cur.index)
    if (ix.blockSize !== blockSize || ix.virtualSize !== virtualSize) {
      throw new DataError(`snapshot ${cur.id.slice(0, 8)}: index geometry differs from its chain`, {code: 'CHAIN_BROKEN', object: `snapshots/${cur.id}`})
    }
    if (ix.kind === 'full') {
      for (let b = 0; b < blockCount; b++) {
        if (!resolved.has(b)) ix.entries.copy(entries, b * DIGEST_SIZE, b * DIGEST_SIZE, (b + 1) * DIGEST_SIZE)
      }
      return {blockSize, virtualSize, blockCount, entries, chain}
    }
    let i = 0
    for (const b of ix.cbm.blocks()) {
      if (!resolved.has(b)) {
        ix.entries.copy(entries, b * DIGEST_SIZE, i * DIGEST_SIZE, (i + 1) * DIGEST_SIZE)
        resolved.set(b)
      }
      i++
    }
    if (!cur.parent) break
    cur = await repo.loadManifest(cur.parent).catch((e) => {
      throw new DataError(`snapshot ${snap.id.slice(0, 8)}: its chain is broken at ${cur!.parent!.slice(0, 8)} (${(e as Error).message})`, {code: 'CHAIN_BROKEN', object: `snapshots/${cur!.parent!}`})
    })
  }
  throw new DataError(`snapshot ${snap.id.slice(0, 8)}: its chain has no full index`, {hint: 'run "vdsnap check"', code: 'CHAIN_BROKEN', object: `snapshots/${snap.id}`})
}

export function entryAt(entries: Buffer, block: number): Buffer {
  return entries.subarray(block * DIGEST_SIZE, (block + 1) * DIGEST_SIZE)
}
