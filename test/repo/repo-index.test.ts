// The compact repository index: the id table, the in-memory index, and the
// index file codec (round trip, merge, truncated, flipped byte, wrong key,
// structural damage in an authentic file).
import {randomBytes} from 'node:crypto'
import {describe, expect, it} from 'vitest'
import {DataError} from '../../src/errors.js'
import {IdTable} from '../../src/repo/id-table.js'
import {packName} from '../../src/repo/pack-format.js'
import {RepoIndex} from '../../src/repo/repo-index.js'
import {encodeRepoIndexOf, encodeRepoIndexPayload, loadRepoIndexFile, sealRepoIndex} from '../../src/repo/repo-index-codec.js'

const KEY = randomBytes(32)
const ID_KEY = randomBytes(32)

describe('IdTable', () => {
  it('finds every id added across growth, and no other', () => {
    const t = new IdTable(4)
    const ids = Array.from({length: 20_000}, () => randomBytes(32))
    ids.forEach((id, i) => {
      const {entry, added} = t.add(id)
      expect(added).toBe(true)
      t.recordAt(entry).writeUInt32LE(i, 0)
    })
    expect(t.size).toBe(20_000)
    ids.forEach((id, i) => {
      const e = t.find(id)
      expect(t.idAt(e).equals(id)).toBe(true)
      expect(t.recordAt(e).readUInt32LE(0)).toBe(i)
      expect(t.add(id)).toEqual({entry: e, added: false})
    })
    for (let i = 0; i < 2000; i++) expect(t.find(randomBytes(32))).toBe(-1)
  })

  it('handles ids that share their hash bytes (probing), and ids at an offset in a larger buffer', () => {
    const t = new IdTable(0)
    const ids = Array.from({length: 100}, (_, i) => {
      const id = randomBytes(32)
      id.writeUInt32LE(0xdeadbeef, 0)
      id[31] = i
      return id
    })
    for (const id of ids) t.add(id)
    for (const id of ids) expect(t.find(id)).toBeGreaterThanOrEqual(0)
    const big = Buffer.concat([randomBytes(7), ids[42]!])
    expect(t.find(big, 7)).toBe(42)
  })

  it('allocates nothing more after reserve()', () => {
    const t = new IdTable(12, 10_000)
    const before = t.allocatedBytes
    for (let i = 0; i < 10_000; i++) t.add(randomBytes(32))
    expect(t.allocatedBytes).toBe(before)
    // 32 id + 12 record + slots at a load above 3/8
    expect(before / 10_000).toBeLessThanOrEqual(32 + 12 + 4 / 0.375)
  })
})

function sample(chunks: number, packs: number): {index: RepoIndex; truth: Map<string, [number, number, number]>} {
  const index = new RepoIndex()
  const truth = new Map<string, [number, number, number]>()
  const packIds = Array.from({length: packs}, () => randomBytes(32))
  for (let i = 0; i < chunks; i++) {
    const id = randomBytes(32)
    const p = i % packs
    const n = index.packNumber(packIds[p]!)
    expect(index.add(id, n, i * 100, 90 + (i % 7))).toBe(true)
    truth.set(id.toString('hex'), [p, i * 100, 90 + (i % 7)])
  }
  return {index, truth}
}

describe('RepoIndex', () => {
  it('answers has/get with the pack name, offset and length; a chunk in a second pack counts as a duplicate', () => {
    const index = new RepoIndex()
    const packA = randomBytes(32)
    const packB = randomBytes(32)
    const id = randomBytes(32)
    index.addPack(packA, [{id, offset: 0, length: 50, rawLength: 70}])
    expect(index.has(id)).toBe(true)
    expect(index.get(id)).toEqual({packId: packA, pack: packName(packA), offset: 0, length: 50})
    expect(index.add(id, index.packNumber(packB), 0, 50)).toBe(false)
    expect(index.duplicates).toBe(1)
    expect(index.get(id)!.packId.equals(packA)).toBe(true)
    expect(index.has(randomBytes(32))).toBe(false)
    expect(index.get(randomBytes(32))).toBeUndefined()
  })
})

