// Codecs for the VHD footer (512 bytes, at the end of every VHD and copied
// at offset 0 of dynamic ones) and the dynamic disk header (1024 bytes).
// All fields are big-endian. Checksums are the one's complement of the byte
// sum with the checksum field taken as zero. Offsets below never change.
import {ImageFormatError} from '../errors.js'
import {u64be, writeU64be} from './image-file.js'

export const FOOTER_SIZE = 512
export const DYN_HEADER_SIZE = 1024
export const SECTOR = 512
export const FOOTER_COOKIE = 'conectix'
export const DYN_COOKIE = 'cxsparse'
export const FIXED_DATA_OFFSET = 0xffff_ffff_ffff_ffffn
export const UNALLOCATED = 0xffff_ffff

export const DISK_FIXED = 2
export const DISK_DYNAMIC = 3
export const DISK_DIFFERENCING = 4

/** Largest geometry: 65535 cylinders × 16 heads × 255 sectors. */
export const MAX_CHS_SECTORS = 65535 * 16 * 255
/** qemu and Hyper-V refuse dynamic VHDs above 2040 GiB (0xff000000 sectors). */
export const MAX_VHD_BYTES = 0xff00_0000 * SECTOR

// Footer field offsets.
const F_COOKIE = 0
const F_FEATURES = 8
const F_VERSION = 12
const F_DATA_OFFSET = 16
const F_TIMESTAMP = 24
const F_CREATOR_APP = 28
const F_CREATOR_VERSION = 32
const F_CREATOR_OS = 36
const F_ORIGINAL_SIZE = 40
const F_CURRENT_SIZE = 48
const F_CYLINDERS = 56
const F_HEADS = 58
const F_SPT = 59
const F_DISK_TYPE = 60
const F_CHECKSUM = 64
const F_UNIQUE_ID = 68

// Dynamic header field offsets.
const D_COOKIE = 0
const D_DATA_OFFSET = 8
const D_TABLE_OFFSET = 16
const D_VERSION = 24
const D_MAX_ENTRIES = 28
const D_BLOCK_SIZE = 32
const D_CHECKSUM = 36
const D_PARENT_ID = 40
const D_PARENT_TIME = 56
const D_PARENT_NAME = 64
const D_PARENT_NAME_SIZE = 512
const D_LOCATORS = 576
const LOCATOR_SIZE = 24
const LOCATOR_COUNT = 8

const FORMAT_VERSION = 0x0001_0000
const FEATURES_RESERVED = 2
const HOST_OS_WINDOWS = 0x5769_326b // "Wi2k"
/** Creator apps for which qemu takes the size from the footer rather than the CHS geometry. */
const CURRENT_SIZE_CREATORS = ['win ', 'qem2', 'd2v ', 'CTXS', 'tap\0']

export interface VhdFooter {
  dataOffset: number | undefined
  creatorApp: string
  currentSize: number
  cylinders: number
  heads: number
  sectorsPerTrack: number
  diskType: number
  uniqueId: Buffer
}

export interface ParentLocator {
  code: string
  dataLength: number
  dataOffset: number
}

export interface VhdDynamicHeader {
  tableOffset: number
  maxTableEntries: number
  blockSize: number
  parentId: Buffer
  parentName: Buffer
  locators: ParentLocator[]
}

export function vhdChecksum(buf: Buffer, checksumOffset: number): number {
  let sum = 0
  for (let i = 0; i < buf.length; i++) if (i < checksumOffset || i >= checksumOffset + 4) sum += buf[i]!
  return ~sum >>> 0
}

