// Error codes: every class has a default code, throw sites that concern an
// object or offset say which, the fields survive withContext, and --json
// error output carries them.
import {describe, expect, it} from 'vitest'
import {
  DataError,
  ERROR_CODES,
  ImageFormatError,
  IoError,
  LockedError,
  NotFoundError,
  PasswordError,
  UsageError,
  VdsnapError,
  WarningError,
  toVdsnapError,
  withContext,
} from '../src/errors.js'
import {decodeObject, encodeObject, ObjectKind} from '../src/chunk/object-codec.js'
import {ChangedBlockMap} from '../src/cbt/changed-block-map.js'
import {decodeIndex, encodeIndex} from '../src/repo/index-codec.js'
import {Repository} from '../src/repo/repository.js'
import {errorDocument} from '../src/cli/output.js'
import {MemoryBackend} from './helpers/memory-backend.js'

describe('error codes', () => {
  it.each([
    [new VdsnapError('x'), 'INTERNAL'],
    [new UsageError('x'), 'USAGE'],
    [new WarningError('x'), 'WARNING'],
    [new LockedError('x'), 'LOCKED'],
    [new PasswordError('x'), 'PASSWORD'],
    [new DataError('x'), 'DATA'],
    [new ImageFormatError('/a.img', 'x'), 'IMAGE_FORMAT'],
    [new IoError('x'), 'IO'],
    [new NotFoundError('x'), 'NOT_FOUND'],
  ] as const)('%s has the default code %s, listed in ERROR_CODES', (e, code) => {
    expect(e.code).toBe(code)
    expect(ERROR_CODES[e.code]).toBeTruthy()
  })

  it('a throw site sets a specific code, object and offset; the class and exit kind stay', () => {
    const e = new DataError('chunk broken', {code: 'CHUNK_CORRUPT', object: 'chunks/ab/abcd', offset: 7})
    expect([e.kind, e.code, e.object, e.offset]).toEqual(['data', 'CHUNK_CORRUPT', 'chunks/ab/abcd', 7])
    expect(new ImageFormatError('/a.img', 'bad').object).toBe('/a.img')
    expect(Object.keys(new DataError('plain'))).not.toContain('object')
  })

  it('withContext keeps code, object and offset', () => {
    const e = withContext(new DataError('bad', {code: 'INDEX_CORRUPT', object: 'indexes/x', offset: 3}), 'restoring')
    expect(e.message).toBe('restoring: bad')
    expect([e.code, e.object, e.offset]).toEqual(['INDEX_CORRUPT', 'indexes/x', 3])
  })

  it('classifies system errors with a code and the path concerned', () => {
    const full = toVdsnapError(Object.assign(new Error('x'), {code: 'ENOSPC', path: '/t/f'}))
    expect([full.kind, full.code, full.object]).toEqual(['io', 'NO_SPACE', '/t/f'])
    const gone = toVdsnapError(Object.assign(new Error('x'), {code: 'ENOENT', path: '/t/g'}))
    expect([gone.kind, gone.code, gone.object]).toEqual(['notFound', 'NOT_FOUND', '/t/g'])
    expect(toVdsnapError(Object.assign(new Error('x'), {code: 'EACCES'})).code).toBe('PERMISSION')
  })

  it('a corrupt object names itself, with the code of its kind', () => {
    const enc = encodeObject(ObjectKind.Chunk, 'chunks/aa/aa11', Buffer.alloc(100, 1), {level: 1})
    const flipped = Buffer.from(enc)
    flipped[0] = 0
    expect(() => decodeObject(ObjectKind.Chunk, 'chunks/aa/aa11', flipped)).toThrow(expect.objectContaining({code: 'CHUNK_CORRUPT', object: 'chunks/aa/aa11'}))
    const ix = encodeObject(ObjectKind.Index, 'indexes/1', Buffer.alloc(100, 1), {level: 1})
    expect(() => decodeObject(ObjectKind.Index, 'indexes/1', ix.subarray(0, 20))).toThrow(expect.objectContaining({code: 'INDEX_CORRUPT', object: 'indexes/1'}))
  })

  it('a truncated index is INDEX_CORRUPT naming indexes/<id>', () => {
    const cbm = new ChangedBlockMap(2)
    const buf = encodeIndex({kind: 'full', blockSize: 65536, virtualSize: 131072, blockCount: 2, cbm, entries: Buffer.alloc(64)})
    expect(() => decodeIndex(buf.subarray(0, 40), 'ff00')).toThrow(expect.objectContaining({kind: 'data', code: 'INDEX_CORRUPT', object: 'indexes/ff00'}))
  })

  it('the repository says which chunk, index or snapshot is missing', async () => {
    const repo = await Repository.init(new MemoryBackend(), {blockSize: 65536, level: 1})
    const id = 'ab'.repeat(32)
    await expect(repo.chunks.get(id)).rejects.toMatchObject({kind: 'data', code: 'CHUNK_MISSING', object: `chunks/ab/${id}`})
    await expect(repo.loadIndex(id)).rejects.toMatchObject({kind: 'data', code: 'INDEX_MISSING', object: `indexes/${id}`})
    await expect(repo.loadManifest(id)).rejects.toMatchObject({kind: 'notFound', code: 'SNAPSHOT_NOT_FOUND', object: `snapshots/${id}`})
  })

  it('--json error output carries the code, and object/offset only when set', () => {
    expect(JSON.parse(errorDocument({message: 'm', kind: 'data', code: 'CHUNK_MISSING', object: 'chunks/ab/x'}))).toEqual({
      error: {message: 'm', kind: 'data', code: 'CHUNK_MISSING', exitCode: 6, object: 'chunks/ab/x'},
    })
    expect(JSON.parse(errorDocument({message: 'm', kind: 'usage', code: 'USAGE'}))).toEqual({error: {message: 'm', kind: 'usage', code: 'USAGE', exitCode: 2}})
  })
})
