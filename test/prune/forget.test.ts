// forget with chain merging on made-up chains: every kept snapshot resolves
// to the same entries, chain lengths are recomputed, orphan indexes go; a
// crash (fault) at every single write or delete leaves every visible
// snapshot resolvable, and a re-run finishes the job.
import {describe, expect, it} from 'vitest'
import {forgetSnapshots} from '../../src/prune/forget.js'
import {Repository} from '../../src/repo/repository.js'
import {FaultyBackend} from '../helpers/faulty-backend.js'
import {MemoryBackend} from '../helpers/memory-backend.js'
import {buildChain, verifyAll} from './synthetic-repo.js'

function indexCount(b: MemoryBackend): number {
  return [...b.objects.keys()].filter((k) => k.startsWith('indexes/')).length
}

describe('forgetSnapshots', () => {
  const cases: [string, (n: number) => number[], number | undefined][] = [
    ['the base of a delta chain', () => [0], undefined],
    ['the base and its next two', () => [0, 1, 2], undefined],
    ['every other snapshot from the middle', (n) => Array.from({length: n}, (_, i) => i).filter((i) => i % 2 === 1 && i < n - 1), undefined],
    ['a run across a synthetic full', () => [3, 4, 5, 6], 5],
    ['the synthetic full alone', () => [5], 5],
    ['the newest', (n) => [n - 1], 5],
    ['all but the newest', (n) => Array.from({length: n - 1}, (_, i) => i), 4],
  ]

  it.each(cases)('removes %s and keeps the rest resolving identically', async (_name, pick, fullEvery) => {
    const backend = new MemoryBackend()
    const {repo, snaps, expected} = await buildChain(backend, {count: 14, fullEvery})
    const removeIdx = pick(snaps.length)
    const res = await forgetSnapshots(repo, removeIdx.map((i) => snaps[i]!.id))
    expect(res.removed).toHaveLength(removeIdx.length)
    const left = await verifyAll(backend, expected)
    expect(left.map((m) => m.id)).toEqual(snaps.filter((_, i) => !removeIdx.includes(i)).map((m) => m.id))
    // chain invariants: parents exist, chain lengths exact, the first is full
    for (const m of left) {
      if (m.parent === null) expect(m.indexKind).toBe('full')
      const parent = left.find((p) => p.id === m.parent)
      expect(m.chainLength).toBe(m.indexKind === 'full' ? 0 : parent!.chainLength + 1)
    }
    // only indexes that manifests name remain
    expect(indexCount(backend)).toBe(new Set(left.map((m) => m.index)).size)
    // stats and times of the rebased snapshots are theirs
    for (const m of left) expect(m.stats.bytesRead).toBe(snaps.findIndex((s) => s.id === m.id))
  })

  it('dry run writes nothing and says who is rebased', async () => {
    const backend = new MemoryBackend()
    const {repo, snaps} = await buildChain(backend, {count: 6})
    const before = new Map(backend.objects)
    const res = await forgetSnapshots(repo, [snaps[0]!.id, snaps[2]!.id], {dryRun: true})
    expect(backend.objects).toEqual(before)
    expect(res.rebased.map((r) => [r.id, r.newParent, r.indexKind])).toEqual([
      [snaps[1]!.id, null, 'full'],
      [snaps[3]!.id, snaps[1]!.id, 'delta'],
    ])
  })

  it('two disks with a shared identical index keep it', async () => {
    const backend = new MemoryBackend()
    const a = await buildChain(backend, {count: 3, seed: 1, disk: 'a'})
    await buildChain(backend, {count: 3, seed: 1, disk: 'b', repo: a.repo}) // same seed: same base index
    await forgetSnapshots(a.repo, [a.snaps[0]!.id])
    const repo = await Repository.open(backend, async () => '')
    for (const m of await repo.listSnapshots()) await repo.loadIndex(m.index)
  })

  describe('crash at every write or delete', () => {
    for (const method of ['save', 'remove'] as const) {
      it(`fails the Nth ${method}, then a re-run finishes; every snapshot stays resolvable`, async () => {
        for (let n = 1; n < 60; n++) {
          const backend = new MemoryBackend()
          const {snaps, expected} = await buildChain(backend, {count: 12, fullEvery: 5, seed: n})
          const removeIds = [0, 1, 4, 5, 7, 9].map((i) => snaps[i]!.id)
          const faulty = new FaultyBackend(backend).failOn(method, n, new Error('crash'))
          const crashed = await forgetSnapshots(await Repository.open(faulty, async () => ''), removeIds).then(
            () => false,
            () => true,
          )
          await verifyAll(backend, expected)
          const again = await Repository.open(backend, async () => '')
          const still = new Set(await again.listSnapshotIds())
          await forgetSnapshots(again, removeIds.filter((id) => still.has(id)))
          const left = await verifyAll(backend, expected)
          expect(left).toHaveLength(6)
          if (!crashed) return // n is past the last write: every step was covered
        }
        throw new Error('forget never finished without reaching the fault')
      })
    }
  })
})
