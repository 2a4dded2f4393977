// Pack codec: writer → bytes → trailer parser → chunk envelopes, on a real
// local backend for the ranged reads, plaintext and encrypted; and every
// kind of damage refused as PACK_CORRUPT naming the pack.
import {randomBytes} from 'node:crypto'
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {LocalBackend} from '../../src/backend/local.js'
import {chunkDigest} from '../../src/chunk/digest.js'
import {ObjectKind, decodeObject, encodeObject} from '../../src/chunk/object-codec.js'
import {DataError, NotFoundError} from '../../src/errors.js'
import {PACK_FOOTER_SIZE, decodePackTail, packIdOf, type PackEntry} from '../../src/repo/pack-format.js'
import {coalesce, readPackChunks, readPackEntries, TAIL_GUESS} from '../../src/repo/pack-reader.js'
import {PackWriter} from '../../src/repo/pack-writer.js'
import {Repository} from '../../src/repo/repository.js'

const KEY = randomBytes(32)
const OTHER_KEY = randomBytes(32)

interface Built {
  name: string
  data: Buffer
  entries: PackEntry[]
  plain: Map<string, Buffer>
}

/** A pack of `count` chunks (some compressible), as the chunk store will build it. */
function build(count: number, key: Buffer | undefined, size = 3000): Built {
  const w = new PackWriter(4 << 20, {level: 3, key})
  const plain = new Map<string, Buffer>()
  for (let i = 0; i < count; i++) {
    const data = i % 2 ? Buffer.alloc(size, i) : randomBytes(size + (i % 100))
    data.writeUInt32LE(i, 0) // distinct ids past 256 chunks
    const id = chunkDigest(data)
    const hex = id.toString('hex')
    plain.set(hex, data)
    w.add(id, encodeObject(ObjectKind.Chunk, Repository.chunkName(hex), data, {level: 3, key}), data.length)
  }
  expect(w.count).toBe(count)
  const sealed = w.seal()
  expect(w.count).toBe(0)
  return {name: sealed.name, data: sealed.data, entries: sealed.entries, plain}
}

const tailOf = (b: Built) => b.data.subarray(b.data.length - Math.min(b.data.length, TAIL_GUESS))

/** The DataError decodePackTail throws for these bytes (or fails the test). */
function damage(name: string, data: Buffer, key?: Buffer): DataError {
  try {
    decodePackTail(name, data.subarray(Math.max(0, data.length - TAIL_GUESS)), data.length, key)
  } catch (e) {
    expect(e).toBeInstanceOf(DataError)
    expect((e as DataError).code).toBe('PACK_CORRUPT')
    expect((e as DataError).object).toBe(name)
    expect((e as DataError).message).toContain(name)
    return e as DataError
  }
  throw new Error('damaged pack was accepted')
}

