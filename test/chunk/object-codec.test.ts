import {randomBytes} from 'node:crypto'
import {describe, expect, it} from 'vitest'
import {decodeObject, encodeObject, FLAG_ZSTD, ObjectKind} from '../../src/chunk/object-codec.js'
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
})
