// The VirtualBox VDI header (version 1.1, the one VirtualBox has written
// since 2007 and the only one qemu reads): a 64-byte text banner, the
// signature and version, then the 1.1 header proper. One codec for both
// directions. Layout (all little-endian, offsets never change):
//   0 banner text  64 signature  68 version  72 header size  76 image type
//   80 flags  84 description[256]  340 block map offset  344 data offset
//   348 C/H/S geometry  360 sector size  368 disk size (u64)  376 block size
//   380 block extra  384 blocks in image  388 blocks allocated
//   392 image UUID  408 last-modification UUID  424 link UUID (the parent's
//   image UUID)  440 parent-modification UUID  456..512 reserved.
// The block map is one u32 per block: the block's index in the data area,
// or UNALLOCATED (the parent's bytes, or zeros) or ZERO (reads as zeros).
import {ImageFormatError} from '../errors.js'
import {u64le, writeU64le} from './image-file.js'

export const VDI_SIGNATURE = 0xbeda107f
export const VDI_VERSION_1_1 = 0x00010001
export const VDI_HEADER_BYTES = 512
/** Size of the 1.1 header after the banner, signature and version (VirtualBox's VDIHEADER1). */
export const VDI_HEADER1_SIZE = 0x180
export const VDI_TYPE_DYNAMIC = 1
export const VDI_TYPE_FIXED = 2
export const VDI_TYPE_UNDO = 3
export const VDI_TYPE_DIFF = 4
export const VDI_UNALLOCATED = 0xffffffff
/** A discarded block: reads as zeros, whatever the parent holds. */
export const VDI_ZERO = 0xfffffffe
export const VDI_SECTOR = 512
/** The block size VirtualBox and qemu use (qemu accepts no other). */
export const VDI_BLOCK_SIZE = 1024 * 1024
export const VDI_MAX_BLOCKS = 0x3fffffff
export const VDI_BANNER = '<<< vdsnap VirtualBox Disk Image >>>\n'

const H_SIGNATURE = 64
const H_VERSION = 68
const H_HEADER_SIZE = 72
const H_TYPE = 76
const H_FLAGS = 80
const H_BMAP = 340
const H_DATA = 344
const H_CYLINDERS = 348
const H_HEADS = 352
const H_SECTORS = 356
const H_SECTOR_SIZE = 360
const H_DISK_SIZE = 368
const H_BLOCK_SIZE = 376
const H_BLOCK_EXTRA = 380
const H_BLOCKS = 384
const H_ALLOCATED = 388
const H_UUID_IMAGE = 392
const H_UUID_MODIFY = 408
const H_UUID_LINK = 424
const H_UUID_PARENT = 440

export interface VdiHeader {
  imageType: number
  flags: number
  offsetBmap: number
  offsetData: number
  diskSize: number
  blockSize: number
  blocks: number
  blocksAllocated: number
  uuidImage: Buffer
  uuidModify: Buffer
  uuidLink: Buffer
  uuidParent: Buffer
}

/** True when `head` starts with a VDI header (signature at byte 64). */
export function isVdiHead(head: Buffer): boolean {
  return head.length >= H_SIGNATURE + 4 && head.readUInt32LE(H_SIGNATURE) === VDI_SIGNATURE
}

