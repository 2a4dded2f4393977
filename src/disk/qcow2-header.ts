// The qcow2 header, its extensions and the internal snapshot table
// (docs/interop/qcow2.txt in QEMU). All fields are big-endian. Parsing
// checks every value a reader later trusts: cluster bits in range, virtual
// size within 2^53 and a whole number of sectors, the L1 table big enough
// for the virtual size yet inside the file, only known incompatible features
// (all 64 bits), no encryption; and whatever else QEMU's qcow2_do_open
// refuses (misaligned or absurd refcount and snapshot tables, a backing
// name outside the first cluster, raw-data-file without a data file), since
// an image QEMU will not read is a damaged one. Offsets and
// constants below are fixed by the format: never change them.
import {ImageFormatError} from '../errors.js'
import {type ImageFile, u64be} from './image-file.js'

export const QCOW2_MAGIC = 0x514649fb // "QFI\xfb"
export const V2_HEADER_LENGTH = 72
export const V3_HEADER_LENGTH = 104
export const MIN_CLUSTER_BITS = 9
export const MAX_CLUSTER_BITS = 21
export const MAX_BACKING_NAME = 1023
/** QEMU refuses L1 tables above 32 MiB; so do we. */
export const MAX_L1_BYTES = 32 * 1024 * 1024
export const MAX_SNAPSHOTS = 65536
/** QEMU refuses refcount tables above 8 MiB (QCOW_MAX_REFTABLE_SIZE). */
export const MAX_REFTABLE_BYTES = 8 * 1024 * 1024
export const SNAPSHOT_FIXED_BYTES = 40
export const SUBCLUSTERS_PER_CLUSTER = 32

export const INCOMPAT_DIRTY = 1
export const INCOMPAT_CORRUPT = 2
export const INCOMPAT_DATA_FILE = 4
export const INCOMPAT_COMPRESSION = 8
export const INCOMPAT_EXTENDED_L2 = 16
const KNOWN_INCOMPAT = 0x1f
export const AUTOCLEAR_RAW_DATA = 2

export const EXT_END = 0
export const EXT_BACKING_FORMAT = 0xe2792aca
export const EXT_DATA_FILE = 0x44415441
export const EXT_CRYPTO = 0x0537be77

export const COMPRESSION_ZLIB = 0
export const COMPRESSION_ZSTD = 1

// Header field offsets.
const H_VERSION = 4
const H_BACKING_OFFSET = 8
const H_BACKING_SIZE = 16
const H_CLUSTER_BITS = 20
const H_SIZE = 24
const H_CRYPT = 32
const H_L1_SIZE = 36
const H_L1_OFFSET = 40
const H_REFCOUNT_OFFSET = 48
const H_REFCOUNT_CLUSTERS = 56
const H_NB_SNAPSHOTS = 60
const H_SNAPSHOTS_OFFSET = 64
const H_INCOMPAT = 72
const H_AUTOCLEAR = 88
const H_REFCOUNT_ORDER = 96
const H_HEADER_LENGTH = 100
const H_COMPRESSION_TYPE = 104

export interface Qcow2Snapshot {
  id: string
  name: string
  l1Offset: number
  l1Size: number
  virtualSize: number
  date: string
}

export interface Qcow2Header {
  version: number
  clusterBits: number
  clusterSize: number
  virtualSize: number
  l1Size: number
  l1Offset: number
  refcountTableOffset: number
  refcountTableClusters: number
  incompatible: number
  autoclear: number
  compressionType: number
  extendedL2: boolean
  backingName?: string
  backingFormat?: string
  dataFileName?: string
  snapshots: Qcow2Snapshot[]
}

/** Bytes one L2 table maps: entries per table times the cluster size. */
export function l2Coverage(clusterBits: number, extendedL2: boolean): number {
  const entryBytes = extendedL2 ? 16 : 8
  return ((1 << clusterBits) / entryBytes) * (1 << clusterBits)
}

