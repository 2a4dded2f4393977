// Codecs for the VHDX structures (MS-VHDX): file identifier, the two
// headers, the region table, the metadata table and its items, BAT entries.
// Everything is little-endian; GUIDs use the Windows mixed-endian layout.
// Checksums are CRC-32C over the structure with the checksum field zero.
// Offsets and GUIDs below never change.
import {ImageFormatError} from '../errors.js'
import {u64le, writeU64le} from './image-file.js'
import {crc32c, crc32cWithZeroedField} from './crc32c.js'

export const KIB64 = 64 * 1024
export const MIB = 1024 * 1024
export const FILE_SIGNATURE = 'vhdxfile'
export const HEADER_OFFSETS = [64 * 1024, 128 * 1024] as const
export const REGION_TABLE_OFFSETS = [192 * 1024, 256 * 1024] as const
export const HEADER_SIZE = 4096
export const REGION_TABLE_SIZE = 64 * 1024
export const METADATA_TABLE_SIZE = 64 * 1024
const MAX_TABLE_ENTRIES = 2047

export const GUID_BAT = '2dc27766-f623-4200-9d64-115e9bfd4a08'
export const GUID_METADATA = '8b7ca206-4790-4b9a-b8fe-575f050f886e'
export const GUID_FILE_PARAMETERS = 'caa16737-fa36-4d43-b3b6-33f0aa44e76b'
export const GUID_VIRTUAL_DISK_SIZE = '2fa54224-cd1b-4876-b211-5dbed83bf4b8'
export const GUID_VIRTUAL_DISK_ID = 'beca12ab-b2e6-4523-93ef-c309e000c746'
export const GUID_LOGICAL_SECTOR = '8141bf1d-a96f-4709-ba47-f233a8faab5f'
export const GUID_PHYSICAL_SECTOR = 'cda348c7-445d-4471-9cc9-e9885251c556'
export const GUID_PARENT_LOCATOR = 'a8d35f2d-b30b-454d-abf7-d3d84834ab0c'
export const GUID_VHDX_LOCATOR_TYPE = 'b04aefb7-d19e-4a81-b789-25b8e9445913'
export const ZERO_GUID = '00000000-0000-0000-0000-000000000000'

/** Payload and sector-bitmap block states (low 3 bits of a BAT entry). */
export const BLOCK_NOT_PRESENT = 0
export const BLOCK_UNDEFINED = 1
export const BLOCK_ZERO = 2
export const BLOCK_UNMAPPED = 3
export const BLOCK_FULLY_PRESENT = 6
export const BLOCK_PARTIALLY_PRESENT = 7
export const SB_BLOCK_PRESENT = 6

export function readGuid(b: Buffer, o: number): string {
  const h = (s: number, e: number, rev: boolean) => {
    const bytes = [...b.subarray(o + s, o + e)]
    return Buffer.from(rev ? bytes.reverse() : bytes).toString('hex')
  }
  return `${h(0, 4, true)}-${h(4, 6, true)}-${h(6, 8, true)}-${h(8, 10, false)}-${h(10, 16, false)}`
}

export function writeGuid(b: Buffer, o: number, guid: string): void {
  const hex = guid.replace(/-/g, '')
  const raw = Buffer.from(hex, 'hex')
  raw.subarray(0, 4).reverse()
  raw.subarray(4, 6).reverse()
  raw.subarray(6, 8).reverse()
  raw.copy(b, o)
}

// Header field offsets.
const H_CHECKSUM = 4
const H_SEQUENCE = 8
const H_FILE_WRITE_GUID = 16
const H_DATA_WRITE_GUID = 32
const H_LOG_GUID = 48
const H_LOG_VERSION = 64
const H_VERSION = 66
const H_LOG_LENGTH = 68
const H_LOG_OFFSET = 72
const HEADER_VERSION = 1

export interface VhdxHeader {
  sequence: number
  fileWriteGuid: string
  dataWriteGuid: string
  logGuid: string
  logLength: number
  logOffset: number
}

