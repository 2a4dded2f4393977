// Parses the fixed part of a VHDX file into a VhdxLayout: the active header,
// the region table, the metadata items and the BAT geometry. Every size is
// checked against the others (virtual size vs BAT length, block size vs
// chunk ratio) and every offset against the file, so the reader can trust
// the layout. The log is replayed (through `replay`) before the region
// table is read, because logged writes may change it, the BAT or metadata.
import {ImageFormatError} from '../errors.js'
import {u64le, type ImageFile, type FileOverlay} from './image-file.js'
import {
  FILE_SIGNATURE, GUID_BAT, GUID_FILE_PARAMETERS, GUID_LOGICAL_SECTOR, GUID_METADATA, GUID_PARENT_LOCATOR, GUID_PHYSICAL_SECTOR,
  GUID_VIRTUAL_DISK_ID, GUID_VIRTUAL_DISK_SIZE, HEADER_OFFSETS, HEADER_SIZE, KIB64, METADATA_TABLE_SIZE, MIB, META_IS_REQUIRED,
  REGION_TABLE_OFFSETS, REGION_TABLE_SIZE, parseHeader, parseMetadataTable, parseParentLocator, parseRegionTable, readGuid,
  type MetadataEntry, type RegionEntry, type VhdxHeader,
} from './vhdx-structures.js'

/** MS-VHDX limits. */
export const MAX_VIRTUAL_SIZE = 64 * 1024 ** 4
const MIN_BLOCK_SIZE = MIB
const MAX_BLOCK_SIZE = 256 * MIB
/** Sectors covered by one sector bitmap block (1 MiB of bits). */
const SECTORS_PER_BITMAP_BLOCK = 2 ** 23
const KNOWN_METADATA = [GUID_FILE_PARAMETERS, GUID_VIRTUAL_DISK_SIZE, GUID_VIRTUAL_DISK_ID, GUID_LOGICAL_SECTOR, GUID_PHYSICAL_SECTOR, GUID_PARENT_LOCATOR]

export interface VhdxLayout {
  header: VhdxHeader
  virtualSize: number
  blockSize: number
  logicalSectorSize: number
  leaveBlocksAllocated: boolean
  chunkRatio: number
  dataBlocks: number
  batOffset: number
  batEntries: number
  parentLocator?: Map<string, string>
  /** The VirtualDiskId metadata item: stable across writes (DataWriteGuid is not). */
  virtualDiskId?: string
}

