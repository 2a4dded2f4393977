// Pack files (repository format 2): many chunk objects in one storage
// object, so a TiB is ~65 000 objects instead of two million. docs/FORMAT.md
// §5.1 has the bytes; the constants below never change within format 2.
//
//   [chunk envelope][chunk envelope]...   each exactly as object-codec.ts
//                                         encodes a chunk, AAD = its chunks/ name,
//                                         so one chunk is one ranged read
//   [trailer envelope]                    kind 4: the list of those chunks
//   [footer, 16 bytes]                    trailer length, version, magic
//
// The trailer makes a pack self-describing: the repository index can be
// rebuilt from packs alone. It is an ordinary envelope (encrypted and
// authenticated in an encrypted repository, SHA-256-checksummed otherwise),
// so damage to it is found, never misread. The footer is not authenticated:
// it only says where the trailer starts, and a wrong value makes the
// trailer fail authentication. Every offset is checked before use.
import {createHash} from 'node:crypto'
import {DataError, VdsnapError} from '../errors.js'
import {DIGEST_SIZE, ZERO_ID} from '../chunk/digest.js'
import {HEADER_SIZE, ObjectKind, decodeObject, encodeObject} from '../chunk/object-codec.js'

export const PACK_FOOTER_MAGIC = Buffer.from('VDSPACKF', 'ascii') // never change
export const PACK_FOOTER_SIZE = 16
export const PACK_VERSION = 2
export const TRAILER_MAGIC = Buffer.from('VDSPTRL1', 'ascii') // never change
export const TRAILER_HEADER_SIZE = 16
export const TRAILER_ENTRY_SIZE = 48
/** The name a trailer envelope is authenticated under (its pack's name is the hash of the pack, trailer included). */
export const TRAILER_AAD_NAME = 'pack-trailer'
/** Offsets and lengths are 32-bit: a pack is at most 128 MiB plus one chunk. */
export const MAX_PACK_SIZE = 0xffff_ffff

/** One chunk in a pack: where its envelope lies and how long its plaintext is. */
export interface PackEntry {
  id: Buffer
  offset: number
  length: number
  rawLength: number
}

/** "packs/ab/ab12…": the pack's id is SHA-256 of all its bytes, so a whole-pack read verifies its name. */
export function packName(id: Buffer): string {
  const hex = id.toString('hex')
  return `packs/${hex.slice(0, 2)}/${hex}`
}

export function packIdOf(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest()
}

export function packCorrupt(pack: string, what: string, cause?: unknown): DataError {
  return new DataError(`pack ${pack} is damaged: ${what}`, {code: 'PACK_CORRUPT', object: pack, cause, hint: 'run "vdsnap check --read-data" to list the snapshots it affects'})
}

/** The trailer payload (before its envelope) for entries in pack order. */
export function encodeTrailerPayload(entries: readonly PackEntry[]): Buffer {
  const out = Buffer.alloc(TRAILER_HEADER_SIZE + entries.length * TRAILER_ENTRY_SIZE)
  TRAILER_MAGIC.copy(out, 0)
  out.writeUInt32LE(entries.length, 8)
  entries.forEach((e, i) => {
    const at = TRAILER_HEADER_SIZE + i * TRAILER_ENTRY_SIZE
    if (e.id.length !== DIGEST_SIZE) throw new VdsnapError(`pack entry ${i}: id of ${e.id.length} bytes`)
    e.id.copy(out, at)
    out.writeUInt32LE(e.offset, at + 32)
    out.writeUInt32LE(e.length, at + 36)
    out.writeUInt32LE(e.rawLength, at + 40)
  })
  return out
}

/**
 * Parses a trailer payload of pack `pack` whose chunk envelopes fill
 * [0, dataEnd). Entries must tile that range exactly, in order, each long
 * enough for an envelope header, with distinct non-zero ids.
 */
