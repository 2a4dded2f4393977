// The envelope around every stored object (chunk, index, manifest): an
// 8-byte header, then the payload, optionally zstd-compressed, optionally
// AES-256-GCM-encrypted. docs/FORMAT.md describes the bytes; the constants
// below never change within format version 1.
//
//   0  4  magic "VDSO"
//   4  1  format version (1)
//   5  1  kind (1 chunk, 2 index, 3 manifest, 4 pack trailer, 5 repository index)
//   6  1  flags (bit 0 zstd, bit 1 AES-256-GCM, bit 2 trailing SHA-256)
//   7  1  reserved, 0
//   encrypted:   nonce(12) | ciphertext | tag(16); AAD = header | name
//   plaintext:   payload [| SHA-256(header | payload) when bit 2]
//
// Compression happens before encryption and is kept only when it shrinks
// the payload. Chunks are not checksummed here: their name is the digest of
// their plaintext, which the reader verifies.
import {createCipheriv, createDecipheriv, createHash, randomBytes} from 'node:crypto'
import {Compressor, Decompressor} from 'zstd-napi'
import {createRequire} from 'node:module'
import type * as ZstdBinding from 'zstd-napi/binding.js'
import {DataError, PasswordError} from '../errors.js'

export const OBJECT_MAGIC = Buffer.from('VDSO', 'ascii') // never change
export const OBJECT_VERSION = 1
export const HEADER_SIZE = 8
export const NONCE_SIZE = 12
export const TAG_SIZE = 16
export const CHECKSUM_SIZE = 32

export const enum ObjectKind {
  Chunk = 1,
  Index = 2,
  Manifest = 3,
  /** Format 2: the list of chunks at the end of a pack (repo/pack-format.ts). */
  PackTrailer = 4,
  /** Format 2: a repository index file (repo/repo-index-codec.ts). */
  RepoIndex = 5,
}

export const FLAG_ZSTD = 1
export const FLAG_ENCRYPTED = 2
export const FLAG_CHECKSUM = 4

/** Payloads this short are never compressed (encodeObject). */
const MIN_COMPRESSED_INPUT = 64
// The smallest zstd frame (RFC 8878) holding n > 0 bytes: magic (4), frame
// header descriptor (1), window descriptor or 1-byte content size (1), then
// one block per 128 KiB of output at most, each a 3-byte header plus at
// least 1 byte (an RLE block).
const ZSTD_MIN_FRAME_HEADER = 6
const ZSTD_MIN_BLOCK = 4
const ZSTD_MAX_BLOCK_OUTPUT = 128 * 1024

/**
 * The sizes encodeObject can give a chunk of `length` plaintext bytes: raw,
 * exactly envelope + length; compressed, at least envelope + the smallest
 * zstd frame for that length and less than raw. check uses it to flag
 * truncated or padded chunk objects without reading them; a size inside
 * the bounds proves nothing (only decoding does).
 */
export function chunkObjectSizeBounds(length: number, encrypted: boolean): {min: number; max: number} {
  const envelope = HEADER_SIZE + (encrypted ? NONCE_SIZE + TAG_SIZE : 0)
  const max = envelope + length
  if (length <= MIN_COMPRESSED_INPUT) return {min: max, max}
  const smallestFrame = ZSTD_MIN_FRAME_HEADER + ZSTD_MIN_BLOCK * Math.ceil(length / ZSTD_MAX_BLOCK_OUTPUT)
  return {min: envelope + Math.min(length, smallestFrame), max}
}

// One compressor per level and one decompressor per thread, reused: a fresh
// context per block costs up to half the speed at small block sizes.
const compressors = new Map<number, Compressor>()
let decompressor: Decompressor | undefined

function compress(data: Buffer, level: number): Buffer {
  let c = compressors.get(level)
  if (!c) {
    c = new Compressor()
    c.setParameters({compressionLevel: level})
    compressors.set(level, c)
  }
  return c.compress(data)
}

// zstd-napi's native binding, for decompressing into a given buffer (its
// Decompressor class always allocates). A CommonJS module whose exports ESM cannot name.
const zstdBinding = createRequire(import.meta.url)('zstd-napi/binding.js') as typeof ZstdBinding
let intoCtx: ZstdBinding.DCtx | undefined

/** `data` decompressed, into `out` when given and its frame says it fits (no new memory), else into a new buffer. */
function decompress(data: Buffer, out?: Buffer): Buffer {
  if (out) {
    const size = zstdBinding.getFrameContentSize(data)
    if (size !== null && size <= out.length) {
      if (!intoCtx) {
        intoCtx = new zstdBinding.DCtx()
        intoCtx.setParameter(zstdBinding.DParameter.windowLogMax, 27)
      }
      const n = intoCtx.decompress(out.subarray(0, size), data)
      if (n !== size) throw new Error(`decompressed ${n} bytes, the frame says ${size}`)
      return out.subarray(0, n)
    }
  }
  if (!decompressor) {
    decompressor = new Decompressor()
    decompressor.setParameters({windowLogMax: 27})
  }
  return decompressor.decompress(data)
}