export async function readVhdxLayout(file: ImageFile, replay: (h: VhdxHeader) => Promise<FileOverlay | undefined>): Promise<VhdxLayout> {
  const path = file.path
  if (file.size < REGION_TABLE_OFFSETS[1] + REGION_TABLE_SIZE) throw new ImageFormatError(path, `file too small for a VHDX (${file.size} bytes)`)
  const ident = await file.readStruct(0, 8, 'VHDX file identifier')
  if (ident.toString('latin1') !== FILE_SIGNATURE) throw new ImageFormatError(path, 'VHDX file identifier "vhdxfile" not found')
  const header = await activeHeader(file)
  const overlay = await replay(header)
  if (overlay) file.setOverlay(overlay)
  const regions = await regionTable(file)
  const bat = regions.find((r) => r.guid === GUID_BAT)
  const meta = regions.find((r) => r.guid === GUID_METADATA)
  const unknown = regions.find((r) => r.required && r !== bat && r !== meta)
  if (unknown) throw new ImageFormatError(path, `VHDX has an unknown required region ${unknown.guid}`)
  if (!bat || !meta) throw new ImageFormatError(path, `VHDX region table lacks the ${bat ? 'metadata' : 'BAT'} region`)
  file.checkSpan(bat.offset, bat.length, 'VHDX BAT region')
  file.checkSpan(meta.offset, meta.length, 'VHDX metadata region')
  if (meta.length < METADATA_TABLE_SIZE) throw new ImageFormatError(path, 'VHDX metadata region is smaller than its table')
  const items = await metadataItems(file, meta)
  const need = (guid: string, name: string, size: number) => {
    const b = items.get(guid)
    if (!b || b.length < size) throw new ImageFormatError(path, `VHDX metadata item "${name}" is missing or truncated`)
    return b
  }
  const params = need(GUID_FILE_PARAMETERS, 'file parameters', 8)
  const blockSize = params.readUInt32LE(0)
  const flags = params.readUInt32LE(4)
  const hasParent = (flags & 2) !== 0
  const virtualSize = u64le(need(GUID_VIRTUAL_DISK_SIZE, 'virtual disk size', 8), 0, path, 'VHDX virtual disk size')
  const logicalSectorSize = need(GUID_LOGICAL_SECTOR, 'logical sector size', 4).readUInt32LE(0)
  if (blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE || (blockSize & (blockSize - 1)) !== 0) {
    throw new ImageFormatError(path, `VHDX block size ${blockSize} is not a power of two between 1 MiB and 256 MiB`)
  }
  if (logicalSectorSize !== 512 && logicalSectorSize !== 4096) throw new ImageFormatError(path, `VHDX logical sector size ${logicalSectorSize} is neither 512 nor 4096`)
  if (virtualSize > MAX_VIRTUAL_SIZE) throw new ImageFormatError(path, `VHDX virtual size ${virtualSize} is larger than 64 TiB`)
  // MS-VHDX: a whole, non-zero number of logical sectors (qemu refuses 0 and reads whole sectors only).
  if (virtualSize === 0 || virtualSize % logicalSectorSize !== 0) {
    throw new ImageFormatError(path, `VHDX virtual size ${virtualSize} is not a whole, non-zero number of ${logicalSectorSize}-byte sectors`)
  }
  const chunkRatio = (SECTORS_PER_BITMAP_BLOCK * logicalSectorSize) / blockSize
  const dataBlocks = Math.ceil(virtualSize / blockSize)
  const batEntries = hasParent
    ? Math.ceil(dataBlocks / chunkRatio) * (chunkRatio + 1)
    : dataBlocks + Math.max(0, Math.floor((dataBlocks - 1) / chunkRatio))
  if (batEntries * 8 > bat.length) {
    throw new ImageFormatError(path, `VHDX BAT region holds ${bat.length / 8} entries but the virtual size ${virtualSize} needs ${batEntries}`)
  }
  let parentLocator: Map<string, string> | undefined
  if (hasParent) {
    parentLocator = parseParentLocator(need(GUID_PARENT_LOCATOR, 'parent locator', 20), path)
    if (!parentLocator.get('parent_linkage')) throw new ImageFormatError(path, 'VHDX parent locator has no parent_linkage')
  }
  return {
    header, virtualSize, blockSize, logicalSectorSize, leaveBlocksAllocated: (flags & 1) !== 0 && !hasParent,
    chunkRatio, dataBlocks, batOffset: bat.offset, batEntries, parentLocator,
    virtualDiskId: items.get(GUID_VIRTUAL_DISK_ID)?.length === 16 ? readGuid(items.get(GUID_VIRTUAL_DISK_ID)!, 0) : undefined,
  }
}

async function activeHeader(file: ImageFile): Promise<VhdxHeader> {
  const copies: VhdxHeader[] = []
  for (const off of HEADER_OFFSETS) {
    const h = parseHeader(await file.readStruct(off, HEADER_SIZE, 'VHDX header'), file.path)
    if (h) copies.push(h)
  }
  if (copies.length === 0) throw new ImageFormatError(file.path, 'both VHDX headers are corrupt (bad signature or CRC-32C checksum)')
  return copies.reduce((a, b) => (b.sequence > a.sequence ? b : a))
}

async function regionTable(file: ImageFile): Promise<RegionEntry[]> {
  for (const off of REGION_TABLE_OFFSETS) {
    const t = parseRegionTable(await file.readStruct(off, REGION_TABLE_SIZE, 'VHDX region table'), file.path)
    if (t) return t
  }
  throw new ImageFormatError(file.path, 'both VHDX region tables are corrupt (bad signature or CRC-32C checksum)')
}

/** Reads every known metadata item; refuses unknown required ones. */
async function metadataItems(file: ImageFile, region: RegionEntry): Promise<Map<string, Buffer>> {
  const table = parseMetadataTable(await file.readStruct(region.offset, METADATA_TABLE_SIZE, 'VHDX metadata table'), file.path)
  const out = new Map<string, Buffer>()
  for (const e of table as MetadataEntry[]) {
    if (!KNOWN_METADATA.includes(e.guid)) {
      if (e.flags & META_IS_REQUIRED) throw new ImageFormatError(file.path, `VHDX has an unknown required metadata item ${e.guid}`)
      continue
    }
    if (e.length === 0) continue
    if (e.offset < KIB64 || e.offset + e.length > region.length) {
      throw new ImageFormatError(file.path, `VHDX metadata item ${e.guid} lies outside the metadata region`)
    }
    out.set(e.guid, await file.readStruct(region.offset + e.offset, e.length, `VHDX metadata item ${e.guid}`))
  }
  return out
}