export async function readQcow2Header(file: ImageFile): Promise<Qcow2Header> {
  const fail = (msg: string): never => {
    throw new ImageFormatError(file.path, msg)
  }
  if (file.size < V2_HEADER_LENGTH) fail(`file is too short for a qcow2 header (${file.size} bytes)`)
  const head = await file.readStruct(0, Math.min(file.size, V3_HEADER_LENGTH + 8), 'qcow2 header')
  if (head.readUInt32BE(0) !== QCOW2_MAGIC) fail('not a qcow2 image (bad magic)')
  const version = head.readUInt32BE(H_VERSION)
  if (version !== 2 && version !== 3) fail(`unsupported qcow2 version ${version}`)
  const clusterBits = head.readUInt32BE(H_CLUSTER_BITS)
  if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) fail(`cluster bits ${clusterBits} out of range 9..21`)
  const clusterSize = 2 ** clusterBits
  const virtualSize = u64be(head, H_SIZE, file.path, 'virtual size')
  // QEMU reads such a disk short by the odd bytes (it counts whole sectors) and never writes one.
  if (virtualSize % 512 !== 0) fail(`virtual size ${virtualSize} is not a whole number of 512-byte sectors`)
  const crypt = head.readUInt32BE(H_CRYPT)
  if (crypt !== 0) fail(`encrypted qcow2 images (crypt method ${crypt === 1 ? 'AES' : crypt === 2 ? 'LUKS' : crypt}) are not supported`)

  let headerLength = V2_HEADER_LENGTH
  let incompatible = 0
  let incompatibleHigh = 0
  let autoclear = 0
  let compressionType = COMPRESSION_ZLIB
  if (version === 3) {
    if (head.length < V3_HEADER_LENGTH) fail('file is too short for a qcow2 v3 header')
    // Two 32-bit words: JS bit operations would silently drop bits 32..63.
    incompatibleHigh = head.readUInt32BE(H_INCOMPAT)
    incompatible = head.readUInt32BE(H_INCOMPAT + 4)
    autoclear = head.readUInt32BE(H_AUTOCLEAR + 4)
    const order = head.readUInt32BE(H_REFCOUNT_ORDER)
    if (order > 6) fail(`refcount order ${order} out of range`)
    headerLength = head.readUInt32BE(H_HEADER_LENGTH)
    if (headerLength < V3_HEADER_LENGTH || headerLength > clusterSize) fail(`header length ${headerLength} out of range`)
    if (headerLength > H_COMPRESSION_TYPE) {
      if (head.length <= H_COMPRESSION_TYPE) fail('file is too short for the compression type field')
      compressionType = head[H_COMPRESSION_TYPE]!
    }
  }
  const unknown = (BigInt(incompatibleHigh) << 32n) | BigInt((incompatible & ~KNOWN_INCOMPAT) >>> 0)
  if (unknown) fail(`unknown incompatible feature bits 0x${unknown.toString(16)}`)
  if (compressionType !== COMPRESSION_ZLIB && compressionType !== COMPRESSION_ZSTD) fail(`unknown compression type ${compressionType}`)
  if (compressionType !== COMPRESSION_ZLIB && !(incompatible & INCOMPAT_COMPRESSION)) fail('compression type set without its feature bit')
  const extendedL2 = (incompatible & INCOMPAT_EXTENDED_L2) !== 0
  if (extendedL2 && clusterBits < 14) fail('extended L2 entries need clusters of at least 16 KiB')

  const l1Size = head.readUInt32BE(H_L1_SIZE)
  const l1Offset = u64be(head, H_L1_OFFSET, file.path, 'L1 table offset')
  checkL1(file, l1Offset, l1Size, virtualSize, clusterBits, extendedL2, 'L1 table')
  checkTables(file, head, clusterSize)

  const h: Qcow2Header = {
    version,
    clusterBits,
    clusterSize,
    virtualSize,
    l1Size,
    l1Offset,
    refcountTableOffset: u64be(head, H_REFCOUNT_OFFSET, file.path, 'refcount table offset'),
    refcountTableClusters: head.readUInt32BE(H_REFCOUNT_CLUSTERS),
    incompatible,
    autoclear,
    compressionType,
    extendedL2,
    snapshots: [],
  }
  await readExtensions(file, h, headerLength)
  if ((incompatible & INCOMPAT_DATA_FILE) && !h.dataFileName) fail('image needs an external data file but names none')
  if ((autoclear & AUTOCLEAR_RAW_DATA) && !(incompatible & INCOMPAT_DATA_FILE)) fail('the raw-data-file bit is set but the image has no external data file')
  const backingOffset = u64be(head, H_BACKING_OFFSET, file.path, 'backing file offset')
  const backingSize = head.readUInt32BE(H_BACKING_SIZE)
  // The name lives in the first cluster, after the header (as QEMU insists).
  if (backingOffset > clusterSize) fail(`backing file name offset ${backingOffset} is outside the first cluster`)
  if (backingOffset !== 0 && backingSize > 0) {
    if (backingSize > MAX_BACKING_NAME) fail(`backing file name is too long (${backingSize} bytes)`)
    h.backingName = (await file.readStruct(backingOffset, backingSize, 'backing file name')).toString('utf8')
  }
  const nbSnapshots = head.readUInt32BE(H_NB_SNAPSHOTS)
  if (nbSnapshots > 0) {
    h.snapshots = await readSnapshots(file, h, u64be(head, H_SNAPSHOTS_OFFSET, file.path, 'snapshot table offset'), nbSnapshots)
  }
  return h
}

