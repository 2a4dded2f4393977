import {randomBytes} from 'node:crypto'
import {describe, expect, it} from 'vitest'
import {chunkObjectSizeBounds, decodeObject, encodeObject, FLAG_ZSTD, ObjectKind} from '../../src/chunk/object-codec.js'
import {DataError, PasswordError} from '../../src/errors.js'

const key = randomBytes(32)
const compressible = Buffer.alloc(1 << 20, 'abcdefgh')
const random = randomBytes(1 << 16)

describe('object envelope', () => {
  it.each([
    ['plaintext chunk, compressible', ObjectKind.Chunk, compressible, undefined],
    ['plaintext chunk, incompressible', ObjectKind.Chunk, random, undefined],
    ['encrypted chunk', ObjectKind.Chunk, compressible, key],
    ['plaintext index', ObjectKind.Index, random, undefined],
    ['encrypted manifest', ObjectKind.Manifest, Buffer.from('{"a":1}'), key],
  ])('round-trips: %s', (_n, kind, payload, k) => {
    const enc = encodeObject(kind, 'name/x', payload, {level: 3, key: k})
    expect(decodeObject(kind, 'name/x', enc, k).equals(payload)).toBe(true)
  })

  it('keeps a payload raw when compression does not shrink it', () => {
    expect(encodeObject(ObjectKind.Chunk, 'c', random, {level: 3})[6]! & FLAG_ZSTD).toBe(0)
    expect(encodeObject(ObjectKind.Chunk, 'c', compressible, {level: 3})[6]! & FLAG_ZSTD).toBe(FLAG_ZSTD)
  })

  it('binds the name: an object moved to another name fails authentication', () => {
    const enc = encodeObject(ObjectKind.Chunk, 'chunks/aa/1', compressible, {level: 3, key})
    expect(() => decodeObject(ObjectKind.Chunk, 'chunks/aa/2', enc, key)).toThrow(DataError)
  })

  it('refuses tampering, truncation, wrong kind, wrong key and missing key', () => {
    const enc = encodeObject(ObjectKind.Index, 'i', random, {level: 3, key})
    const flipped = Buffer.from(enc)
    flipped[40]! ^= 1
    expect(() => decodeObject(ObjectKind.Index, 'i', flipped, key)).toThrow(/authentication/)
    expect(() => decodeObject(ObjectKind.Index, 'i', enc.subarray(0, 7), key)).toThrow(/truncated/)
    expect(() => decodeObject(ObjectKind.Manifest, 'i', enc, key)).toThrow(/kind/)
    expect(() => decodeObject(ObjectKind.Index, 'i', enc, randomBytes(32))).toThrow(DataError)
    expect(() => decodeObject(ObjectKind.Index, 'i', enc)).toThrow(PasswordError)
    const plain = encodeObject(ObjectKind.Index, 'i', random, {level: 0})
    const bad = Buffer.from(plain)
    bad[100]! ^= 1
    expect(() => decodeObject(ObjectKind.Index, 'i', bad)).toThrow(/checksum/)
    expect(() => decodeObject(ObjectKind.Index, 'i', plain, key)).toThrow(/not encrypted/)
    expect(() => decodeObject(ObjectKind.Index, 'i', Buffer.from('XXXXXXXXXXXX'))).toThrow(/magic/)
  })

  // check flags chunk objects by size alone: every real encoding must fall inside the bounds.
  it.each([
    ['1 byte', Buffer.from([7])],
    ['64 bytes (never compressed)', randomBytes(64)],
    ['65 bytes of one value', Buffer.alloc(65, 1)],
    ['64 KiB of one value (an RLE block)', Buffer.alloc(1 << 16, 'x')],
    ['64 KiB random', randomBytes(1 << 16)],
    ['1 MiB compressible', compressible],
    ['16 MiB of one value', Buffer.alloc(1 << 24, 3)],
    ['a short last block of text', Buffer.from('hello world, '.repeat(1000))],
  ])('chunk size bounds hold for %s, plaintext and encrypted', (_n, payload) => {
    for (const k of [undefined, key]) {
      const size = encodeObject(ObjectKind.Chunk, 'chunks/aa/x', payload, {level: 3, key: k}).length
      const {min, max} = chunkObjectSizeBounds(payload.length, k !== undefined)
      expect(size).toBeGreaterThanOrEqual(min)
      expect(size).toBeLessThanOrEqual(max)
    }
  })

  it('chunk size bounds: a raw payload is exact; an encrypted chunk is never 20 bytes', () => {
    expect(chunkObjectSizeBounds(10, false)).toEqual({min: 18, max: 18})
    expect(chunkObjectSizeBounds(10, true)).toEqual({min: 46, max: 46})
    expect(chunkObjectSizeBounds(1 << 16, true).min).toBeGreaterThan(20)
    expect(chunkObjectSizeBounds(1 << 24, false).min).toBeGreaterThan(8 + 4 * 128)
  })

  it('a truncated object names itself and says to run check', () => {
    const enc = encodeObject(ObjectKind.Chunk, 'chunks/aa/x', random, {level: 3, key})
    const err = (() => {
      try {
        decodeObject(ObjectKind.Chunk, 'chunks/aa/x', enc.subarray(0, 20), key)
      } catch (e) {
        return e as DataError
      }
    })()
    expect(err).toBeInstanceOf(DataError)
    expect(err!.oneLine()).toBe('chunks/aa/x is truncated (20 bytes); run "vdsnap check --read-data" to list damaged chunks')
  })
})
