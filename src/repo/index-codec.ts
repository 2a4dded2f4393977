// Snapshot indexes: which chunk holds each block. A full index lists every
// block; a delta index lists only the blocks its changed-block map marks.
// Both carry the map (against the parent snapshot) and a SHA-256 trailer.
// Layout (little endian), see docs/FORMAT.md:
//
//    0  8  magic "VDSINDX1"
//    8  1  kind (1 full, 2 delta)
//    9  1  entry size (32)
//   10  2  reserved 0
//   12  4  block size
//   16  8  virtual size
//   24  8  block count
//   32  8  entry count
//   40 24  reserved 0
//   64     changed-block map, ceil(block count / 8) bytes
//    …     entries, entry count × 32 bytes (chunk id; 32 zero bytes = zero block)
//    …     SHA-256 of everything before
import {createHash} from 'node:crypto'
import {ChangedBlockMap} from '../cbt/changed-block-map.js'
import {DIGEST_SIZE} from '../chunk/digest.js'
import {DataError} from '../errors.js'

export const INDEX_MAGIC = Buffer.from('VDSINDX1', 'ascii') // never change
export const INDEX_HEADER_SIZE = 64
export const INDEX_FULL = 1
export const INDEX_DELTA = 2
export const MIN_BLOCK_SIZE = 64 * 1024
export const MAX_BLOCK_SIZE = 16 * 1024 * 1024

export interface SnapshotIndex {
  kind: 'full' | 'delta'
  blockSize: number
  virtualSize: number
  blockCount: number
  cbm: ChangedBlockMap
  /** full: blockCount × 32 bytes; delta: cbm.count() × 32 bytes in ascending block order. */
  entries: Buffer
}

export function blockCountFor(virtualSize: number, blockSize: number): number {
  return Math.ceil(virtualSize / blockSize)
}

export function encodeIndex(ix: SnapshotIndex): Buffer {
  const entryCount = ix.entries.length / DIGEST_SIZE
  const expected = ix.kind === 'full' ? ix.blockCount : ix.cbm.count()
  if (entryCount !== expected) throw new Error(`index has ${entryCount} entries, expected ${expected}`)
  const header = Buffer.alloc(INDEX_HEADER_SIZE)
  INDEX_MAGIC.copy(header, 0)
  header[8] = ix.kind === 'full' ? INDEX_FULL : INDEX_DELTA
  header[9] = DIGEST_SIZE
  header.writeUInt32LE(ix.blockSize, 12)
  header.writeBigUInt64LE(BigInt(ix.virtualSize), 16)
  header.writeBigUInt64LE(BigInt(ix.blockCount), 24)
  header.writeBigUInt64LE(BigInt(entryCount), 32)
  const body = Buffer.concat([header, ix.cbm.bits, ix.entries])
  return Buffer.concat([body, createHash('sha256').update(body).digest()])
}

/** The code and object of every decoding error: `name` is the index id. */
function corrupt(name: string): {code: 'INDEX_CORRUPT'; object: string} {
  return {code: 'INDEX_CORRUPT', object: `indexes/${name}`}
}

function u64(buf: Buffer, off: number, what: string, name: string): number {
  const v = buf.readBigUInt64LE(off)
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new DataError(`index ${name}: ${what} ${v} is too large`, corrupt(name))
  return Number(v)
}

export function decodeIndex(buf: Buffer, name: string): SnapshotIndex {
  if (buf.length < INDEX_HEADER_SIZE + 32) throw new DataError(`index ${name} is truncated`, corrupt(name))
  const body = buf.subarray(0, buf.length - 32)
  if (!createHash('sha256').update(body).digest().equals(buf.subarray(buf.length - 32))) {
    throw new DataError(`index ${name} fails its checksum (corrupt)`, {...corrupt(name), hint: 'run "vdsnap check"'})
  }
  if (!buf.subarray(0, 8).equals(INDEX_MAGIC)) throw new DataError(`index ${name} has a bad magic`, corrupt(name))
  const kindByte = buf[8]
  if (kindByte !== INDEX_FULL && kindByte !== INDEX_DELTA) throw new DataError(`index ${name} has unknown kind ${kindByte}`, corrupt(name))
  if (buf[9] !== DIGEST_SIZE) throw new DataError(`index ${name} has entry size ${buf[9]}, expected ${DIGEST_SIZE}`, corrupt(name))
  const blockSize = buf.readUInt32LE(12)
  if (blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE || (blockSize & (blockSize - 1)) !== 0) {
    throw new DataError(`index ${name} has invalid block size ${blockSize}`, corrupt(name))
  }
  const virtualSize = u64(buf, 16, 'virtual size', name)
  const blockCount = u64(buf, 24, 'block count', name)
  const entryCount = u64(buf, 32, 'entry count', name)
  if (blockCount !== blockCountFor(virtualSize, blockSize)) throw new DataError(`index ${name} has an inconsistent block count`, corrupt(name))
  const bitmapBytes = Math.ceil(blockCount / 8)
  if (INDEX_HEADER_SIZE + bitmapBytes + entryCount * DIGEST_SIZE !== body.length) {
    throw new DataError(`index ${name} has the wrong length for its counts`, corrupt(name))
  }
  const cbm = new ChangedBlockMap(blockCount, new Uint8Array(body.subarray(INDEX_HEADER_SIZE, INDEX_HEADER_SIZE + bitmapBytes)))
  const kind = kindByte === INDEX_FULL ? 'full' : 'delta'
  if (kind === 'full' ? entryCount !== blockCount : entryCount !== cbm.count()) {
    throw new DataError(`index ${name} has ${entryCount} entries for its map`, corrupt(name))
  }
  const entries = Buffer.from(body.subarray(INDEX_HEADER_SIZE + bitmapBytes))
  return {kind, blockSize, virtualSize, blockCount, cbm, entries}
}
