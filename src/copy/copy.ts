// copy: replicate snapshots from one repository to another, sending only
// the chunks the destination lacks.
//
// 1. Choose the snapshots (named ones, a disk's, or all), oldest first, and
//    skip those the destination already has (same snapshot id).
// 2. Learn the id translation: chunk ids depend on the repository's id key,
//    so for every snapshot present on both sides, the resolved entries pair
//    source ids with destination ids without reading any data.
// 3. For each snapshot to copy: resolve it on the source; every chunk whose
//    destination id is unknown is read, verified and decrypted from the
//    source, hashed under the destination's id key, and — unless the
//    destination already stores it — compressed, encrypted and saved there.
// 4. Write the index (a delta on the parent when the parent is on the
//    destination, else full) and then the manifest, under the same snapshot
//    id. Chunks → index → manifest, so an interrupted copy leaves no visible
//    half snapshot, and a re-run sends nothing that already arrived.
import {ChangedBlockMap} from '../cbt/changed-block-map.js'
import {DIGEST_SIZE, ZERO_ID} from '../chunk/digest.js'
import {TaskGroup} from '../flow/semaphore.js'
import {resolveSnapshot, type ResolvedIndex} from '../repo/chain.js'
import type {Manifest} from '../repo/manifest.js'
import type {Repository} from '../repo/repository.js'
import {UsageError} from '../errors.js'

export interface CopyOptions {
  /** Snapshot ids to copy (already selected); all snapshots when empty. */
  ids?: string[]
  disk?: string
  onProgress?: (done: number, total: number) => void
  /** Runs before each snapshot's index and manifest are written (lock check). */
  beforeCommit?: () => Promise<void>
}

export interface CopyResult {
  copied: string[]
  skipped: string[]
  chunksSent: number
  chunksPresent: number
  bytesRead: number
  bytesSent: number
}

export async function copySnapshots(from: Repository, to: Repository, opts: CopyOptions = {}): Promise<CopyResult> {
  if (from.blockSize !== to.blockSize) {
    throw new UsageError(`block sizes differ (${from.blockSize} vs ${to.blockSize}): copy needs repositories with the same block size`, {
      hint: 'create the destination with "vdsnap init --block-size" matching the source',
    })
  }
  const all = await from.listSnapshots(opts.disk)
  const wanted = opts.ids?.length ? all.filter((m) => opts.ids!.includes(m.id)) : all
  const present = new Set(await to.listSnapshotIds())
  const result: CopyResult = {copied: [], skipped: [], chunksSent: 0, chunksPresent: 0, bytesRead: 0, bytesSent: 0}
  const translate = new Map<string, string>()
  for (const m of all) if (present.has(m.id)) await learnIds(from, to, m, translate)

  for (const m of wanted) {
    if (present.has(m.id)) {
      result.skipped.push(m.id)
      continue
    }
    await copyOne(from, to, m, present, translate, result, opts.beforeCommit)
    present.add(m.id)
    result.copied.push(m.id)
    opts.onProgress?.(result.copied.length + result.skipped.length, wanted.length)
  }
  return result
}

async function learnIds(from: Repository, to: Repository, m: Manifest, translate: Map<string, string>): Promise<void> {
  const [a, b] = [await resolveSnapshot(from, m), await resolveSnapshot(to, await to.loadManifest(m.id))]
  if (a.blockCount !== b.blockCount) return
  for (let i = 0; i < a.blockCount; i++) {
    const s = a.entries.subarray(i * DIGEST_SIZE, (i + 1) * DIGEST_SIZE)
    if (!s.equals(ZERO_ID)) translate.set(s.toString('hex'), b.entries.subarray(i * DIGEST_SIZE, (i + 1) * DIGEST_SIZE).toString('hex'))
  }
}