export function decodeTrailerPayload(pack: string, payload: Buffer, dataEnd: number): PackEntry[] {
  if (payload.length < TRAILER_HEADER_SIZE) throw packCorrupt(pack, `trailer of ${payload.length} bytes`)
  if (!payload.subarray(0, 8).equals(TRAILER_MAGIC)) throw packCorrupt(pack, 'bad trailer magic')
  const count = payload.readUInt32LE(8)
  if (payload.length !== TRAILER_HEADER_SIZE + count * TRAILER_ENTRY_SIZE) throw packCorrupt(pack, `trailer of ${payload.length} bytes for ${count} entries`)
  const entries: PackEntry[] = []
  const seen = new Set<string>()
  let end = 0
  for (let i = 0; i < count; i++) {
    const at = TRAILER_HEADER_SIZE + i * TRAILER_ENTRY_SIZE
    const id = Buffer.from(payload.subarray(at, at + DIGEST_SIZE))
    const offset = payload.readUInt32LE(at + 32)
    const length = payload.readUInt32LE(at + 36)
    const rawLength = payload.readUInt32LE(at + 40)
    if (offset !== end) throw packCorrupt(pack, `entry ${i} starts at ${offset}, expected ${end}`)
    if (length < HEADER_SIZE || offset + length > dataEnd) throw packCorrupt(pack, `entry ${i} (${length} bytes at ${offset}) does not fit the ${dataEnd} data bytes`)
    const hex = id.toString('hex')
    if (id.equals(ZERO_ID) || seen.has(hex)) throw packCorrupt(pack, `entry ${i} has a ${seen.has(hex) ? 'repeated' : 'reserved'} id`)
    seen.add(hex)
    entries.push({id, offset, length, rawLength})
    end = offset + length
  }
  if (end !== dataEnd) throw packCorrupt(pack, `entries end at ${end}, the trailer starts at ${dataEnd}`)
  return entries
}

export function encodeFooter(trailerLength: number): Buffer {
  const out = Buffer.alloc(PACK_FOOTER_SIZE)
  out.writeUInt32LE(trailerLength, 0)
  out[4] = PACK_VERSION
  PACK_FOOTER_MAGIC.copy(out, 8)
  return out
}

/** The trailer's length from the last PACK_FOOTER_SIZE bytes of a pack of `packSize` bytes. */
export function decodeFooter(pack: string, footer: Buffer, packSize: number): number {
  if (footer.length !== PACK_FOOTER_SIZE || packSize < PACK_FOOTER_SIZE) throw packCorrupt(pack, `${packSize} bytes, too short for a pack footer`)
  if (!footer.subarray(8).equals(PACK_FOOTER_MAGIC)) throw packCorrupt(pack, 'no pack footer (bad magic; truncated?)')
  if (footer[4] !== PACK_VERSION) throw packCorrupt(pack, `unknown pack version ${footer[4]}`)
  const trailerLength = footer.readUInt32LE(0)
  if (trailerLength < HEADER_SIZE || trailerLength > packSize - PACK_FOOTER_SIZE) throw packCorrupt(pack, `trailer length ${trailerLength} does not fit ${packSize} bytes`)
  return trailerLength
}

export interface TrailerKeys {
  /** zstd level for the trailer; 0 for none. */
  level: number
  /** Data key of an encrypted repository. */
  key?: Buffer
}

/** The trailer envelope plus the footer: the bytes that follow the chunk envelopes. */
export function encodePackTail(entries: readonly PackEntry[], opts: TrailerKeys): Buffer {
  const trailer = encodeObject(ObjectKind.PackTrailer, TRAILER_AAD_NAME, encodeTrailerPayload(entries), opts)
  return Buffer.concat([trailer, encodeFooter(trailer.length)])
}

/**
 * Parses the entries of pack `pack` (packSize bytes) from `tail`, its last
 * tail.length bytes, which must hold the whole trailer and footer (see
 * tailNeeded). Any damage is a PACK_CORRUPT DataError naming the pack.
 */
export function decodePackTail(pack: string, tail: Buffer, packSize: number, key?: Buffer): PackEntry[] {
  const trailerLength = decodeFooter(pack, tail.subarray(tail.length - PACK_FOOTER_SIZE), packSize)
  if (tail.length < trailerLength + PACK_FOOTER_SIZE) throw new VdsnapError(`pack ${pack}: ${tail.length} tail bytes given, ${trailerLength + PACK_FOOTER_SIZE} needed`)
  const envelope = tail.subarray(tail.length - PACK_FOOTER_SIZE - trailerLength, tail.length - PACK_FOOTER_SIZE)
  let payload: Buffer
  try {
    payload = decodeObject(ObjectKind.PackTrailer, TRAILER_AAD_NAME, envelope, key)
  } catch (e) {
    if (e instanceof DataError) throw packCorrupt(pack, `trailer: ${e.message.replace(`${TRAILER_AAD_NAME} `, '')}`, e)
    throw e
  }
  return decodeTrailerPayload(pack, payload, packSize - PACK_FOOTER_SIZE - trailerLength)
}

/** How many tail bytes decodePackTail needs, from the footer alone. */
export function tailNeeded(pack: string, footer: Buffer, packSize: number): number {
  return decodeFooter(pack, footer, packSize) + PACK_FOOTER_SIZE
}