describe('repository index files', () => {
  for (const [key, idKey] of [[undefined, undefined], [KEY, ID_KEY]] as const) {
    const mode = key ? 'encrypted' : 'plaintext'

    it(`round trip and merge (${mode}): two files load into the union, the merged file equals it`, () => {
      const a = sample(500, 3)
      const b = sample(300, 2)
      const fa = sealRepoIndex(encodeRepoIndexOf(a.index), {level: 3, key}, idKey)
      const fb = sealRepoIndex(encodeRepoIndexOf(b.index), {level: 3, key}, idKey)
      expect(fa.name).toMatch(/^repoindex\/[0-9a-f]{64}$/)
      const all = new RepoIndex()
      expect(loadRepoIndexFile(all, fa.name, fa.data, key)).toBe(500)
      expect(loadRepoIndexFile(all, fb.name, fb.data, key)).toBe(300)
      expect(all.chunkCount).toBe(800)
      expect(all.packCount).toBe(5)
      const merged = sealRepoIndex(encodeRepoIndexOf(all), {level: 3, key}, idKey)
      const again = new RepoIndex()
      loadRepoIndexFile(again, merged.name, merged.data, key)
      for (const [hex, [, offset, length]] of [...a.truth, ...b.truth]) {
        const got = again.get(Buffer.from(hex, 'hex'))!
        expect([got.offset, got.length]).toEqual([offset, length])
        expect(got.pack).toBe(all.get(Buffer.from(hex, 'hex'))!.pack)
      }
      // loading a file twice adds nothing and counts no duplicate (same place)
      loadRepoIndexFile(again, fa.name, fa.data, key)
      expect(again.chunkCount).toBe(800)
      expect(again.duplicates).toBe(0)
    })

    it(`refuses a truncated file, a flipped byte and a wrong key (${mode}) with REPO_INDEX_CORRUPT naming the file`, () => {
      const f = sealRepoIndex(encodeRepoIndexOf(sample(50, 2).index), {level: 0, key}, idKey)
      const bad = (data: Buffer, k = key) => {
        const e = (() => {
          try {
            loadRepoIndexFile(new RepoIndex(), f.name, data, k)
          } catch (err) {
            return err
          }
          throw new Error('accepted')
        })() as DataError
        expect(e).toBeInstanceOf(DataError)
        expect(e.code).toBe('REPO_INDEX_CORRUPT')
        expect(e.message).toContain(f.name)
        return e
      }
      bad(f.data.subarray(0, f.data.length - 1))
      bad(f.data.subarray(0, 5))
      for (const at of [8, 40, f.data.length - 1]) {
        const flipped = Buffer.from(f.data)
        flipped[at]! ^= 0x10
        bad(flipped)
      }
      if (key) bad(f.data, randomBytes(32))
    })
  }

  it('refuses authentic files whose content is inconsistent', () => {
    const p = [randomBytes(32), randomBytes(32)]
    const id = randomBytes(32)
    const e = (over: Partial<{id: Buffer; pack: number; offset: number; length: number}>) => ({id: randomBytes(32), pack: 0, offset: 0, length: 100, ...over})
    const cases: Array<[string, Buffer]> = [
      ['names pack 2 of 2', encodeRepoIndexPayload(p, [e({pack: 2})], 1)],
      ['repeats a chunk id', encodeRepoIndexPayload(p, [e({id}), e({id, offset: 100})], 2)],
      ['listed twice', encodeRepoIndexPayload([p[0]!, p[0]!], [e({})], 1)],
      ['reserved zero id', encodeRepoIndexPayload(p, [e({id: Buffer.alloc(32)})], 1)],
      ['has 3 bytes', encodeRepoIndexPayload(p, [e({length: 3})], 1)],
      ['bytes for', encodeRepoIndexPayload(p, [e({})], 1).subarray(0, 60)],
    ]
    for (const [message, payload] of cases) {
      const f = sealRepoIndex(payload, {level: 0, key: KEY}, ID_KEY)
      expect(() => loadRepoIndexFile(new RepoIndex(), f.name, f.data, KEY), message).toThrow(message)
    }
  })
})
