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
import {ChunkPool} from '../chunk/pool.js'
import {TaskGroup} from '../flow/semaphore.js'
import {resolveSnapshot} from '../repo/chain.js'
import {FixedIndex} from '../repo/fixed-index.js'
import type {Manifest} from '../repo/manifest.js'
import {Repository} from '../repo/repository.js'
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

  const srcPool = new ChunkPool({idKey: from.idKey, encKey: from.encKey}, from.level)
  const dstPool = new ChunkPool({idKey: to.idKey, encKey: to.encKey}, to.level)
  try {
    for (const m of wanted) {
      if (present.has(m.id)) {
        result.skipped.push(m.id)
        continue
      }
      await copyOne(from, to, m, present, translate, srcPool, dstPool, result, opts.beforeCommit)
      present.add(m.id)
      result.copied.push(m.id)
      opts.onProgress?.(result.copied.length + result.skipped.length, wanted.length)
    }
  } finally {
    await srcPool.close()
    await dstPool.close()
  }
  return result
}

async function learnIds(from: Repository, to: Repository, m: Manifest, translate: Map<string, string>): Promise<void> {
  const [a, b] = [await resolveSnapshot(from, m), await resolveSnapshot(to, await to.loadManifest(m.id))]
  if (a.blockCount !== b.blockCount) return
  for (let i = 0; i < a.blockCount; i++) {
    if (!a.entries.isZero(i)) translate.set(a.entries.hex(i), b.entries.hex(i))
  }
}

async function copyOne(
  from: Repository,
  to: Repository,
  m: Manifest,
  present: Set<string>,
  translate: Map<string, string>,
  srcPool: ChunkPool,
  dstPool: ChunkPool,
  result: CopyResult,
  beforeCommit?: () => Promise<void>,
): Promise<void> {
  const src = await resolveSnapshot(from, m)
  const group = new TaskGroup(16)
  const needed = new Set<string>()
  src.entries.addChunkIds(needed)
  for (const srcId of needed) {
    const known = translate.get(srcId)
    if (known && (await to.hasChunk(known))) continue
    await group.spawn(async () => {
      const obj = await from.loadChunkObject(srcId)
      result.bytesRead += obj.length
      const unpacked = await srcPool.run({op: 'unpack', items: [{name: Repository.chunkName(srcId), data: obj, digest: Buffer.from(srcId, 'hex')}], maxSize: from.blockSize, rehash: false})
      if (!('plain' in unpacked)) throw new Error('unexpected worker reply')
      const plain = unpacked.plain[0]!
      const length = plain.byteLength // the view detaches when its buffer is transferred below
      const buf = plain.buffer as ArrayBuffer
      const hashed = await dstPool.run({op: 'hash', buf, length, blockSize: length}, [buf])
      if (!('digests' in hashed)) throw new Error('unexpected worker reply')
      const dstId = Buffer.from(hashed.digests).toString('hex')
      translate.set(srcId, dstId)
      if (await to.hasChunk(dstId)) {
        result.chunksPresent++
        return
      }
      const packed = await dstPool.run({op: 'pack', buf: hashed.buf, items: [{start: 0, end: length, name: Repository.chunkName(dstId)}]}, [hashed.buf])
      if (!('objects' in packed)) throw new Error('unexpected worker reply')
      const out = packed.objects[0]!
      await to.saveChunkObject(dstId, Buffer.from(out.buffer, out.byteOffset, out.byteLength))
      result.chunksSent++
      result.bytesSent += out.byteLength
    })
  }
  await group.wait()

  const entries = FixedIndex.empty(src.blockSize, src.virtualSize)
  for (let i = 0; i < src.blockCount; i++) {
    if (!src.entries.isZero(i)) entries.setHex(i, translate.get(src.entries.hex(i))!)
  }
  const parentManifest = m.parent !== null && present.has(m.parent) ? await to.loadManifest(m.parent) : null
  const delta = parentManifest !== null && parentManifest.chainLength + 1 < to.config.syntheticFullEvery
  let cbm = ChangedBlockMap.all(src.blockCount)
  if (parentManifest) {
    // the map is against the parent, whether this index is a delta or a synthetic full
    const parentDst = await resolveSnapshot(to, parentManifest)
    cbm = entries.diff(parentDst.entries)
  }
  await beforeCommit?.()
  const index = await to.saveIndex(delta ? entries.delta(cbm) : entries.asFull(cbm))
  await to.saveManifest({
    ...m,
    parent: parentManifest ? m.parent : null,
    index,
    indexKind: delta ? 'delta' : 'full',
    chainLength: delta ? parentManifest!.chainLength + 1 : 0,
  })
}
