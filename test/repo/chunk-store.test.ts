// ChunkStore against the local backend (answers has() with a stat) and
// through the fault-injecting wrapper (a backend that is not local: has()
// lists once), plaintext and encrypted: put/get/has/list/remove, the
// errors callers see, and flush() waiting for puts in flight.
import {randomBytes} from 'node:crypto'
import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, afterEach, describe, expect, it} from 'vitest'
import {LocalBackend} from '../../src/backend/local.js'
import type {StorageBackend} from '../../src/backend/types.js'
import {DataError, IoError} from '../../src/errors.js'
import {chunkObjectName, ChunkStore} from '../../src/repo/chunk-store.js'
import {FaultyBackend} from '../helpers/faulty-backend.js'
import {tempDir} from '../helpers/images.js'

const BLOCK = 64 * 1024
const dir = tempDir()
afterAll(() => dir.cleanup())
const stores: ChunkStore[] = []
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()))
})

let n = 0
function newStore(keys: {idKey?: Buffer; encKey?: Buffer}, wrap: (b: StorageBackend) => StorageBackend = (b) => b): {store: ChunkStore; root: string} {
  const root = join(dir.path, `repo-${n++}`)
  const store = new ChunkStore(wrap(new LocalBackend(root)), keys, 3, BLOCK)
  stores.push(store)
  return {store, root}
}

const chunk = (seed: number) => Buffer.concat([Buffer.alloc(BLOCK / 2, seed), randomBytes(BLOCK / 2)])
const encrypted = {idKey: randomBytes(32), encKey: randomBytes(32)}

describe.each([
  ['plaintext', {}],
  ['encrypted', encrypted],
])('%s store on the local backend', (_name, keys) => {
  it('puts a plaintext once, and has, gets, lists and removes it by id', async () => {
    const {store, root} = newStore(keys)
    const data = chunk(1)
    const id = store.digest(data).toString('hex')
    expect(await store.has(id)).toBe(false)
    const put = await store.put(id, {plain: data})
    const file = join(root, chunkObjectName(id))
    expect(put).toEqual({isNew: true, storedSize: readFileSync(file).length})
    expect(put.storedSize).toBeLessThan(BLOCK) // compressed
    expect(await store.put(id, {plain: data})).toEqual({isNew: false, storedSize: 0})
    expect(await store.has(id)).toBe(true)
    expect((await store.get(id)).equals(data)).toBe(true)
    expect((await store.getObject(id)).equals(readFileSync(file))).toBe(true)
    const listed = []
    for await (const c of store.list()) listed.push(c)
    expect(listed).toEqual([{id, size: put.storedSize}])
    await store.remove(id)
    expect(existsSync(file)).toBe(false)
    expect(await store.has(id)).toBe(false)
    const missing = await store.get(id).catch((e: unknown) => e)
    expect(missing).toBeInstanceOf(DataError)
    expect((missing as Error).message).toBe(`chunk ${id.slice(0, 16)}… is missing from ${root}`)
    expect([(missing as DataError).code, (missing as DataError).object]).toEqual(['CHUNK_MISSING', chunkObjectName(id)])
  })

  it('stores an object encoded by another store with the same keys as it is; concurrent puts of one id write once', async () => {
    const a = newStore(keys).store
    const {store: b, root} = newStore(keys)
    expect(b.sharesKeysWith(keys)).toBe(true)
    const data = chunk(2)
    const id = a.digest(data).toString('hex')
    await a.put(id, {plain: data})
    const obj = await a.getObject(id)
    const puts = await Promise.all([b.put(id, {encoded: obj}), b.put(id, {encoded: obj}), b.put(id, {plain: data})])
    expect(puts.filter((p) => p.isNew)).toEqual([{isNew: true, storedSize: obj.length}])
    expect(readFileSync(join(root, chunkObjectName(id))).equals(obj)).toBe(true)
    expect((await b.get(id)).equals(data)).toBe(true)
  })

  it('refuses a damaged chunk with a DataError, never returning its bytes', async () => {
    const {store, root} = newStore(keys)
    const data = randomBytes(BLOCK) // incompressible: the payload is stored raw
    const id = store.digest(data).toString('hex')
    await store.put(id, {plain: data})
    const file = join(root, chunkObjectName(id))
    const bytes = readFileSync(file)
    bytes[bytes.length - 100]! ^= 1
    writeFileSync(file, bytes)
    const err = await store.get(id).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(DataError)
    expect((err as Error).message).toMatch('encKey' in keys ? /failed authentication/ : /does not match its digest/)
    expect([(err as DataError).code, (err as DataError).object]).toEqual(['CHUNK_CORRUPT', chunkObjectName(id)])
  })
})