/** Parses a footer; throws an ImageFormatError saying what is wrong. */
export function parseFooter(buf: Buffer, path: string): VhdFooter {
  if (buf.length < FOOTER_SIZE) throw new ImageFormatError(path, 'file too small for a VHD footer')
  if (buf.toString('latin1', F_COOKIE, F_COOKIE + 8) !== FOOTER_COOKIE) throw new ImageFormatError(path, 'VHD footer cookie "conectix" not found')
  const stored = buf.readUInt32BE(F_CHECKSUM)
  if (vhdChecksum(buf, F_CHECKSUM) !== stored) throw new ImageFormatError(path, 'VHD footer checksum mismatch')
  const diskType = buf.readUInt32BE(F_DISK_TYPE)
  if (![DISK_FIXED, DISK_DYNAMIC, DISK_DIFFERENCING].includes(diskType)) throw new ImageFormatError(path, `unsupported VHD disk type ${diskType}`)
  const rawData = buf.readBigUInt64BE(F_DATA_OFFSET)
  return {
    dataOffset: diskType === DISK_FIXED || rawData === FIXED_DATA_OFFSET ? undefined : u64be(buf, F_DATA_OFFSET, path, 'VHD dynamic header offset'),
    creatorApp: buf.toString('latin1', F_CREATOR_APP, F_CREATOR_APP + 4),
    currentSize: u64be(buf, F_CURRENT_SIZE, path, 'VHD current size'),
    cylinders: buf.readUInt16BE(F_CYLINDERS),
    heads: buf[F_HEADS]!,
    sectorsPerTrack: buf[F_SPT]!,
    diskType,
    uniqueId: Buffer.from(buf.subarray(F_UNIQUE_ID, F_UNIQUE_ID + 16)),
  }
}

/** The virtual size as qemu computes it: CHS geometry unless the creator app says otherwise. */
export function footerVirtualSize(f: VhdFooter): number {
  const chs = f.cylinders * f.heads * f.sectorsPerTrack
  const useCurrent = CURRENT_SIZE_CREATORS.includes(f.creatorApp) || chs === MAX_CHS_SECTORS
  return useCurrent ? Math.floor(f.currentSize / SECTOR) * SECTOR : chs * SECTOR
}

export function encodeFooter(f: VhdFooter, timestamp: number): Buffer {
  const b = Buffer.alloc(FOOTER_SIZE)
  b.write(FOOTER_COOKIE, F_COOKIE, 'latin1')
  b.writeUInt32BE(FEATURES_RESERVED, F_FEATURES)
  b.writeUInt32BE(FORMAT_VERSION, F_VERSION)
  if (f.dataOffset === undefined) b.writeBigUInt64BE(FIXED_DATA_OFFSET, F_DATA_OFFSET)
  else writeU64be(b, f.dataOffset, F_DATA_OFFSET)
  b.writeUInt32BE(timestamp >>> 0, F_TIMESTAMP)
  b.write(f.creatorApp.padEnd(4, ' ').slice(0, 4), F_CREATOR_APP, 'latin1')
  b.writeUInt32BE(0x0001_0000, F_CREATOR_VERSION)
  b.writeUInt32BE(HOST_OS_WINDOWS, F_CREATOR_OS)
  writeU64be(b, f.currentSize, F_ORIGINAL_SIZE)
  writeU64be(b, f.currentSize, F_CURRENT_SIZE)
  b.writeUInt16BE(f.cylinders, F_CYLINDERS)
  b[F_HEADS] = f.heads
  b[F_SPT] = f.sectorsPerTrack
  b.writeUInt32BE(f.diskType, F_DISK_TYPE)
  f.uniqueId.copy(b, F_UNIQUE_ID, 0, 16)
  b.writeUInt32BE(vhdChecksum(b, F_CHECKSUM), F_CHECKSUM)
  return b
}

export function parseDynamicHeader(buf: Buffer, path: string): VhdDynamicHeader {
  if (buf.length < DYN_HEADER_SIZE) throw new ImageFormatError(path, 'VHD dynamic header is truncated')
  if (buf.toString('latin1', D_COOKIE, D_COOKIE + 8) !== DYN_COOKIE) throw new ImageFormatError(path, 'VHD dynamic header cookie "cxsparse" not found')
  if (vhdChecksum(buf, D_CHECKSUM) !== buf.readUInt32BE(D_CHECKSUM)) throw new ImageFormatError(path, 'VHD dynamic header checksum mismatch')
  const locators: ParentLocator[] = []
  for (let i = 0; i < LOCATOR_COUNT; i++) {
    const o = D_LOCATORS + i * LOCATOR_SIZE
    const code = buf.toString('latin1', o, o + 4)
    if (buf.readUInt32BE(o) === 0) continue
    locators.push({code, dataLength: buf.readUInt32BE(o + 8), dataOffset: u64be(buf, o + 16, path, 'VHD parent locator offset')})
  }
  return {
    tableOffset: u64be(buf, D_TABLE_OFFSET, path, 'VHD BAT offset'),
    maxTableEntries: buf.readUInt32BE(D_MAX_ENTRIES),
    blockSize: buf.readUInt32BE(D_BLOCK_SIZE),
    parentId: Buffer.from(buf.subarray(D_PARENT_ID, D_PARENT_ID + 16)),
    parentName: Buffer.from(buf.subarray(D_PARENT_NAME, D_PARENT_NAME + D_PARENT_NAME_SIZE)),
    locators,
  }
}