/** Parses one header copy; undefined when its signature or checksum is bad. */
export function parseHeader(b: Buffer, path: string): VhdxHeader | undefined {
  if (b.length < HEADER_SIZE || b.toString('latin1', 0, 4) !== 'head') return undefined
  if (crc32cWithZeroedField(b.subarray(0, HEADER_SIZE), H_CHECKSUM) !== b.readUInt32LE(H_CHECKSUM)) return undefined
  if (b.readUInt16LE(H_VERSION) !== HEADER_VERSION) throw new ImageFormatError(path, `unsupported VHDX header version ${b.readUInt16LE(H_VERSION)}`)
  return {
    sequence: u64le(b, H_SEQUENCE, path, 'VHDX header sequence number'),
    fileWriteGuid: readGuid(b, H_FILE_WRITE_GUID),
    dataWriteGuid: readGuid(b, H_DATA_WRITE_GUID),
    logGuid: readGuid(b, H_LOG_GUID),
    logLength: b.readUInt32LE(H_LOG_LENGTH),
    logOffset: u64le(b, H_LOG_OFFSET, path, 'VHDX log offset'),
  }
}

export function encodeHeader(h: VhdxHeader): Buffer {
  const b = Buffer.alloc(HEADER_SIZE)
  b.write('head', 0, 'latin1')
  writeU64le(b, h.sequence, H_SEQUENCE)
  writeGuid(b, H_FILE_WRITE_GUID, h.fileWriteGuid)
  writeGuid(b, H_DATA_WRITE_GUID, h.dataWriteGuid)
  writeGuid(b, H_LOG_GUID, h.logGuid)
  b.writeUInt16LE(0, H_LOG_VERSION)
  b.writeUInt16LE(HEADER_VERSION, H_VERSION)
  b.writeUInt32LE(h.logLength, H_LOG_LENGTH)
  writeU64le(b, h.logOffset, H_LOG_OFFSET)
  b.writeUInt32LE(crc32c(b), H_CHECKSUM)
  return b
}

export interface RegionEntry {
  guid: string
  offset: number
  length: number
  required: boolean
}

export function parseRegionTable(b: Buffer, path: string): RegionEntry[] | undefined {
  if (b.toString('latin1', 0, 4) !== 'regi') return undefined
  if (crc32cWithZeroedField(b, 4) !== b.readUInt32LE(4)) return undefined
  const count = b.readUInt32LE(8)
  if (count > MAX_TABLE_ENTRIES) throw new ImageFormatError(path, `VHDX region table claims ${count} entries`)
  const out: RegionEntry[] = []
  for (let i = 0; i < count; i++) {
    const o = 16 + i * 32
    out.push({guid: readGuid(b, o), offset: u64le(b, o + 16, path, 'VHDX region offset'), length: b.readUInt32LE(o + 24), required: (b.readUInt32LE(o + 28) & 1) === 1})
  }
  return out
}

export function encodeRegionTable(entries: RegionEntry[]): Buffer {
  const b = Buffer.alloc(REGION_TABLE_SIZE)
  b.write('regi', 0, 'latin1')
  b.writeUInt32LE(entries.length, 8)
  entries.forEach((e, i) => {
    const o = 16 + i * 32
    writeGuid(b, o, e.guid)
    writeU64le(b, e.offset, o + 16)
    b.writeUInt32LE(e.length, o + 24)
    b.writeUInt32LE(e.required ? 1 : 0, o + 28)
  })
  b.writeUInt32LE(crc32c(b), 4)
  return b
}

export interface MetadataEntry {
  guid: string
  offset: number
  length: number
  flags: number
}

/** Metadata entry flags. */
export const META_IS_VIRTUAL_DISK = 2
export const META_IS_REQUIRED = 4