export interface EncodeOptions {
  /** zstd level; 0 disables compression. */
  level: number
  /** 32-byte AES-256 key, or undefined for a plaintext repository. */
  key?: Buffer
}

export function encodeObject(kind: ObjectKind, name: string, payload: Buffer, opts: EncodeOptions): Buffer {
  let body = payload
  let flags = 0
  if (opts.level > 0 && payload.length > MIN_COMPRESSED_INPUT) {
    const packed = compress(payload, opts.level)
    if (packed.length < payload.length) {
      body = packed
      flags |= FLAG_ZSTD
    }
  }
  if (opts.key) flags |= FLAG_ENCRYPTED
  else if (kind !== ObjectKind.Chunk) flags |= FLAG_CHECKSUM
  const header = Buffer.from([...OBJECT_MAGIC, OBJECT_VERSION, kind, flags, 0])
  if (opts.key) {
    const nonce = randomBytes(NONCE_SIZE)
    const cipher = createCipheriv('aes-256-gcm', opts.key, nonce)
    cipher.setAAD(Buffer.concat([header, Buffer.from(name, 'utf8')]))
    const ct = cipher.update(body)
    const fin = cipher.final()
    return Buffer.concat([header, nonce, ct, fin, cipher.getAuthTag()])
  }
  if (flags & FLAG_CHECKSUM) {
    const sum = createHash('sha256').update(header).update(body).digest()
    return Buffer.concat([header, body, sum])
  }
  return Buffer.concat([header, body])
}

/**
 * Inverse of encodeObject; throws DataError on any malformed or tampered
 * object. With `out`, a compressed payload is decompressed into it when it
 * fits (the result is then a view of `out`), saving a new buffer per object.
 */
export function decodeObject(kind: ObjectKind, name: string, data: Buffer, key?: Buffer, maxSize = 2 ** 31, out?: Buffer): Buffer {
  // Plain check reads no chunk, so damage inside one is found only by --read-data.
  const code = kind === ObjectKind.Chunk ? 'CHUNK_CORRUPT' : kind === ObjectKind.Index ? 'INDEX_CORRUPT' : kind === ObjectKind.Manifest ? 'MANIFEST_CORRUPT' : 'OBJECT_CORRUPT'
  const damaged = {hint: kind === ObjectKind.Chunk ? 'run "vdsnap check --read-data" to list damaged chunks' : 'run "vdsnap check" to list damaged objects', code, object: name} as const
  const bad = {code, object: name} as const
  if (data.length < HEADER_SIZE) throw new DataError(`${name} is truncated (${data.length} bytes)`, damaged)
  if (!data.subarray(0, 4).equals(OBJECT_MAGIC)) throw new DataError(`${name} is not a vdsnap object (bad magic)`, bad)
  if (data[4] !== OBJECT_VERSION) throw new DataError(`${name} has unknown format version ${data[4]}`, bad)
  if (data[5] !== kind) throw new DataError(`${name} holds object kind ${data[5]}, expected ${kind}`, bad)
  const flags = data[6]!
  const header = data.subarray(0, HEADER_SIZE)
  let body: Buffer
  if (key && !(flags & FLAG_ENCRYPTED)) throw new DataError(`${name} is not encrypted in an encrypted repository`, bad)
  if (flags & FLAG_ENCRYPTED) {
    if (!key) throw new PasswordError(`${name} is encrypted but the repository was opened without a key`, {object: name})
    if (data.length < HEADER_SIZE + NONCE_SIZE + TAG_SIZE) throw new DataError(`${name} is truncated (${data.length} bytes)`, damaged)
    const nonce = data.subarray(HEADER_SIZE, HEADER_SIZE + NONCE_SIZE)
    const tag = data.subarray(data.length - TAG_SIZE)
    const decipher = createDecipheriv('aes-256-gcm', key, nonce)
    decipher.setAAD(Buffer.concat([header, Buffer.from(name, 'utf8')]))
    decipher.setAuthTag(tag)
    try {
      body = Buffer.concat([decipher.update(data.subarray(HEADER_SIZE + NONCE_SIZE, data.length - TAG_SIZE)), decipher.final()])
    } catch {
      throw new DataError(`${name} failed authentication (corrupt or tampered)`, damaged)
    }
  } else if (flags & FLAG_CHECKSUM) {
    if (data.length < HEADER_SIZE + CHECKSUM_SIZE) throw new DataError(`${name} is truncated (${data.length} bytes)`, damaged)
    body = data.subarray(HEADER_SIZE, data.length - CHECKSUM_SIZE)
    const sum = createHash('sha256').update(header).update(body).digest()
    if (!sum.equals(data.subarray(data.length - CHECKSUM_SIZE))) {
      throw new DataError(`${name} fails its checksum (corrupt)`, damaged)
    }
  } else {
    body = data.subarray(HEADER_SIZE)
  }
  if (flags & FLAG_ZSTD) {
    try {
      body = decompress(body, out)
    } catch (e) {
      throw new DataError(`${name} has a corrupt compressed payload`, {...damaged, cause: e})
    }
    if (body.length > maxSize) throw new DataError(`${name} decompresses to ${body.length} bytes, more than ${maxSize}`, bad)
  }
  return body
}