/**
 * The refcount and snapshot tables: vdsnap reads no refcounts, but QEMU
 * refuses an image whose tables are misaligned or absurd (a sign that the
 * header is damaged), and so do we: what QEMU will not read, we do not back up.
 */
function checkTables(file: ImageFile, head: Buffer, clusterSize: number): void {
  const fail = (msg: string): never => {
    throw new ImageFormatError(file.path, msg)
  }
  const refcountOffset = u64be(head, H_REFCOUNT_OFFSET, file.path, 'refcount table offset')
  const refcountClusters = head.readUInt32BE(H_REFCOUNT_CLUSTERS)
  if (refcountClusters === 0) fail('the image has no refcount table')
  if (refcountClusters * clusterSize > MAX_REFTABLE_BYTES) fail(`refcount table of ${refcountClusters} clusters is absurd (over ${MAX_REFTABLE_BYTES} bytes)`)
  if (refcountOffset % clusterSize !== 0) fail(`refcount table offset ${refcountOffset} is not cluster-aligned`)
  const snapshotsOffset = u64be(head, H_SNAPSHOTS_OFFSET, file.path, 'snapshot table offset')
  if (snapshotsOffset % clusterSize !== 0) fail(`snapshot table offset ${snapshotsOffset} is not cluster-aligned`)
}

/** Checks an L1 table's placement and size against the file and the virtual size. */
export function checkL1(
  file: ImageFile,
  offset: number,
  size: number,
  virtualSize: number,
  clusterBits: number,
  extendedL2: boolean,
  what: string,
): void {
  const needed = Math.ceil(virtualSize / l2Coverage(clusterBits, extendedL2))
  if (size < needed) throw new ImageFormatError(file.path, `${what} has ${size} entries, too few for the virtual size (${needed} needed)`)
  if (size * 8 > MAX_L1_BYTES) throw new ImageFormatError(file.path, `${what} size ${size} is absurd (over ${MAX_L1_BYTES} bytes)`)
  // QEMU checks the alignment even of an empty table.
  if (offset % (2 ** clusterBits) !== 0) throw new ImageFormatError(file.path, `${what} offset ${offset} is not cluster-aligned`)
  if (size > 0) file.checkSpan(offset, size * 8, what)
}

async function readExtensions(file: ImageFile, h: Qcow2Header, start: number): Promise<void> {
  const end = Math.min(h.clusterSize, file.size)
  if (start >= end) return
  const area = await file.readStruct(0, end, 'header extensions')
  let at = start
  while (at + 8 <= end) {
    const type = area.readUInt32BE(at)
    const len = area.readUInt32BE(at + 4)
    if (type === EXT_END) return
    if (at + 8 + len > end) throw new ImageFormatError(file.path, `header extension 0x${type.toString(16)} runs past the first cluster`)
    const data = area.subarray(at + 8, at + 8 + len)
    if (type === EXT_BACKING_FORMAT) h.backingFormat = data.toString('utf8')
    else if (type === EXT_DATA_FILE) h.dataFileName = data.toString('utf8')
    else if (type === EXT_CRYPTO) throw new ImageFormatError(file.path, 'encrypted qcow2 images are not supported')
    at += 8 + Math.ceil(len / 8) * 8
  }
}

async function readSnapshots(file: ImageFile, h: Qcow2Header, offset: number, count: number): Promise<Qcow2Snapshot[]> {
  if (count > MAX_SNAPSHOTS) throw new ImageFormatError(file.path, `snapshot count ${count} is absurd`)
  const out: Qcow2Snapshot[] = []
  let at = offset
  for (let i = 0; i < count; i++) {
    const fixed = await file.readStruct(at, SNAPSHOT_FIXED_BYTES, `snapshot table entry ${i}`)
    const l1Offset = u64be(fixed, 0, file.path, 'snapshot L1 offset')
    const l1Size = fixed.readUInt32BE(8)
    const idSize = fixed.readUInt16BE(12)
    const nameSize = fixed.readUInt16BE(14)
    const dateSec = fixed.readUInt32BE(16)
    const extraSize = fixed.readUInt32BE(36)
    const varLen = extraSize + idSize + nameSize
    const rest = await file.readStruct(at + SNAPSHOT_FIXED_BYTES, varLen, `snapshot table entry ${i}`)
    const virtualSize = extraSize >= 16 ? u64be(rest, 8, file.path, 'snapshot disk size') : h.virtualSize
    const snap: Qcow2Snapshot = {
      l1Offset,
      l1Size,
      virtualSize,
      id: rest.subarray(extraSize, extraSize + idSize).toString('utf8'),
      name: rest.subarray(extraSize + idSize, varLen).toString('utf8'),
      date: new Date(dateSec * 1000).toISOString(),
    }
    out.push(snap)
    at += Math.ceil((SNAPSHOT_FIXED_BYTES + varLen) / 8) * 8
  }
  return out
}
