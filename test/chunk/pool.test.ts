// The chunk pool's typed methods on real worker threads: results, errors
// that cross the thread boundary as the same class with the same fields,
// and a worker that dies failing what is pending and everything after.
import {createHash, randomBytes} from 'node:crypto'
import type {Worker} from 'node:worker_threads'
import {afterEach, describe, expect, it} from 'vitest'
import {DIGEST_SIZE} from '../../src/chunk/digest.js'
import {ChunkPool} from '../../src/chunk/pool.js'
import {deserializeError, serializeError} from '../../src/chunk/pool-protocol.js'
import {DataError, ImageFormatError, IoError, PasswordError, VdsnapError} from '../../src/errors.js'

const pools: ChunkPool[] = []
const newPool = (keys = {}) => {
  const p = new ChunkPool(keys, 3, 2)
  pools.push(p)
  return p
}
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()))
})

const BLOCK = 64 * 1024

describe('typed methods', () => {
  it('hash gives each block its SHA-256 (zero blocks all zero) and the buffer back; pack and unpack round-trip', async () => {
    const pool = newPool()
    const data = Buffer.concat([randomBytes(BLOCK), Buffer.alloc(BLOCK), randomBytes(BLOCK / 2)])
    const ab = new Uint8Array(data).buffer
    const {digests, buf} = await pool.hash(ab, data.length, BLOCK)
    expect(ab.byteLength).toBe(0) // moved to the worker
    expect(Buffer.from(buf).equals(data)).toBe(true)
    expect(digests.length).toBe(3 * DIGEST_SIZE)
    expect(Buffer.from(digests.subarray(0, 32)).equals(createHash('sha256').update(data.subarray(0, BLOCK)).digest())).toBe(true)
    expect(digests.subarray(32, 64).every((x) => x === 0)).toBe(true)
    const items = [
      {start: 0, end: BLOCK, name: 'chunks/aa/first'},
      {start: 2 * BLOCK, end: data.length, name: 'chunks/aa/last'},
    ]
    const {objects, buf: back} = await pool.pack(buf, items)
    expect(Buffer.from(back).equals(data)).toBe(true)
    const plain = await pool.unpack(
      items.map((it, k) => ({name: it.name, data: objects[k]!, digest: digests.subarray(k * 2 * 32, k * 2 * 32 + 32)})),
      {maxSize: BLOCK, rehash: true},
    )
    expect(Buffer.from(plain[0]!).equals(data.subarray(0, BLOCK))).toBe(true)
    expect(Buffer.from(plain[1]!).equals(data.subarray(2 * BLOCK))).toBe(true)
  })
})

describe('errors cross the worker boundary intact', () => {
  it('a chunk that does not match its id rejects with a DataError carrying the hint', async () => {
    const pool = newPool()
    const data = randomBytes(BLOCK)
    const {objects} = await pool.pack(new Uint8Array(data).buffer, [{start: 0, end: BLOCK, name: 'chunks/aa/x'}])
    const err = await pool.unpack([{name: 'chunks/aa/x', data: objects[0]!, digest: Buffer.alloc(32, 1)}], {maxSize: BLOCK, rehash: true}).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(DataError)
    expect((err as DataError).kind).toBe('data')
    expect((err as DataError).message).toBe('chunks/aa/x does not match its digest (corrupt chunk)')
    expect((err as DataError).hint).toMatch(/check --read-data/)
    expect([(err as DataError).code, (err as DataError).object]).toEqual(['CHUNK_CORRUPT', 'chunks/aa/x'])
  })

  it('an encrypted chunk in a pool without a key rejects with a PasswordError', async () => {
    const key = randomBytes(32)
    const sealed = await newPool({encKey: key, idKey: randomBytes(32)}).pack(new Uint8Array(randomBytes(100)).buffer, [{start: 0, end: 100, name: 'c'}])
    const err = await newPool().unpack([{name: 'c', data: sealed.objects[0]!, digest: Buffer.alloc(32)}], {maxSize: BLOCK, rehash: false}).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(PasswordError)
    expect((err as PasswordError).kind).toBe('password')
  })

  it('serialization keeps the class and every plain field, whatever the constructor takes', () => {
    const data = new DataError('chunks/ab/cd is truncated', {hint: 'run check', code: 'CHUNK_CORRUPT', object: 'chunks/ab/cd', offset: 4096})
    const back = deserializeError(structuredClone(serializeError(data))) as DataError
    expect(back).toBeInstanceOf(DataError)
    expect([back.message, back.hint, back.kind, back.code, back.object, back.offset, back.retryable]).toEqual(['chunks/ab/cd is truncated', 'run check', 'data', 'CHUNK_CORRUPT', 'chunks/ab/cd', 4096, false])
    const img = deserializeError(structuredClone(serializeError(new ImageFormatError('/x.vdi', 'bad header')))) as ImageFormatError
    expect(img).toBeInstanceOf(ImageFormatError)
    expect([img.message, img.path, img.kind, img.code]).toEqual(['/x.vdi: bad header', '/x.vdi', 'data', new ImageFormatError('/y', 'z').code])
    const io = deserializeError(structuredClone(serializeError(new IoError('reset', {retryable: true})))) as IoError
    expect([io instanceof IoError, io.retryable]).toEqual([true, true])
    expect(deserializeError(structuredClone(serializeError(new RangeError('r'))))).toBeInstanceOf(RangeError)
  })
})

describe('a worker that dies', () => {
  it('fails the request pending on it, and every later one, with one error naming the cause', async () => {
    const pool = newPool()
    // both workers up and idle
    await Promise.all([1, 2].map(() => pool.hash(new ArrayBuffer(BLOCK), BLOCK, BLOCK)))
    const victim = (pool as unknown as {workers: Worker[]}).workers[0]!
    const stopped = victim.terminate() // the request below reaches a worker that can no longer answer
    const pending = pool.hash(new ArrayBuffer(BLOCK), BLOCK, BLOCK)
    await stopped
    const err = await pending.catch((e: unknown) => e)
    expect(err).toBeInstanceOf(VdsnapError)
    expect((err as Error).message).toBe('chunk worker failed: worker 1 of 2 exited with code 1')
    const later = await pool.hash(new ArrayBuffer(BLOCK), BLOCK, BLOCK).catch((e: unknown) => e)
    expect(later).toBe(err)
  })
})
