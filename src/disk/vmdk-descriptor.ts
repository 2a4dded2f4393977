// The VMDK text descriptor: a few key=value lines (createType, CID,
// parentCID, parentFileNameHint), the extent lines and the disk database.
// It is either its own small file (monolithicFlat, twoGbMaxExtent*) or is
// embedded in a hosted sparse extent. Parsing is tolerant of comments,
// blank lines, CRLF and trailing NUL padding; it rejects extent lines it
// cannot understand rather than guessing.
import {ImageFormatError} from '../errors.js'

export const SECTOR = 512
/** A descriptor file larger than this is not a descriptor. */
export const MAX_DESCRIPTOR_BYTES = 1024 * 1024
export const NO_PARENT_CID = 'ffffffff'

export type ExtentAccess = 'RW' | 'RDONLY' | 'NOACCESS'
export type ExtentType = 'FLAT' | 'SPARSE' | 'ZERO' | 'VMFS' | 'VMFSSPARSE' | 'VMFSRDM' | 'VMFSRAW' | 'SESPARSE'

export interface ExtentLine {
  access: ExtentAccess
  sectors: number
  type: ExtentType
  fileName?: string
  /** FLAT / VMFS: where the extent starts in its file, in sectors. */
  startSector: number
}

export interface VmdkDescriptor {
  createType: string
  cid?: string
  parentCid?: string
  parentFileNameHint?: string
  extents: ExtentLine[]
}

const EXTENT_LINE = /^(RW|RDONLY|NOACCESS)\s+(\d+)\s+(FLAT|SPARSE|ZERO|VMFS|VMFSSPARSE|VMFSRDM|VMFSRAW|SESPARSE)(?:\s+"([^"]*)"(?:\s+(\d+))?)?\s*$/
const KEY_VALUE = /^([A-Za-z][\w.]*)\s*=\s*"?([^"]*)"?\s*$/

/** True when `head` looks like the start of a text descriptor. */
export function looksLikeDescriptor(head: Buffer): boolean {
  const text = head.subarray(0, Math.min(head.length, 2048)).toString('latin1')
  return /^\s*#\s*Disk DescriptorFile/i.test(text) || (/createType\s*=/.test(text) && /^\s*(#|version\s*=)/.test(text))
}

export function parseDescriptor(path: string, raw: Buffer): VmdkDescriptor {
  const nul = raw.indexOf(0)
  const text = raw.subarray(0, nul < 0 ? raw.length : nul).toString('utf8')
  const d: VmdkDescriptor = {createType: '', extents: []}
  for (const rawLine of text.split(/\r?\n/)) {
    const line = rawLine.trim()
    if (line === '' || line.startsWith('#')) continue
    const ext = EXTENT_LINE.exec(line)
    if (ext) {
      const sectors = Number(ext[2])
      if (!Number.isSafeInteger(sectors * SECTOR)) throw new ImageFormatError(path, `extent size ${ext[2]} sectors is absurd`)
      d.extents.push({
        access: ext[1] as ExtentAccess,
        sectors,
        type: ext[3] as ExtentType,
        fileName: ext[4],
        startSector: ext[5] ? Number(ext[5]) : 0,
      })
      continue
    }
    if (/^(RW|RDONLY|NOACCESS)\s/.test(line)) throw new ImageFormatError(path, `cannot parse extent line "${line.slice(0, 80)}"`)
    const kv = KEY_VALUE.exec(line)
    if (!kv) continue
    const [, key, value] = kv
    if (key === 'createType') d.createType = value!
    else if (key === 'CID') d.cid = value!.toLowerCase()
    else if (key === 'parentCID') d.parentCid = value!.toLowerCase()
    else if (key === 'parentFileNameHint') d.parentFileNameHint = value!
  }
  return d
}

/** True when the descriptor names a parent (a delta disk). */
export function hasParent(d: VmdkDescriptor): boolean {
  return d.parentCid !== undefined && d.parentCid !== NO_PARENT_CID && d.parentFileNameHint !== undefined && d.parentFileNameHint !== ''
}

export interface DescriptorSpec {
  cid: number
  createType: string
  extents: {sectors: number; type: 'SPARSE' | 'FLAT'; fileName: string}[]
  sectors: number
}

/** The descriptor text vdsnap writes (the layout qemu-img and VMware write). */
export function buildDescriptor(spec: DescriptorSpec): string {
  const heads = 16
  const sectorsPerTrack = 63
  const cylinders = Math.min(16383, Math.ceil(spec.sectors / (heads * sectorsPerTrack)))
  return [
    '# Disk DescriptorFile',
    'version=1',
    `CID=${spec.cid.toString(16).padStart(8, '0')}`,
    `parentCID=${NO_PARENT_CID}`,
    `createType="${spec.createType}"`,
    '',
    '# Extent description',
    ...spec.extents.map((e) => `RW ${e.sectors} ${e.type} "${e.fileName}"`),
    '',
    '# The Disk Data Base',
    '#DDB',
    '',
    'ddb.virtualHWVersion = "4"',
    `ddb.geometry.cylinders = "${cylinders}"`,
    `ddb.geometry.heads = "${heads}"`,
    `ddb.geometry.sectors = "${sectorsPerTrack}"`,
    'ddb.adapterType = "ide"',
    '',
  ].join('\n')
}
