// The overlay file's header: one codec, bounds-checked, symmetric. Layout in
// docs/FORMAT.md ("Overlay file"). Offsets and the magic never change.
import {crc32} from 'node:zlib'
import {DataError} from '../errors.js'

export const OVERLAY_MAGIC = Buffer.from('VDSNAPOV', 'ascii')
export const OVERLAY_VERSION = 1
/** The overlay's allocation unit: every write lands in whole sectors of this size. */
export const SECTOR = 4096
export const HEADER_SIZE = 4096
/** Where the data area starts is aligned to this, so sector s sits at dataOffset + s * SECTOR. */
export const DATA_ALIGN = 1024 * 1024
const SNAPSHOT_ID_FIELD = 64
const CRC_AT = 48 + SNAPSHOT_ID_FIELD

export interface OverlayHeader {
  virtualSize: number
  /** The id of the snapshot that is this overlay's logical base. */
  snapshotId: string
  mapOffset: number
  mapLength: number
  dataOffset: number
}

/** The header for a new overlay over a disk of `virtualSize` bytes. */
export function newHeader(snapshotId: string, virtualSize: number): OverlayHeader {
  const sectors = Math.ceil(virtualSize / SECTOR)
  const mapLength = Math.ceil(Math.ceil(sectors / 4) / SECTOR) * SECTOR
  const dataOffset = Math.ceil((HEADER_SIZE + mapLength) / DATA_ALIGN) * DATA_ALIGN
  return {virtualSize, snapshotId, mapOffset: HEADER_SIZE, mapLength, dataOffset}
}

export function encodeHeader(h: OverlayHeader): Buffer {
  const id = Buffer.from(h.snapshotId, 'ascii')
  if (id.length > SNAPSHOT_ID_FIELD) throw new RangeError(`snapshot id of ${id.length} bytes`)
  const b = Buffer.alloc(HEADER_SIZE)
  OVERLAY_MAGIC.copy(b, 0)
  b.writeUInt32LE(OVERLAY_VERSION, 8)
  b.writeUInt32LE(SECTOR, 12)
  b.writeBigUInt64LE(BigInt(h.virtualSize), 16)
  b.writeBigUInt64LE(BigInt(h.mapOffset), 24)
  b.writeBigUInt64LE(BigInt(h.mapLength), 32)
  b.writeBigUInt64LE(BigInt(h.dataOffset), 40)
  id.copy(b, 48)
  b.writeUInt32LE(crc32(b.subarray(0, CRC_AT)), CRC_AT)
  return b
}

function u64(b: Buffer, at: number, path: string, what: string): number {
  const v = b.readBigUInt64LE(at)
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new DataError(`${path}: overlay ${what} is too large (${v})`)
  return Number(v)
}

export function decodeHeader(b: Buffer, path: string): OverlayHeader {
  if (b.length < HEADER_SIZE || !b.subarray(0, 8).equals(OVERLAY_MAGIC)) {
    throw new DataError(`${path} is not a vdsnap overlay file`, {hint: 'give a new file name to start an overlay, or the file an earlier "vdsnap serve --overlay" wrote'})
  }
  if (b.readUInt32LE(CRC_AT) !== crc32(b.subarray(0, CRC_AT))) throw new DataError(`${path}: overlay header checksum mismatch (the file is damaged)`)
  const version = b.readUInt32LE(8)
  if (version !== OVERLAY_VERSION) throw new DataError(`${path}: overlay version ${version} is not supported (this vdsnap reads version ${OVERLAY_VERSION})`)
  if (b.readUInt32LE(12) !== SECTOR) throw new DataError(`${path}: overlay sector size ${b.readUInt32LE(12)} is not supported`)
  const end = b.indexOf(0, 48)
  const snapshotId = b.toString('ascii', 48, end < 0 || end > CRC_AT ? CRC_AT : end)
  const h: OverlayHeader = {
    virtualSize: u64(b, 16, path, 'disk size'),
    mapOffset: u64(b, 24, path, 'map offset'),
    mapLength: u64(b, 32, path, 'map length'),
    dataOffset: u64(b, 40, path, 'data offset'),
    snapshotId,
  }
  const expect = newHeader(snapshotId, h.virtualSize)
  if (h.mapOffset !== expect.mapOffset || h.mapLength !== expect.mapLength || h.dataOffset !== expect.dataOffset) {
    throw new DataError(`${path}: overlay layout does not match its disk size (the file is damaged)`)
  }
  return h
}