export function parseMetadataTable(b: Buffer, path: string): MetadataEntry[] {
  if (b.toString('latin1', 0, 8) !== 'metadata') throw new ImageFormatError(path, 'VHDX metadata table signature "metadata" not found')
  const count = b.readUInt16LE(10)
  if (count > MAX_TABLE_ENTRIES) throw new ImageFormatError(path, `VHDX metadata table claims ${count} entries`)
  const out: MetadataEntry[] = []
  for (let i = 0; i < count; i++) {
    const o = 32 + i * 32
    out.push({guid: readGuid(b, o), offset: b.readUInt32LE(o + 16), length: b.readUInt32LE(o + 20), flags: b.readUInt32LE(o + 24)})
  }
  return out
}

export function encodeMetadataTable(entries: MetadataEntry[]): Buffer {
  const b = Buffer.alloc(METADATA_TABLE_SIZE)
  b.write('metadata', 0, 'latin1')
  b.writeUInt16LE(entries.length, 10)
  entries.forEach((e, i) => {
    const o = 32 + i * 32
    writeGuid(b, o, e.guid)
    b.writeUInt32LE(e.offset, o + 16)
    b.writeUInt32LE(e.length, o + 20)
    b.writeUInt32LE(e.flags, o + 24)
  })
  return b
}

/** Parent locator key/value pairs (UTF-16LE in the file). */
export function parseParentLocator(b: Buffer, path: string): Map<string, string> {
  if (b.length < 20) throw new ImageFormatError(path, 'VHDX parent locator is truncated')
  if (readGuid(b, 0) !== GUID_VHDX_LOCATOR_TYPE) throw new ImageFormatError(path, `unknown VHDX parent locator type ${readGuid(b, 0)}`)
  const count = b.readUInt16LE(18)
  if (20 + count * 12 > b.length) throw new ImageFormatError(path, 'VHDX parent locator entries run past the item')
  const out = new Map<string, string>()
  const text = (off: number, len: number) => {
    if (off + len > b.length) throw new ImageFormatError(path, 'VHDX parent locator key or value runs past the item')
    return b.toString('utf16le', off, off + len)
  }
  for (let i = 0; i < count; i++) {
    const o = 20 + i * 12
    out.set(text(b.readUInt32LE(o), b.readUInt16LE(o + 8)), text(b.readUInt32LE(o + 4), b.readUInt16LE(o + 10)))
  }
  return out
}

export function encodeParentLocator(pairs: [string, string][]): Buffer {
  const head = Buffer.alloc(20 + pairs.length * 12)
  writeGuid(head, 0, GUID_VHDX_LOCATOR_TYPE)
  head.writeUInt16LE(pairs.length, 18)
  const parts: Buffer[] = [head]
  let pos = head.length
  pairs.forEach(([k, v], i) => {
    const kb = Buffer.from(k, 'utf16le')
    const vb = Buffer.from(v, 'utf16le')
    const o = 20 + i * 12
    head.writeUInt32LE(pos, o)
    head.writeUInt32LE(pos + kb.length, o + 4)
    head.writeUInt16LE(kb.length, o + 8)
    head.writeUInt16LE(vb.length, o + 10)
    parts.push(kb, vb)
    pos += kb.length + vb.length
  })
  return Buffer.concat(parts)
}

/** Decodes a BAT entry into (state, file offset) without BigInt. */
export function decodeBatEntry(page: Buffer, o: number): number {
  const lo = page.readUInt32LE(o)
  const hi = page.readUInt32LE(o + 4)
  // offset in MiB = bits 20..63; packed as offsetMiB * 8 + state (< 2^47 for any offset MiB < 2^44)
  return ((lo >>> 20) + hi * 4096) * 8 + (lo & 7)
}

export function encodeBatEntry(b: Buffer, o: number, state: number, fileOffset: number): void {
  const mib = fileOffset / MIB
  b.writeUInt32LE((((mib % 4096) << 20) | state) >>> 0, o)
  b.writeUInt32LE(Math.floor(mib / 4096), o + 4)
}
