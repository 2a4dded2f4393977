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
import {DIGEST_SIZE, ZERO_ID} from '../chunk/digest.js'
import {TaskGroup} from '../flow/semaphore.js'
import {UsageError, VdsnapError} from '../errors.js'
import {resolveSnapshot} from '../repo/chain.js'
import type {Manifest} from '../repo/manifest.js'
import type {Repository} from '../repo/repository.js'
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

type Bad = Map<string, {kind: Finding['kind']; why: string}>

export async function runCheck(repo: Repository, opts: CheckOptions = {}): Promise<CheckResult> {
  const findings: Finding[] = []
  const manifests = await loadManifests(repo, findings)
  const {referenced, usable} = await referencedChunks(repo, manifests, findings)
  const stored = new Map<string, number>() // id -> stored size
  for await (const c of repo.chunks.list()) if (c.size > 0) stored.set(c.id, c.size)
  const bad = sizeFindings(repo, referenced, stored)
  let unreferenced = 0
  for (const id of stored.keys()) if (!referenced.has(id)) unreferenced++
  const chunksRead = opts.readData || opts.readDataSubset ? await readChunks(repo, referenced, bad, opts) : 0
  if (bad.size > 0) findings.push(...(await chunkFindings(repo, usable, bad)))
  const staleLocks = (await listLocks(repo.backend)).filter((l) => l.stale).length
  const allIds = await repo.listSnapshotIds()
  const lostSet = new Set(findings.flatMap((f) => f.snapshots))
  const lost = allIds.filter((id) => lostSet.has(id)).sort()
  const intact = allIds.filter((id) => !lostSet.has(id)).sort()
  return {lost, intact, snapshots: manifests.length, chunksReferenced: referenced.size, chunksRead, unreferencedChunks: unreferenced, staleLocks, findings}
}

/** Step 1: every manifest that loads; a finding for each that does not. */
async function loadManifests(repo: Repository, findings: Finding[]): Promise<Manifest[]> {
  const manifests: Manifest[] = []
  for (const id of await repo.listSnapshotIds()) {
    try {
      manifests.push(await repo.loadManifest(id))
    } catch (e) {
      findings.push({kind: 'manifest', object: `snapshots/${id}`, message: (e as Error).message, snapshots: [id]})
    }
  }
  return manifests
}

/** Step 2: the chunks the resolvable snapshots use (id → its block's length), and those snapshots. */
async function referencedChunks(repo: Repository, manifests: Manifest[], findings: Finding[]): Promise<{referenced: Map<string, number>; usable: Manifest[]}> {
  const referenced = new Map<string, number>()
  const usable: Manifest[] = []
  for (const m of manifests) {
    try {
      const r = await resolveSnapshot(repo, m)
      for (let b = 0; b < r.blockCount; b++) {
        const e = r.entries.subarray(b * DIGEST_SIZE, (b + 1) * DIGEST_SIZE)
        if (!e.equals(ZERO_ID)) referenced.set(e.toString('hex'), Math.min(r.blockSize, r.virtualSize - b * r.blockSize))
      }
      usable.push(m)
    } catch (e) {
      findings.push({kind: 'index', object: `indexes/${m.index}`, message: (e as Error).message, snapshots: [m.id]})
    }
  }
  return {referenced, usable}
}

/** Step 3: referenced chunks that are missing, or whose stored size their envelope cannot have. */
function sizeFindings(repo: Repository, referenced: Map<string, number>, stored: Map<string, number>): Bad {
  const bad: Bad = new Map()
  for (const [id, length] of referenced) {
    const size = stored.get(id)
    if (size === undefined) {
      bad.set(id, {kind: 'chunk-missing', why: 'missing'})
      continue
    }
    const {min, max} = repo.chunks.storedSizeBounds(length)
    if (size < min) bad.set(id, {kind: 'chunk-corrupt', why: `truncated (${size} bytes, a chunk of a ${length}-byte block takes at least ${min})`})
    else if (size > max) bad.set(id, {kind: 'chunk-corrupt', why: `corrupt (${size} bytes, a chunk of a ${length}-byte block takes at most ${max})`})
  }
  return bad
}

/** Step 4 (--read-data): the referenced chunks not found bad yet (or a subset) read and verified; how many. */
async function readChunks(repo: Repository, referenced: Map<string, number>, bad: Bad, opts: CheckOptions): Promise<number> {
  const filter = opts.readDataSubset ? parseSubset(opts.readDataSubset, opts.random) : () => true
  const toRead = [...referenced.keys()].filter((id) => !bad.has(id) && filter(id))
  const group = new TaskGroup(repo.chunks.workers * 4)
  let chunksRead = 0
  for (const id of toRead) {
    await group.spawn(async () => {
      try {
        await repo.chunks.get(id, {rehash: true})
      } catch (e) {
        if (!(e instanceof VdsnapError) || e.kind !== 'data') throw e
        bad.set(id, {kind: 'chunk-corrupt', why: 'corrupt'})
      }
      chunksRead++
      opts.onProgress?.(chunksRead, toRead.length)
    })
  }
  await group.wait()
  return chunksRead
}

/** A finding per bad chunk, naming the snapshots that use it. */
async function chunkFindings(repo: Repository, usable: Manifest[], bad: Bad): Promise<Finding[]> {
  const damaged = new Map<string, string[]>()
  for (const m of usable) {
    const r = await resolveSnapshot(repo, m)
    for (let b = 0; b < r.blockCount; b++) {
      const hex = r.entries.subarray(b * DIGEST_SIZE, (b + 1) * DIGEST_SIZE).toString('hex')
      if (bad.has(hex)) {
        const list = damaged.get(hex) ?? []
        if (!list.includes(m.id)) list.push(m.id)
        damaged.set(hex, list)
      }
    }
  }
  return [...bad].map(([id, {kind, why}]) => {
    const snaps = damaged.get(id) ?? []
    return {
      kind,
      object: repo.chunks.objectName(id),
      message: `chunk ${id.slice(0, 16)}… is ${why} (used by ${snaps.length} snapshot${snaps.length === 1 ? '' : 's'}: ${snaps.map((s) => s.slice(0, 8)).join(', ')})`,
      snapshots: snaps,
    }
  })
}
