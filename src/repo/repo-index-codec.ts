// Repository index files (format 2), `repoindex/<64 hex>`: immutable lists of
// chunk id → (pack, offset, length), written after the packs they describe
// and before the snapshot index that needs them. Loading is the union of all
// files; merging writes one file holding the union, then removes the old
// ones. docs/FORMAT.md §6.1 has the bytes; the constants never change.
//
//   0     8     magic "VDSRIDX1"
//   8     4     pack count P
//   12    4     entry count E
//   16    32×P  pack ids
//   ...   44×E  chunk id (32) | pack number (u32, < P) | offset (u32) | length (u32)
//
// The payload goes into an object envelope of kind 5 (encrypted or
// checksummed); its name is the chunk-id function of the payload.
import {DataError, VdsnapError} from '../errors.js'
import {DIGEST_SIZE, ZERO_ID, chunkDigest} from '../chunk/digest.js'
import {HEADER_SIZE, ObjectKind, decodeObject, encodeObject, type EncodeOptions} from '../chunk/object-codec.js'
import {IdTable} from './id-table.js'
import {MAX_PACK_SIZE} from './pack-format.js'
import type {RepoIndex} from './repo-index.js'

export const REPO_INDEX_MAGIC = Buffer.from('VDSRIDX1', 'ascii') // never change
export const REPO_INDEX_HEADER_SIZE = 16
export const REPO_INDEX_ENTRY_SIZE = 44
export const REPO_INDEX_PREFIX = 'repoindex/'

export interface IndexEntry {
  id: Buffer
  pack: number
  offset: number
  length: number
}

/** The payload for `packIds` and entries referring to them by number. */
export function encodeRepoIndexPayload(packIds: readonly Buffer[], entries: Iterable<IndexEntry>, entryCount: number): Buffer {
  const out = Buffer.alloc(REPO_INDEX_HEADER_SIZE + packIds.length * DIGEST_SIZE + entryCount * REPO_INDEX_ENTRY_SIZE)
  REPO_INDEX_MAGIC.copy(out, 0)
  out.writeUInt32LE(packIds.length, 8)
  out.writeUInt32LE(entryCount, 12)
  packIds.forEach((p, i) => p.copy(out, REPO_INDEX_HEADER_SIZE + i * DIGEST_SIZE))
  let at = REPO_INDEX_HEADER_SIZE + packIds.length * DIGEST_SIZE
  let n = 0
  for (const e of entries) {
    if (n++ >= entryCount) throw new VdsnapError(`repository index: more than ${entryCount} entries given`)
    e.id.copy(out, at)
    out.writeUInt32LE(e.pack, at + 32)
    out.writeUInt32LE(e.offset, at + 36)
    out.writeUInt32LE(e.length, at + 40)
    at += REPO_INDEX_ENTRY_SIZE
  }
  if (n !== entryCount) throw new VdsnapError(`repository index: ${n} entries given, ${entryCount} announced`)
  return out
}

/** The whole of `index` as one payload: what a merge writes. */
export function encodeRepoIndexOf(index: RepoIndex): Buffer {
  const packIds = Array.from({length: index.packCount}, (_, i) => index.packIdAt(i))
  return encodeRepoIndexPayload(packIds, index.entries(), index.chunkCount)
}

/** The envelope and its name (`repoindex/` + hex of the chunk-id function of the payload). */
export function sealRepoIndex(payload: Buffer, opts: EncodeOptions, idKey?: Buffer): {name: string; data: Buffer} {
  const name = REPO_INDEX_PREFIX + chunkDigest(payload, idKey).toString('hex')
  return {name, data: encodeObject(ObjectKind.RepoIndex, name, payload, opts)}
}

function corrupt(name: string, what: string, cause?: unknown): DataError {
  return new DataError(`repository index ${name} is damaged: ${what}`, {code: 'REPO_INDEX_CORRUPT', object: name, cause, hint: 'run "vdsnap check"; the index can be rebuilt from the packs'})
}

/** Bounds-checks a payload's header and sizes; returns P and E. */
function header(name: string, payload: Buffer): {packs: number; entries: number} {
  if (payload.length < REPO_INDEX_HEADER_SIZE) throw corrupt(name, `${payload.length} bytes`)
  if (!payload.subarray(0, 8).equals(REPO_INDEX_MAGIC)) throw corrupt(name, 'bad magic')
  const packs = payload.readUInt32LE(8)
  const entries = payload.readUInt32LE(12)
  const want = REPO_INDEX_HEADER_SIZE + packs * DIGEST_SIZE + entries * REPO_INDEX_ENTRY_SIZE
  if (payload.length !== want) throw corrupt(name, `${payload.length} bytes for ${packs} packs and ${entries} entries (${want} expected)`)
  return {packs, entries}
}

/**
 * Adds the entries of index file `name` (its stored bytes) to `index`.
 * Every field is checked before use; a chunk id twice in one file, a pack
 * twice, a pack number out of range or a length that cannot be a chunk
 * envelope is REPO_INDEX_CORRUPT. Returns the number of entries read.
 */
export function loadRepoIndexFile(index: RepoIndex, name: string, stored: Buffer, key?: Buffer): number {
  let payload: Buffer
  try {
    payload = decodeObject(ObjectKind.RepoIndex, name, stored, key)
  } catch (e) {
    if (e instanceof DataError) throw corrupt(name, e.message.replace(`${name} `, ''), e)
    throw e
  }
  const {packs, entries} = header(name, payload)
  const local = new IdTable(0, packs)
  const numbers = new Uint32Array(packs)
  for (let i = 0; i < packs; i++) {
    const at = REPO_INDEX_HEADER_SIZE + i * DIGEST_SIZE
    if (!local.add(payload, at).added) throw corrupt(name, `pack ${i} is listed twice`)
    numbers[i] = index.packNumber(payload, at)
  }
  const seen = new IdTable(0, entries)
  index.reserve(index.chunkCount + entries, index.packCount)
  for (let i = 0, at = REPO_INDEX_HEADER_SIZE + packs * DIGEST_SIZE; i < entries; i++, at += REPO_INDEX_ENTRY_SIZE) {
    const pack = payload.readUInt32LE(at + 32)
    const offset = payload.readUInt32LE(at + 36)
    const length = payload.readUInt32LE(at + 40)
    if (pack >= packs) throw corrupt(name, `entry ${i} names pack ${pack} of ${packs}`)
    if (length < HEADER_SIZE || offset + length > MAX_PACK_SIZE) throw corrupt(name, `entry ${i} has ${length} bytes at ${offset}`)
    if (ZERO_ID.compare(payload, at, at + DIGEST_SIZE) === 0) throw corrupt(name, `entry ${i} has the reserved zero id`)
    if (!seen.add(payload, at).added) throw corrupt(name, `entry ${i} repeats a chunk id`)
    index.add(payload, numbers[pack]!, offset, length, at)
  }
  return entries
}