/** One snapshot: its chunks, then its index and manifest under the same id. */
async function copyOne(from: Repository, to: Repository, m: Manifest, present: Set<string>, translate: Map<string, string>, result: CopyResult, beforeCommit?: () => Promise<void>): Promise<void> {
  const src = await resolveSnapshot(from, m)
  await sendChunks(from, to, chunkIds(src), translate, result)
  const entries = translatedEntries(src, translate)
  const parentManifest = m.parent !== null && present.has(m.parent) ? await to.loadManifest(m.parent) : null
  const delta = parentManifest !== null && parentManifest.chainLength + 1 < to.config.syntheticFullEvery
  const cbm = parentManifest ? changedSince(entries, src.blockCount, await resolveSnapshot(to, parentManifest)) : ChangedBlockMap.all(src.blockCount)
  await beforeCommit?.()
  const index = await to.saveIndex({
    kind: delta ? 'delta' : 'full',
    blockSize: src.blockSize,
    virtualSize: src.virtualSize,
    blockCount: src.blockCount,
    cbm,
    entries: delta ? deltaEntries(entries, cbm) : entries,
  })
  await to.saveManifest({
    ...m,
    parent: parentManifest ? m.parent : null,
    index,
    indexKind: delta ? 'delta' : 'full',
    chainLength: delta ? parentManifest!.chainLength + 1 : 0,
  })
}

/** The distinct chunk ids a resolved snapshot uses. */
function chunkIds(src: ResolvedIndex): Set<string> {
  const needed = new Set<string>()
  for (let i = 0; i < src.blockCount; i++) {
    const e = src.entries.subarray(i * DIGEST_SIZE, (i + 1) * DIGEST_SIZE)
    if (!e.equals(ZERO_ID)) needed.add(e.toString('hex'))
  }
  return needed
}

/** Every chunk of `needed` whose destination id is unknown or not stored there: read, verified, re-hashed and put there. */
async function sendChunks(from: Repository, to: Repository, needed: Set<string>, translate: Map<string, string>, result: CopyResult): Promise<void> {
  const group = new TaskGroup(16)
  for (const srcId of needed) {
    const known = translate.get(srcId)
    if (known && (await to.chunks.has(known))) continue
    await group.spawn(async () => {
      translate.set(srcId, await sendChunk(from, to, srcId, result))
    })
  }
  await group.wait()
}

/** One chunk from the source to the destination; its destination id. */
async function sendChunk(from: Repository, to: Repository, srcId: string, result: CopyResult): Promise<string> {
  const obj = await from.chunks.getObject(srcId)
  result.bytesRead += obj.length
  // rehash false: an encrypted chunk is proven by its GCM tag, a plaintext one is always re-hashed.
  const plain = await from.chunks.decode(srcId, obj, {rehash: false, transfer: true})
  const length = plain.length // the view detaches when its buffer moves to the worker below
  const hashed = await to.chunks.hash(plain.buffer as ArrayBuffer, length, length)
  const dstId = Buffer.from(hashed.digests).toString('hex')
  const put = await to.chunks.put(dstId, {plain: new Uint8Array(hashed.buf, 0, length)})
  if (put.isNew) {
    result.chunksSent++
    result.bytesSent += put.storedSize
  } else result.chunksPresent++
  return dstId
}

/** The source's entries under the destination's ids. */
function translatedEntries(src: ResolvedIndex, translate: Map<string, string>): Buffer {
  const entries = Buffer.alloc(src.entries.length)
  for (let i = 0; i < src.blockCount; i++) {
    const e = src.entries.subarray(i * DIGEST_SIZE, (i + 1) * DIGEST_SIZE)
    if (!e.equals(ZERO_ID)) Buffer.from(translate.get(e.toString('hex'))!, 'hex').copy(entries, i * DIGEST_SIZE)
  }
  return entries
}

/** The blocks whose entry differs from the parent's (whether the index is a delta or a synthetic full). */
function changedSince(entries: Buffer, blockCount: number, parent: ResolvedIndex): ChangedBlockMap {
  const cbm = new ChangedBlockMap(blockCount)
  for (let i = 0; i < blockCount; i++) {
    const s = i * DIGEST_SIZE
    if (entries.compare(parent.entries, s, s + DIGEST_SIZE, s, s + DIGEST_SIZE) !== 0) cbm.set(i)
  }
  return cbm
}

function deltaEntries(entries: Buffer, cbm: ChangedBlockMap): Buffer {
  const out = Buffer.alloc(cbm.count() * DIGEST_SIZE)
  let k = 0
  for (const b of cbm.blocks()) entries.copy(out, k++ * DIGEST_SIZE, b * DIGEST_SIZE, (b + 1) * DIGEST_SIZE)
  return out
}