export interface EncodedLocator {
  code: string
  /** Space reserved in the file, a whole number of sectors. */
  space: number
  dataLength: number
  dataOffset: number
}

export function encodeDynamicHeader(h: Omit<VhdDynamicHeader, 'locators'> & {locators: EncodedLocator[]; parentTime: number}): Buffer {
  const b = Buffer.alloc(DYN_HEADER_SIZE)
  b.write(DYN_COOKIE, D_COOKIE, 'latin1')
  b.writeBigUInt64BE(FIXED_DATA_OFFSET, D_DATA_OFFSET)
  writeU64be(b, h.tableOffset, D_TABLE_OFFSET)
  b.writeUInt32BE(FORMAT_VERSION, D_VERSION)
  b.writeUInt32BE(h.maxTableEntries, D_MAX_ENTRIES)
  b.writeUInt32BE(h.blockSize, D_BLOCK_SIZE)
  h.parentId.copy(b, D_PARENT_ID, 0, 16)
  b.writeUInt32BE(h.parentTime >>> 0, D_PARENT_TIME)
  h.parentName.copy(b, D_PARENT_NAME, 0, Math.min(h.parentName.length, D_PARENT_NAME_SIZE))
  h.locators.slice(0, LOCATOR_COUNT).forEach((l, i) => {
    const o = D_LOCATORS + i * LOCATOR_SIZE
    b.write(l.code, o, 'latin1')
    b.writeUInt32BE(l.space / SECTOR, o + 4)
    b.writeUInt32BE(l.dataLength, o + 8)
    writeU64be(b, l.dataOffset, o + 16)
  })
  b.writeUInt32BE(vhdChecksum(b, D_CHECKSUM), D_CHECKSUM)
  return b
}

/** CHS geometry for `sectors`, the VHD specification's algorithm. */
export function chsFor(sectors: number): {cylinders: number; heads: number; sectorsPerTrack: number} {
  const total = Math.min(sectors, MAX_CHS_SECTORS)
  let spt: number
  let heads: number
  let cth: number
  if (total >= 65535 * 16 * 63) {
    spt = 255
    heads = 16
    cth = Math.floor(total / spt)
  } else {
    spt = 17
    cth = Math.floor(total / spt)
    heads = Math.max(4, Math.floor((cth + 1023) / 1024))
    if (cth >= heads * 1024 || heads > 16) {
      spt = 31
      heads = 16
      cth = Math.floor(total / spt)
    }
    if (cth >= heads * 1024) {
      spt = 63
      heads = 16
      cth = Math.floor(total / spt)
    }
  }
  return {cylinders: Math.floor(cth / heads), heads, sectorsPerTrack: spt}
}

/**
 * The footer geometry for a disk of exactly `bytes` (a whole number of
 * sectors; a size that is not is rounded up to the next sector, the tail
 * reading as zeros). When a CHS geometry covers exactly that many sectors it
 * is written, so every reader agrees; otherwise the largest geometry is
 * written, which makes qemu (whatever the creator app) and Hyper-V take the
 * footer's current size, as `qemu-img create -o force_size=on` does. The
 * size is never rounded up to a geometry: a restored disk keeps the size it
 * was backed up with.
 */
export function vhdGeometry(bytes: number): {cylinders: number; heads: number; sectorsPerTrack: number; size: number} {
  const sectors = Math.ceil(bytes / SECTOR)
  const g = chsFor(sectors)
  if (sectors < MAX_CHS_SECTORS && g.cylinders * g.heads * g.sectorsPerTrack === sectors) return {...g, size: sectors * SECTOR}
  return {cylinders: 65535, heads: 16, sectorsPerTrack: 255, size: sectors * SECTOR}
}
