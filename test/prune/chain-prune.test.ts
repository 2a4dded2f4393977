// Real backups: a 40-snapshot chain of a small ext4 image, 64 KiB blocks,
// a synthetic full every 10. A GFS policy forgets the base and much of the
// middle; every remaining snapshot restores byte-identical; prune then
// removes exactly the chunks no remaining version of the disk contains,
// counted here from the image versions themselves (not from indexes).
import {createHash} from 'node:crypto'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {runBackup} from '../../src/backup/backup.js'
import {LocalBackend} from '../../src/backend/local.js'
import {runCheck} from '../../src/check/check.js'
import {runPrune} from '../../src/prune/prune.js'
import {runForget} from '../../src/prune/run-forget.js'
import {Repository} from '../../src/repo/repository.js'
import {runRestore} from '../../src/restore/restore.js'
import {makeExt4Image, prng, randomAt, sha256File, tempDir} from '../helpers/images.js'

const BLOCK = 64 * 1024
const SIZE = 8 * 1024 * 1024

/** Chunk ids (SHA-256 of each non-zero block) of a raw image. */
function blockIds(path: string): Set<string> {
  const data = readFileSync(path)
  const zero = Buffer.alloc(BLOCK)
  const ids = new Set<string>()
  for (let off = 0; off < data.length; off += BLOCK) {
    const block = data.subarray(off, off + BLOCK)
    if (!block.equals(zero.subarray(0, block.length))) ids.add(createHash('sha256').update(block).digest('hex'))
  }
  return ids
}

async function storedChunks(root: string): Promise<Set<string>> {
  const ids = new Set<string>()
  for await (const o of new LocalBackend(root).list('chunks/')) ids.add(o.name.slice(-64))
  return ids
}

describe('forget + prune on a 40-snapshot chain', () => {
  const dir = tempDir()
  const root = join(dir.path, 'repo')
  const img = join(dir.path, 'disk.img')
  const versions = new Map<string, {hash: string; ids: Set<string>}>()
  let repo: Repository

  beforeAll(async () => {
    makeExt4Image(img, SIZE)
    repo = await Repository.init(new LocalBackend(root), {blockSize: BLOCK, level: 1, syntheticFullEvery: 10})
    const rnd = prng(40)
    for (let i = 0; i < 40; i++) {
      if (i > 0) for (let k = 0; k < 4; k++) randomAt(img, Math.floor(rnd() * (SIZE - 100_000)), 1 + Math.floor(rnd() * 90_000))
      const time = new Date(Date.UTC(2026, 11, 20) + i * 6 * 3_600_000) // every 6 h across the new year
      const res = await runBackup(repo, {source: img, disk: 'vm', now: () => time})
      versions.set(res.snapshot.id, {hash: sha256File(img), ids: blockIds(img)})
    }
  })
  afterAll(() => dir.cleanup())

  it('forgets by policy, keeps every remaining snapshot restorable, and prune frees exactly the garbage', async () => {
    const all = await repo.listSnapshots()
    expect(all).toHaveLength(40)
    const res = await runForget(repo, {policy: {last: 4, daily: 5, utc: true}})
    expect(res.removed.map((m) => m.id)).toContain(all[0]!.id) // the base goes
    expect(res.removed.length).toBeGreaterThan(25)
    const left = await repo.listSnapshots()
    expect(left.length).toBe(40 - res.removed.length)
    expect(left[0]!.parent).toBeNull()
    expect(left[0]!.indexKind).toBe('full')

    for (const m of left) {
      const out = join(dir.path, `r-${m.id.slice(0, 8)}.img`)
      await runRestore(repo, {snapshot: m, to: out})
      expect(sha256File(out), `snapshot ${m.id.slice(0, 8)}`).toBe(versions.get(m.id)!.hash)
    }

    const needed = new Set<string>()
    for (const m of left) for (const id of versions.get(m.id)!.ids) needed.add(id)
    const before = await storedChunks(root)
    const garbage = [...before].filter((id) => !needed.has(id))
    expect(garbage.length).toBeGreaterThan(0)

    const dry = await runPrune(repo, {dryRun: true})
    expect(dry.chunksRemoved).toBe(garbage.length)
    expect(await storedChunks(root)).toEqual(before)

    const pr = await runPrune(repo)
    expect(pr.chunksRemoved).toBe(garbage.length)
    expect(pr.chunksReferenced).toBe(needed.size)
    expect(pr.bytesFreed).toBe(dry.bytesFreed)
    expect(await storedChunks(root)).toEqual(needed)

    const check = await runCheck(repo, {readData: true})
    expect(check.findings).toEqual([])
    expect(check.unreferencedChunks).toBe(0)
    const again = await runPrune(repo)
    expect(again.chunksRemoved + again.indexesRemoved).toBe(0)
  })
})
