// check: verify the repository without changing it.
//
// 1. Every manifest decodes (authenticates, when encrypted) and is well-formed.
// 2. Every snapshot's chain resolves: each index present, checksummed, of
//    the right geometry, down to a full index.
// 3. Every chunk a snapshot references exists (one listing of chunks/) and
//    has a size its envelope allows for its block's length (a truncated or
//    padded object is found without reading it).
// 4. With --read-data (or a subset), referenced chunks are read, decrypted,
//    decompressed and re-hashed in workers.
// Findings are listed, never repaired; the snapshots they damage are named,
// and every snapshot is reported as lost or intact (repair.ts removes
// unreadable manifests, on request).
import {ChunkPool} from '../chunk/pool.js'
import {chunkObjectSizeBounds} from '../chunk/object-codec.js'
import {TaskGroup} from '../flow/semaphore.js'
import {UsageError, VdsnapError} from '../errors.js'
import {resolveSnapshot} from '../repo/chain.js'
import type {Manifest} from '../repo/manifest.js'
import {Repository} from '../repo/repository.js'
import {listLocks} from '../repo/lock.js'

export interface Finding {
  kind: 'manifest' | 'index' | 'chunk-missing' | 'chunk-corrupt'
  object: string
  message: string
  snapshots: string[]
}

export interface CheckOptions {
  readData?: boolean
  /** "10%" or "n/m" */
  readDataSubset?: string
  random?: () => number
  onProgress?: (done: number, total: number) => void
}

export interface CheckResult {
  snapshots: number
  chunksReferenced: number
  chunksRead: number
  unreferencedChunks: number
  staleLocks: number
  findings: Finding[]
  /** Snapshots that cannot be restored (named by a finding), and the others. */
  lost: string[]
  intact: string[]
}

export type SubsetFilter = (idHex: string) => boolean

export function parseSubset(spec: string, random: () => number = Math.random): SubsetFilter {
  const pct = /^(\d+(?:\.\d+)?)%$/.exec(spec)
  if (pct) {
    const p = Number(pct[1]) / 100
    if (!(p > 0 && p <= 1)) throw new UsageError(`--read-data-subset ${spec}: the percentage must be in (0, 100]`)
    return () => random() < p
  }
  const part = /^(\d+)\/(\d+)$/.exec(spec)
  if (part) {
    const n = Number(part[1])
    const m = Number(part[2])
    if (!(m >= 1 && n >= 1 && n <= m)) throw new UsageError(`--read-data-subset ${spec}: use n/m with 1 ≤ n ≤ m`)
    return (id) => parseInt(id.slice(0, 8), 16) % m === n - 1
  }
  throw new UsageError(`--read-data-subset "${spec}" is neither a percentage (10%) nor a part (3/7)`)
}

export async function runCheck(repo: Repository, opts: CheckOptions = {}): Promise<CheckResult> {
  const findings: Finding[] = []
  const manifests: Manifest[] = []
  for (const id of await repo.listSnapshotIds()) {
    try {
      manifests.push(await repo.loadManifest(id))
    } catch (e) {
      findings.push({kind: 'manifest', object: `snapshots/${id}`, message: (e as Error).message, snapshots: [id]})
    }
  }
  const referenced = new Map<string, number>() // id -> block length (for stats by callers)
  const usable: Manifest[] = []
  for (const m of manifests) {
    try {
      const r = await resolveSnapshot(repo, m)
      for (let b = 0; b < r.blockCount; b++) {
        if (!r.entries.isZero(b)) referenced.set(r.entries.hex(b), Math.min(r.blockSize, r.virtualSize - b * r.blockSize))
      }
      usable.push(m)
    } catch (e) {
      findings.push({kind: 'index', object: `indexes/${m.index}`, message: (e as Error).message, snapshots: [m.id]})
    }
  }
  const stored = new Map<string, number>() // id -> object size
  for await (const obj of repo.backend.list('chunks/')) {
    const id = obj.name.slice(obj.name.lastIndexOf('/') + 1)
    if (obj.size > 0) stored.set(id, obj.size)
  }
  const bad = new Map<string, {kind: Finding['kind']; why: string}>()
  for (const [id, length] of referenced) {
    const size = stored.get(id)
    if (size === undefined) {
      bad.set(id, {kind: 'chunk-missing', why: 'missing'})
      continue
    }
    const {min, max} = chunkObjectSizeBounds(length, repo.encKey !== undefined)
    if (size < min) bad.set(id, {kind: 'chunk-corrupt', why: `truncated (${size} bytes, a chunk of a ${length}-byte block takes at least ${min})`})
    else if (size > max) bad.set(id, {kind: 'chunk-corrupt', why: `corrupt (${size} bytes, a chunk of a ${length}-byte block takes at most ${max})`})
  }
  let unreferenced = 0
  for (const id of stored.keys()) if (!referenced.has(id)) unreferenced++

  let chunksRead = 0
  if (opts.readData || opts.readDataSubset) {
    const filter = opts.readDataSubset ? parseSubset(opts.readDataSubset, opts.random) : () => true
    const toRead = [...referenced.keys()].filter((id) => !bad.has(id) && filter(id))
    const pool = new ChunkPool({idKey: repo.idKey, encKey: repo.encKey}, repo.level)
    const group = new TaskGroup(pool.size * 4)
    try {
      for (const id of toRead) {
        await group.spawn(async () => {
          try {
            const obj = await repo.loadChunkObject(id)
            await pool.run({op: 'unpack', items: [{name: Repository.chunkName(id), data: obj, digest: Buffer.from(id, 'hex')}], maxSize: repo.blockSize, rehash: true})
          } catch (e) {
            if (!(e instanceof VdsnapError) || e.kind !== 'data') throw e
            bad.set(id, {kind: 'chunk-corrupt', why: 'corrupt'})
          }
          chunksRead++
          opts.onProgress?.(chunksRead, toRead.length)
        })
      }
      await group.wait()
    } finally {
      await pool.close()
    }
  }

  if (bad.size > 0) {
    const damaged = new Map<string, string[]>()
    for (const m of usable) {
      const r = await resolveSnapshot(repo, m)
      for (let b = 0; b < r.blockCount; b++) {
        const hex = r.entries.hex(b)
        if (bad.has(hex)) {
          const list = damaged.get(hex) ?? []
          if (!list.includes(m.id)) list.push(m.id)
          damaged.set(hex, list)
        }
      }
    }
    for (const [id, {kind, why}] of bad) {
      const snaps = damaged.get(id) ?? []
      findings.push({
        kind,
        object: Repository.chunkName(id),
        message: `chunk ${id.slice(0, 16)}… is ${why} (used by ${snaps.length} snapshot${snaps.length === 1 ? '' : 's'}: ${snaps.map((s) => s.slice(0, 8)).join(', ')})`,
        snapshots: snaps,
      })
    }
  }
  const staleLocks = (await listLocks(repo.backend)).filter((l) => l.stale).length
  const allIds = await repo.listSnapshotIds()
  const lostSet = new Set(findings.flatMap((f) => f.snapshots))
  const lost = allIds.filter((id) => lostSet.has(id)).sort()
  const intact = allIds.filter((id) => !lostSet.has(id)).sort()
  return {lost, intact, snapshots: manifests.length, chunksReferenced: referenced.size, chunksRead, unreferencedChunks: unreferenced, staleLocks, findings}
}