export function parseVdiHeader(buf: Buffer, path: string): VdiHeader {
  const fail = (msg: string): never => {
    throw new ImageFormatError(path, msg)
  }
  if (buf.length < VDI_HEADER_BYTES) fail(`file is too short for a VDI header (${buf.length} bytes)`)
  if (!isVdiHead(buf)) fail('not a VDI image (bad signature)')
  const version = buf.readUInt32LE(H_VERSION)
  if (version !== VDI_VERSION_1_1) {
    fail(`VDI header version ${version >>> 16}.${version & 0xffff} is not supported (only 1.1, which VirtualBox writes since 2.0)`)
  }
  const headerSize = buf.readUInt32LE(H_HEADER_SIZE)
  if (headerSize < VDI_HEADER1_SIZE || headerSize > VDI_HEADER_BYTES - H_HEADER_SIZE) fail(`VDI header size ${headerSize} is invalid`)
  const h: VdiHeader = {
    imageType: buf.readUInt32LE(H_TYPE),
    flags: buf.readUInt32LE(H_FLAGS),
    offsetBmap: buf.readUInt32LE(H_BMAP),
    offsetData: buf.readUInt32LE(H_DATA),
    diskSize: u64le(buf, H_DISK_SIZE, path, 'disk size'),
    blockSize: buf.readUInt32LE(H_BLOCK_SIZE),
    blocks: buf.readUInt32LE(H_BLOCKS),
    blocksAllocated: buf.readUInt32LE(H_ALLOCATED),
    uuidImage: Buffer.from(buf.subarray(H_UUID_IMAGE, H_UUID_IMAGE + 16)),
    uuidModify: Buffer.from(buf.subarray(H_UUID_MODIFY, H_UUID_MODIFY + 16)),
    uuidLink: Buffer.from(buf.subarray(H_UUID_LINK, H_UUID_LINK + 16)),
    uuidParent: Buffer.from(buf.subarray(H_UUID_PARENT, H_UUID_PARENT + 16)),
  }
  if (![VDI_TYPE_DYNAMIC, VDI_TYPE_FIXED, VDI_TYPE_DIFF].includes(h.imageType)) {
    fail(h.imageType === VDI_TYPE_UNDO ? 'VDI undo images are not supported' : `unknown VDI image type ${h.imageType}`)
  }
  const sectorSize = buf.readUInt32LE(H_SECTOR_SIZE)
  if (sectorSize !== VDI_SECTOR) fail(`VDI sector size ${sectorSize} is not ${VDI_SECTOR}`)
  if (h.offsetBmap % VDI_SECTOR !== 0 || h.offsetBmap < VDI_HEADER_BYTES) fail(`VDI block map offset ${h.offsetBmap} is invalid`)
  if (h.offsetData % VDI_SECTOR !== 0) fail(`VDI data offset ${h.offsetData} is not sector-aligned`)
  // Only 1 MiB, as qemu: VirtualBox writes no other by default, and a size qemu refuses is a header we cannot cross-check.
  if (h.blockSize !== VDI_BLOCK_SIZE) fail(`VDI block size ${h.blockSize} is not ${VDI_BLOCK_SIZE} (the only one VirtualBox writes by default and qemu reads)`)
  if (buf.readUInt32LE(H_BLOCK_EXTRA) !== 0) fail('VDI blocks with extra data (block extra) are not supported')
  if (h.blocks > VDI_MAX_BLOCKS) fail(`VDI claims ${h.blocks} blocks, more than the ${VDI_MAX_BLOCKS} the format allows`)
  if (h.diskSize > h.blocks * h.blockSize) fail(`VDI disk size ${h.diskSize} is larger than its ${h.blocks} blocks of ${h.blockSize} bytes`)
  if (h.offsetData < h.offsetBmap + h.blocks * 4) fail('VDI data area overlaps the block map')
  if (h.imageType === VDI_TYPE_DIFF && isNullUuid(h.uuidLink)) fail('differencing VDI has no parent UUID (link UUID is null)')
  // Only a differencing image has a parent; a link or parent UUID on any other is a corrupt header (qemu refuses it too).
  if (h.imageType !== VDI_TYPE_DIFF && !(isNullUuid(h.uuidLink) && isNullUuid(h.uuidParent))) {
    fail(`VDI ${h.imageType === VDI_TYPE_FIXED ? 'fixed' : 'dynamic'} image names a parent (link or parent UUID is not null): corrupt header`)
  }
  return h
}

/** The 512-byte header for `h` (geometry left zero: VirtualBox and qemu derive it). */
export function encodeVdiHeader(h: VdiHeader): Buffer {
  const buf = Buffer.alloc(VDI_HEADER_BYTES)
  buf.write(VDI_BANNER, 0, 'latin1')
  buf.writeUInt32LE(VDI_SIGNATURE, H_SIGNATURE)
  buf.writeUInt32LE(VDI_VERSION_1_1, H_VERSION)
  buf.writeUInt32LE(VDI_HEADER1_SIZE, H_HEADER_SIZE)
  buf.writeUInt32LE(h.imageType, H_TYPE)
  buf.writeUInt32LE(h.flags, H_FLAGS)
  buf.writeUInt32LE(h.offsetBmap, H_BMAP)
  buf.writeUInt32LE(h.offsetData, H_DATA)
  buf.writeUInt32LE(0, H_CYLINDERS)
  buf.writeUInt32LE(0, H_HEADS)
  buf.writeUInt32LE(0, H_SECTORS)
  buf.writeUInt32LE(VDI_SECTOR, H_SECTOR_SIZE)
  writeU64le(buf, h.diskSize, H_DISK_SIZE)
  buf.writeUInt32LE(h.blockSize, H_BLOCK_SIZE)
  buf.writeUInt32LE(h.blocks, H_BLOCKS)
  buf.writeUInt32LE(h.blocksAllocated, H_ALLOCATED)
  h.uuidImage.copy(buf, H_UUID_IMAGE)
  h.uuidModify.copy(buf, H_UUID_MODIFY)
  h.uuidLink.copy(buf, H_UUID_LINK)
  h.uuidParent.copy(buf, H_UUID_PARENT)
  return buf
}

/** The image UUID of a header known to carry the signature (parent search reads only this). */
export function parseVdiUuidImage(head: Buffer): Buffer {
  return Buffer.from(head.subarray(H_UUID_IMAGE, H_UUID_IMAGE + 16))
}

export function isNullUuid(u: Buffer): boolean {
  return u.every((b) => b === 0)
}

/** A UUID as VirtualBox prints it (its first three fields are stored little-endian). */
export function formatVdiUuid(u: Buffer): string {
  const hex = (b: Buffer) => b.toString('hex')
  const le = (s: number, e: number) => hex(Buffer.from(u.subarray(s, e)).reverse())
  return `${le(0, 4)}-${le(4, 6)}-${le(6, 8)}-${hex(u.subarray(8, 10))}-${hex(u.subarray(10, 16))}`
}