describe('through the fault-injecting backend', () => {
  it('a failed save rejects the put with the storage error and stores nothing; the next put stores it', async () => {
    let faulty!: FaultyBackend
    const {store, root} = newStore(encrypted, (b) => (faulty = new FaultyBackend(b).failOn('save', 1, new IoError('injected: connection reset'))))
    const data = chunk(3)
    const id = store.digest(data).toString('hex')
    await expect(store.put(id, {plain: data})).rejects.toThrow(new IoError('injected: connection reset'))
    expect(await store.has(id)).toBe(false)
    expect(existsSync(join(root, chunkObjectName(id)))).toBe(false)
    expect(await store.put(id, {plain: data})).toMatchObject({isNew: true})
    expect((await store.get(id)).equals(data)).toBe(true)
    expect(faulty.calls.save).toBe(2)
  })

  it('answers has() from one listing (a backend that is not local), and a failed listing fails has()', async () => {
    const {store: writer, root} = newStore({})
    const ids: string[] = []
    for (let i = 0; i < 5; i++) {
      const data = chunk(10 + i)
      ids.push(writer.digest(data).toString('hex'))
      await writer.put(ids[i]!, {plain: data})
    }
    const faulty = new FaultyBackend(new LocalBackend(root))
    const reader = new ChunkStore(faulty, {}, 3, BLOCK)
    stores.push(reader)
    for (const id of ids) expect(await reader.has(id)).toBe(true)
    expect(await reader.has('ab'.repeat(32))).toBe(false)
    expect([faulty.calls.list, faulty.calls.stat]).toEqual([1, 0])
    const broken = new ChunkStore(new FaultyBackend(new LocalBackend(root)).failOn('list', 1, new IoError('injected: listing cut'), 2), {}, 3, BLOCK)
    stores.push(broken)
    await expect(broken.has(ids[0]!)).rejects.toThrow(/listing cut/)
  })

  it('a failed load rejects get() with the storage error, not as damage', async () => {
    const {store: writer, root} = newStore({})
    const data = chunk(20)
    const id = writer.digest(data).toString('hex')
    await writer.put(id, {plain: data})
    const reader = new ChunkStore(new FaultyBackend(new LocalBackend(root)).failOn('load', 1, new IoError('injected: timeout', {retryable: true})), {}, 3, BLOCK)
    stores.push(reader)
    const err = await reader.get(id).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(IoError)
    expect((await reader.get(id)).equals(data)).toBe(true)
  })

  it('lists only chunk objects, with their sizes, and removes by id', async () => {
    const {store, root} = newStore({})
    const data = chunk(30)
    const id = store.digest(data).toString('hex')
    const {storedSize} = await store.put(id, {plain: data})
    const local = new LocalBackend(root)
    await local.save('chunks/zz/not-a-chunk', Buffer.from('x'))
    await local.save(`chunks/00/${'ff'.repeat(32)}`, Buffer.from('misplaced'))
    const listed = []
    for await (const c of store.list()) listed.push(c)
    expect(listed).toEqual([{id, size: storedSize}])
    await store.remove(id)
    for await (const c of store.list()) expect.unreachable(`${c.id} still listed`)
  })
})

describe('flush', () => {
  it('waits for the puts in flight before making them durable', async () => {
    const events: string[] = []
    let open!: () => void
    const gate = new Promise<void>((r) => (open = r))
    const {store} = newStore({}, (b) => {
      const inner = b as LocalBackend
      return Object.assign(Object.create(inner) as LocalBackend, {
        save: async (name: string, data: Buffer) => {
          await gate
          await inner.save(name, data)
          events.push('save')
        },
        flush: async () => void events.push('flush'),
      })
    })
    const data = chunk(40)
    const put = store.put(store.digest(data).toString('hex'), {plain: data})
    const flushed = store.flush().then(() => events.push('flushed'))
    await new Promise((r) => setImmediate(r))
    expect(events).toEqual([]) // the save is held at the gate: flush cannot have finished
    open()
    await Promise.all([put, flushed])
    expect(events).toEqual(['save', 'flush', 'flushed'])
  })
})
