// Repositories of made-up snapshots for forget tests: real indexes and
// manifests (written through Repository), random chunk ids, no chunk data.
// Each snapshot's expected resolved entries are kept to compare with later.
import {randomBytes} from 'node:crypto'
import {ChangedBlockMap} from '../../src/cbt/changed-block-map.js'
import {DIGEST_SIZE} from '../../src/chunk/digest.js'
import {resolveSnapshot} from '../../src/repo/chain.js'
import {FixedIndex} from '../../src/repo/fixed-index.js'
import type {Manifest} from '../../src/repo/manifest.js'
import {Repository} from '../../src/repo/repository.js'
import type {StorageBackend} from '../../src/backend/types.js'
import {prng} from '../helpers/images.js'

export const BLOCK = 65536

export interface Synthetic {
  repo: Repository
  snaps: Manifest[]
  /** Expected resolved entries per snapshot id. */
  expected: Map<string, Buffer>
}

export async function buildChain(backend: StorageBackend, opts: {count: number; blocks?: number; fullEvery?: number; seed?: number; disk?: string; repo?: Repository}): Promise<Synthetic> {
  const repo = opts.repo ?? (await Repository.init(backend, {blockSize: BLOCK, level: 1}))
  const blocks = opts.blocks ?? 40
  const rnd = prng(opts.seed ?? 7)
  const current = Buffer.alloc(blocks * DIGEST_SIZE)
  const snaps: Manifest[] = []
  const expected = new Map<string, Buffer>()
  let parent: Manifest | null = null
  for (let i = 0; i < opts.count; i++) {
    const cbm = parent ? new ChangedBlockMap(blocks) : ChangedBlockMap.all(blocks)
    for (let b = 0; b < blocks; b++) {
      if (!parent || rnd() < 0.15) {
        const id = rnd() < 0.1 ? Buffer.alloc(DIGEST_SIZE) : randomBytes(DIGEST_SIZE)
        id.copy(current, b * DIGEST_SIZE)
        cbm.set(b)
      }
    }
    const chainLength = parent ? parent.chainLength + 1 : 0
    const full = !parent || chainLength >= (opts.fullEvery ?? 1000)
    const entries = full ? Buffer.from(current) : Buffer.concat([...cbm.blocks()].map((b) => current.subarray(b * DIGEST_SIZE, (b + 1) * DIGEST_SIZE)))
    const index = await repo.saveIndex(FixedIndex.fromRecord({kind: full ? 'full' : 'delta', blockSize: BLOCK, virtualSize: blocks * BLOCK, blockCount: blocks, cbm, entries}))
    const m: Manifest = {
      version: 1, id: Repository.newSnapshotId(), disk: opts.disk ?? 'vm', time: new Date(Date.UTC(2026, 0, 1) + i * 3_600_000).toISOString(),
      parent: parent?.id ?? null, index, indexKind: full ? 'full' : 'delta', chainLength: full ? 0 : chainLength, blockSize: BLOCK, virtualSize: blocks * BLOCK,
      source: {path: '/x', format: 'raw', size: blocks * BLOCK, mtimeMs: i}, tags: [], hostname: 'h',
      stats: {bytesRead: i, bytesChanged: 0, bytesNew: 0, bytesStored: 0, blocksChanged: cbm.count(), blocksNew: 0, blocksUsed: 0, durationMs: 0},
    }
    await repo.saveManifest(m)
    snaps.push(m)
    expected.set(m.id, Buffer.from(current))
    parent = m
  }
  return {repo, snaps, expected}
}

/** Every visible snapshot resolves to its expected entries; returns the visible ids. */
export async function verifyAll(backend: StorageBackend, expected: Map<string, Buffer>): Promise<Manifest[]> {
  const repo = await Repository.open(backend, async () => '')
  const snaps = await repo.listSnapshots()
  for (const m of snaps) {
    const r = await resolveSnapshot(repo, m)
    const want = FixedIndex.fromRecord({kind: 'full', blockSize: r.blockSize, virtualSize: r.virtualSize, blockCount: r.blockCount, cbm: ChangedBlockMap.all(r.blockCount), entries: expected.get(m.id)!})
    if (!r.entries.sameEntries(want)) throw new Error(`snapshot ${m.id.slice(0, 8)} resolves differently`)
  }
  return snaps
}