describe('pack format', () => {
  for (const key of [undefined, KEY]) {
    const mode = key ? 'encrypted' : 'plaintext'

    it(`round trip (${mode}): the trailer lists every chunk, each envelope decodes under its own name`, () => {
      const b = build(40, key)
      expect(b.name).toBe(`packs/${packIdOf(b.data).toString('hex').slice(0, 2)}/${packIdOf(b.data).toString('hex')}`)
      const entries = decodePackTail(b.name, tailOf(b), b.data.length, key)
      expect(entries).toEqual(b.entries)
      for (const e of entries) {
        const hex = e.id.toString('hex')
        const got = decodeObject(ObjectKind.Chunk, Repository.chunkName(hex), b.data.subarray(e.offset, e.offset + e.length), key)
        expect(got.equals(b.plain.get(hex)!)).toBe(true)
        expect(e.rawLength).toBe(got.length)
      }
    })

    it(`refuses a truncated pack, a flipped byte in trailer or footer, a wrong key (${mode})`, () => {
      const b = build(10, key)
      expect(damage(b.name, b.data.subarray(0, b.data.length - 1), key).message).toMatch(/footer/)
      expect(damage(b.name, b.data.subarray(0, b.data.length - PACK_FOOTER_SIZE - 5), key).message).toMatch(/footer/)
      expect(damage(b.name, b.data.subarray(0, 7), key).message).toMatch(/too short/)
      // chunk bytes cut from the front: the trailer no longer tiles the data area
      const front = b.data.subarray(100)
      expect(damage(b.name, front, key).message).toMatch(/entries end at|starts at|does not fit/)
      const trailerStart = b.entries.at(-1)!.offset + b.entries.at(-1)!.length
      for (const at of [trailerStart, trailerStart + 20, b.data.length - PACK_FOOTER_SIZE - 1]) {
        const flipped = Buffer.from(b.data)
        flipped[at]! ^= 0x40
        damage(b.name, flipped, key)
      }
      for (const at of [0, 4, 9, 15]) {
        const flipped = Buffer.from(b.data)
        flipped[b.data.length - PACK_FOOTER_SIZE + at]! ^= 0x01
        damage(b.name, flipped, key)
      }
      if (key) expect(damage(b.name, b.data, OTHER_KEY).message).toMatch(/authentication/)
    })
  }

  it('refuses a trailer whose entries overlap, leave a gap or repeat an id, even when authentic', async () => {
    const {encodePackTail} = await import('../../src/repo/pack-format.js')
    const body = randomBytes(300)
    const id = () => randomBytes(32)
    const pack = (entries: PackEntry[]) => Buffer.concat([body, encodePackTail(entries, {level: 0, key: KEY})])
    const same = id()
    expect(damage('packs/x', pack([{id: same, offset: 0, length: 100, rawLength: 1}, {id: same, offset: 100, length: 200, rawLength: 1}]), KEY).message).toMatch(/repeated/)
    expect(damage('packs/x', pack([{id: id(), offset: 0, length: 100, rawLength: 1}, {id: id(), offset: 90, length: 210, rawLength: 1}]), KEY).message).toMatch(/starts at 90/)
    expect(damage('packs/x', pack([{id: id(), offset: 0, length: 100, rawLength: 1}, {id: id(), offset: 100, length: 150, rawLength: 1}]), KEY).message).toMatch(/end at 250/)
    expect(damage('packs/x', pack([{id: id(), offset: 0, length: 400, rawLength: 1}]), KEY).message).toMatch(/does not fit/)
    expect(damage('packs/x', pack([{id: Buffer.alloc(32), offset: 0, length: 300, rawLength: 1}]), KEY).message).toMatch(/reserved/)
  })

  it('coalesces adjacent entries into runs, bounded in bytes', () => {
    const e = (offset: number, length: number): PackEntry => ({id: Buffer.alloc(32, offset % 251), offset, length, rawLength: length})
    const runs = coalesce([e(300, 100), e(0, 100), e(100, 100), e(500, 50), e(550, 50)], 1000)
    expect(runs.map((r) => r.map((x) => x.offset))).toEqual([[0, 100], [300], [500, 550]])
    expect(coalesce([e(0, 100), e(100, 100), e(200, 100)], 200).map((r) => r.length)).toEqual([2, 1])
    expect(coalesce([e(0, 5000)], 100).map((r) => r.length)).toEqual([1])
  })
})

describe('pack reads on a local backend', () => {
  let dir = ''
  let backend: LocalBackend
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vdsnap-pack-'))
    backend = new LocalBackend(dir)
  })
  afterAll(async () => {
    await rm(dir, {recursive: true, force: true})
  })

  it('reads the trailer from the tail (a long trailer in two reads) and chunks with one read per adjacent run', async () => {
    for (const [count, size] of [[12, 3000], [2000, 40]] as const) {
      const b = build(count, KEY, size)
      await backend.save(b.name, b.data)
      const entries = await readPackEntries(backend, b.name, KEY)
      expect(entries).toEqual(b.entries)
      const wanted = [entries[1]!, entries[2]!, entries[3]!, entries[7]!, entries[count - 1]!]
      const seen: string[] = []
      const reads = await readPackChunks(backend, b.name, wanted, (e, env) => {
        const hex = e.id.toString('hex')
        expect(decodeObject(ObjectKind.Chunk, Repository.chunkName(hex), env, KEY).equals(b.plain.get(hex)!)).toBe(true)
        seen.push(hex)
      })
      expect(reads).toBe(3)
      expect(seen.sort()).toEqual(wanted.map((e) => e.id.toString('hex')).sort())
    }
  })

  it('names the pack when it is truncated on storage or missing', async () => {
    const b = build(5, KEY)
    await backend.save(b.name, b.data.subarray(0, b.data.length - 40))
    const err = (await readPackEntries(backend, b.name, KEY).catch((e: unknown) => e)) as DataError
    expect(err, String(err)).toBeInstanceOf(DataError)
    expect(err.code).toBe('PACK_CORRUPT')
    expect(err.message).toContain(b.name)
    // a size recorded in the index that the object no longer has
    const short = (await readPackEntries(backend, b.name, KEY, b.data.length).catch((e: unknown) => e)) as DataError
    expect(short.code).toBe('PACK_CORRUPT')
    expect(short.message).toMatch(/truncated/)
    await backend.save(b.name, b.data.subarray(0, b.entries.at(-1)!.offset + 10))
    const chunk = (await readPackChunks(backend, b.name, [b.entries.at(-1)!], () => {}).catch((e: unknown) => e)) as DataError
    expect(chunk.code).toBe('PACK_CORRUPT')
    expect(chunk.object).toBe(b.name)
    await expect(readPackEntries(backend, 'packs/00/none', KEY)).rejects.toBeInstanceOf(NotFoundError)
  })
})
