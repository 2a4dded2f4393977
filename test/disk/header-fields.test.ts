// Every header field, mutated, read by vdsnap and by qemu (issue 8 point
// 20). Random byte flips (bad-images.test.ts) rarely hit the one field that
// matters; here each field of the qcow2 header, the VMDK sparse header
// (monolithicSparse, and streamOptimized, whose header qemu-img writes at
// the start), the VHD footer and dynamic header (checksums re-sealed, so the
// field itself is judged) and the VHDX metadata items takes a set of
// values: 0, 1, all ones, one more, one less, its top bit flipped, a bit
// above 31, doubled. For each mutated image:
// - where qemu refuses it (qemu-img dd fails), vdsnap must refuse it too,
//   with a VdsnapError: a reader laxer than qemu backs up garbage;
// - where both read it, they must read the same bytes.
// vdsnap may be stricter than qemu (VDSNAP_SHOW_STRICTER=1 lists where).
// The first 4 MiB are compared (the bases are smaller, but a mutated size
// can make a disk larger).
import {spawnSync} from 'node:child_process'
import {existsSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {openImage} from '../../src/disk/open.js'
import {VdsnapError} from '../../src/errors.js'
import {MiB, QEMU_IMG, makeDiskBytes, qemuImgAt, tempDir, writeRaw} from './image-fixtures.js'
import {GRAIN, type GrainContent, writeSeSparseDisk} from './sesparse-builder.js'

const COMPARE_BYTES = 4 * MiB

interface Field {
  name: string
  offset: number
  bytes: 1 | 2 | 4 | 8
  endian: 'le' | 'be'
}

const be = (name: string, offset: number, bytes: Field['bytes']): Field => ({name, offset, bytes, endian: 'be'})
const le = (name: string, offset: number, bytes: Field['bytes']): Field => ({name, offset, bytes, endian: 'le'})

/** docs/interop/qcow2.txt, header bytes 0..104. */
const QCOW2_FIELDS: Field[] = [
  be('version', 4, 4), be('backing_file_offset', 8, 8), be('backing_file_size', 16, 4), be('cluster_bits', 20, 4),
  be('size', 24, 8), be('crypt_method', 32, 4), be('l1_size', 36, 4), be('l1_table_offset', 40, 8),
  be('refcount_table_offset', 48, 8), be('refcount_table_clusters', 56, 4), be('nb_snapshots', 60, 4),
  be('snapshots_offset', 64, 8), be('incompatible_features', 72, 8), be('compatible_features', 80, 8),
  be('autoclear_features', 88, 8), be('refcount_order', 96, 4), be('header_length', 100, 4), be('compression_type', 104, 1),
]

/** VMware's Virtual Disk Format 1.1, SparseExtentHeader (after the 4-byte magic). */
const VMDK_FIELDS: Field[] = [
  le('version', 4, 4), le('flags', 8, 4), le('capacity', 12, 8), le('grainSize', 20, 8), le('descriptorOffset', 28, 8),
  le('descriptorSize', 36, 8), le('numGTEsPerGT', 44, 4), le('rgdOffset', 48, 8), le('gdOffset', 56, 8), le('overHead', 64, 8),
  le('uncleanShutdown', 72, 1), le('singleEndLineChar', 73, 1), le('nonEndLineChar', 74, 1), le('doubleEndLineChar1', 75, 1),
  le('doubleEndLineChar2', 76, 1), le('compressAlgorithm', 77, 2),
]

function readField(b: Buffer, at: number, f: Field): bigint {
  let v = 0n
  for (let i = 0; i < f.bytes; i++) {
    const byte = BigInt(b[at + (f.endian === 'be' ? i : f.bytes - 1 - i)]!)
    v = (v << 8n) | byte
  }
  return v
}

function writeField(b: Buffer, at: number, f: Field, value: bigint): void {
  let v = value
  for (let i = f.bytes - 1; i >= 0; i--) {
    b[at + (f.endian === 'be' ? i : f.bytes - 1 - i)] = Number(v & 0xffn)
    v >>= 8n
  }
}

/** The values a field is set to: distinct, different from the original, inside the field's width. */
function mutations(orig: bigint, bytes: number): bigint[] {
  const max = (1n << BigInt(bytes * 8)) - 1n
  const top = 1n << BigInt(bytes * 8 - 1)
  const out = [0n, 1n, max, orig + 1n, orig - 1n, orig ^ top, orig * 2n]
  if (bytes === 8) out.push(orig | (1n << 40n), orig | (1n << 32n))
  return [...new Set(out.filter((v) => v >= 0n && v <= max && v !== orig))]
}

/** VirtualBox's VDI 1.1 header (after the 64-byte banner); each UUID as its two halves. */
const VDI_FIELDS: Field[] = [
  le('signature', 64, 4), le('version', 68, 4), le('headerSize', 72, 4), le('imageType', 76, 4), le('flags', 80, 4),
  le('offsetBmap', 340, 4), le('offsetData', 344, 4), le('cylinders', 348, 4), le('heads', 352, 4), le('sectors', 356, 4),
  le('sectorSize', 360, 4), le('diskSize', 368, 8), le('blockSize', 376, 4), le('blockExtra', 380, 4), le('blocksInImage', 384, 4),
  le('blocksAllocated', 388, 4), ...['uuidImage', 'uuidLastModify', 'uuidLink', 'uuidParent'].flatMap((n, i) => [le(`${n}[0..8]`, 392 + i * 16, 8), le(`${n}[8..16]`, 400 + i * 16, 8)]),
]

/** The seSparse const header (sector 0, u64 fields; qemu's block/vmdk.c layout), the 8 bytes after it and the volatile header (sector 1). */
const SESPARSE_CONST_FIELDS: Field[] = [
  'magic', 'version', 'capacity', 'grainSize', 'gtSize', 'flags', 'reserved1', 'reserved2', 'reserved3', 'reserved4', 'volatileOffset',
  'volatileSize', 'journalHeaderOffset', 'journalHeaderSize', 'journalOffset', 'journalSize', 'gdOffset', 'gdSize', 'gtOffset', 'gtSizeTotal',
  'freeBitmapOffset', 'freeBitmapSize', 'backmapOffset', 'backmapSize', 'grainsOffset', 'grainsSize', 'pad',
].map((n, i) => le(n, i * 8, 8))
const SESPARSE_VOLATILE_FIELDS: Field[] = ['magic', 'freeGtNumber', 'nextTxnSeqNumber', 'replayJournal', 'pad'].map((n, i) => le(n, i * 8, 8))

/** Microsoft's VHD specification: the hard disk footer (the checksum at 64 is re-sealed, not mutated). */
const VHD_FOOTER_FIELDS: Field[] = [
  be('features', 8, 4), be('fileFormatVersion', 12, 4), be('dataOffset', 16, 8), be('creatorOS', 36, 4), be('originalSize', 40, 8),
  be('currentSize', 48, 8), be('cylinders', 56, 2), be('heads', 58, 1), be('sectorsPerTrack', 59, 1), be('diskType', 60, 4), be('savedState', 84, 1),
]

/** The dynamic disk header (checksum at 36 re-sealed). */
const VHD_DYNAMIC_FIELDS: Field[] = [
  be('dataOffset', 8, 8), be('tableOffset', 16, 8), be('headerVersion', 24, 4), be('maxTableEntries', 28, 4), be('blockSize', 32, 4),
]

/** VHD checksum: one's complement of the byte sum, the checksum field counted as zero. */
function sealVhd(b: Buffer, at: number, length: number, checksumAt: number): void {
  b.writeUInt32BE(0, at + checksumAt)
  let sum = 0
  for (let i = at; i < at + length; i++) sum = (sum + b[i]!) >>> 0
  b.writeUInt32BE(~sum >>> 0, at + checksumAt)
}

const VHD_DYN_AT = (b: Buffer) => Number(b.readBigUInt64BE(16))
const vhdTargets = (dynamicHeader: boolean): Target => ({
  headerAt: dynamicHeader ? VHD_DYN_AT : () => 0,
  copyAt: dynamicHeader ? undefined : (b) => b.length - 512,
  after: (b) => {
    sealVhd(b, 0, 512, 64)
    sealVhd(b, b.length - 512, 512, 64)
    const dyn = VHD_DYN_AT(b)
    if (dyn + 1024 <= b.length) sealVhd(b, dyn, 1024, 36)
  },
})

/** MS-VHDX metadata items (no checksum covers them): where each lies, found through the region and metadata tables. */
const VHDX_ITEMS: [guid: string, fields: Field[]][] = [
  ['caa16737-fa36-4d43-b3b6-33f0aa44e76b', [le('BlockSize', 0, 4), le('FileParameterFlags', 4, 4)]],
  ['2fa54224-cd1b-4876-b211-5dbed83bf4b8', [le('VirtualDiskSize', 0, 8)]],
  ['8141bf1d-a96f-4709-ba47-f233a8faab5f', [le('LogicalSectorSize', 0, 4)]],
  ['cda348c7-445d-4471-9cc9-e9885251c556', [le('PhysicalSectorSize', 0, 4)]],
]
const VHDX_METADATA_REGION = '8b7ca206-4790-4b9a-b8fe-575f050f886e'
const VHDX_REGION_TABLE = 192 * 1024

/** A GUID as MS-VHDX stores it: the first three groups little-endian. */
function guidAt(b: Buffer, o: number): string {
  const h = (from: number, to: number, rev: boolean) => {
    const bytes = [...b.subarray(o + from, o + to)]
    return (rev ? bytes.reverse() : bytes).map((x) => x.toString(16).padStart(2, '0')).join('')
  }
  return `${h(0, 4, true)}-${h(4, 6, true)}-${h(6, 8, true)}-${h(8, 10, false)}-${h(10, 16, false)}`
}

function vhdxItemAt(b: Buffer, guid: string): number {
  const regions = b.readUInt32LE(VHDX_REGION_TABLE + 8)
  for (let r = 0; r < regions; r++) {
    const e = VHDX_REGION_TABLE + 16 + r * 32
    if (guidAt(b, e) !== VHDX_METADATA_REGION) continue
    const meta = Number(b.readBigUInt64LE(e + 16))
    const items = b.readUInt16LE(meta + 10)
    for (let i = 0; i < items; i++) {
      const m = meta + 32 + i * 32
      if (guidAt(b, m) === guid) return meta + b.readUInt32LE(m + 16)
    }
  }
  throw new Error(`VHDX metadata item ${guid} not found`)
}

let dir: string
let cleanup: () => void

beforeAll(() => {
  ;({path: dir, cleanup} = tempDir('vdsnap-fields-'))
  writeRaw(join(dir, 'disk.raw'), makeDiskBytes(2 * MiB + 3 * 512, 17))
  qemuImgAt(dir, 'convert', '-f', 'raw', '-O', 'qcow2', 'disk.raw', 'good.qcow2')
  qemuImgAt(dir, 'convert', '-f', 'raw', '-O', 'qcow2', '-c', '-o', 'compression_type=zstd,cluster_size=4096', 'disk.raw', 'zstd.qcow2')
  qemuImgAt(dir, 'convert', '-f', 'raw', '-O', 'vmdk', 'disk.raw', 'good.vmdk')
  qemuImgAt(dir, 'convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', 'disk.raw', 'stream.vmdk')
  qemuImgAt(dir, 'convert', '-f', 'raw', '-O', 'vpc', 'disk.raw', 'good.vhd')
  qemuImgAt(dir, 'convert', '-f', 'raw', '-O', 'vhdx', 'disk.raw', 'good.vhdx')
  qemuImgAt(dir, 'convert', '-f', 'raw', '-O', 'vdi', 'disk.raw', 'good.vdi')
  qemuImgAt(dir, 'convert', '-f', 'raw', '-O', 'vdi', '-o', 'static=on', 'disk.raw', 'static.vdi')
  // A seSparse disk (data, zero and unmapped grains, grain numbers above 4095); its extent is
  // mutated as mutated-se-sesparse.vmdk, read through the descriptor naming it.
  const grains = new Map<number, GrainContent>([[0, Buffer.alloc(GRAIN, 0x11)], [5, 'zero'], [9, 'unmapped'], [300, Buffer.alloc(GRAIN, 0x22)]])
  writeSeSparseDisk(join(dir, 'se.vmdk'), {size: 2 * MiB + 3 * 512, grains, grainBase: 4094})
  writeFileSync(join(dir, 'mutated-se.vmdk'), readFileSync(join(dir, 'se.vmdk'), 'latin1').replace('se-sesparse', 'mutated-se-sesparse'))
})
afterAll(() => cleanup())

/** vdsnap's reading of the first COMPARE_BYTES: the bytes, or the error it refused with. */
async function vdsnapView(path: string, format: string): Promise<Buffer | VdsnapError> {
  try {
    const img = await openImage(path, {format: format === 'vpc' ? 'vhd' : format})
    try {
      await img.allocatedRanges()
      const n = Math.min(img.virtualSize, COMPARE_BYTES)
      const buf = Buffer.alloc(n)
      await img.read(buf, 0, n)
      return buf
    } finally {
      await img.close()
    }
  } catch (e) {
    if (e instanceof VdsnapError) return e
    throw e
  }
}

/** qemu's reading of the same bytes, or null when qemu refuses the image. */
function qemuView(path: string, format: string): Buffer | null {
  const out = join(dir, 'qemu-view.raw')
  rmSync(out, {force: true})
  const r = spawnSync(QEMU_IMG, ['dd', '-f', format, '-O', 'raw', 'bs=1M', `count=${COMPARE_BYTES / MiB}`, `if=${path}`, `of=${out}`], {stdio: 'ignore', timeout: 60_000})
  if (r.status !== 0 || !existsSync(out)) return null
  return readFileSync(out)
}

interface Outcome {
  checked: number
  bothRefused: number
  stricter: string[]
}

/** Writes `value` into field `f` of the header `headerAt` finds; `after` re-seals what a checksum covers. */
interface Target {
  headerAt(b: Buffer): number
  /** Also mutate this copy of the header (VHD keeps its footer at both ends). */
  copyAt?(b: Buffer): number | undefined
  after?(b: Buffer): void
}

/** `openAs`: the file both read (default: the mutated file itself), e.g. the descriptor naming a mutated extent. */
async function mutateEvery(base: string, format: string, fields: Field[], headerAt: ((b: Buffer) => number) | Target, openAs?: string): Promise<Outcome> {
  const target0: Target = typeof headerAt === 'function' ? {headerAt} : headerAt
  const original = readFileSync(join(dir, base))
  const mutated = join(dir, `mutated-${base}`)
  const target = openAs === undefined ? mutated : join(dir, openAs)
  const outcome: Outcome = {checked: 0, bothRefused: 0, stricter: []}
  const problems: string[] = []
  for (const f of fields) {
    const at = target0.headerAt(original) + f.offset
    const copy = target0.copyAt?.(original)
    for (const value of mutations(readField(original, at, f), f.bytes)) {
      const buf = Buffer.from(original)
      writeField(buf, at, f, value)
      if (copy !== undefined) writeField(buf, copy + f.offset, f, value)
      target0.after?.(buf)
      writeFileSync(mutated, buf)
      const what = `${base} ${f.name}=0x${value.toString(16)}`
      const ours = await vdsnapView(target, format)
      const theirs = qemuView(target, format)
      outcome.checked++
      if (theirs === null) {
        if (ours instanceof VdsnapError) outcome.bothRefused++
        else problems.push(`${what}: qemu refuses it, vdsnap read it`)
      } else if (ours instanceof VdsnapError) {
        outcome.stricter.push(`${what}: ${ours.message}`)
      } else if (!ours.equals(theirs.subarray(0, ours.length)) || ours.length !== Math.min(theirs.length, COMPARE_BYTES)) {
        problems.push(`${what}: vdsnap and qemu read different bytes`)
      }
    }
  }
  if (process.env.VDSNAP_SHOW_STRICTER) console.log(outcome.stricter.join("\n"))
  expect(problems).toEqual([])
  return outcome
}

describe('every header field mutated: never laxer than qemu, never different from it', () => {
  it('qcow2 (zlib, 64 KiB clusters)', async () => {
    const o = await mutateEvery('good.qcow2', 'qcow2', QCOW2_FIELDS, () => 0)
    expect(o.bothRefused).toBeGreaterThan(20)
  }, 300_000)

  it('qcow2 (zstd, 4 KiB clusters)', async () => {
    const o = await mutateEvery('zstd.qcow2', 'qcow2', QCOW2_FIELDS, () => 0)
    expect(o.bothRefused).toBeGreaterThan(20)
  }, 300_000)

  it('VMDK monolithicSparse header', async () => {
    const o = await mutateEvery('good.vmdk', 'vmdk', VMDK_FIELDS, () => 0)
    expect(o.bothRefused).toBeGreaterThan(10)
  }, 300_000)

  it('VMDK streamOptimized header (compressed grains)', async () => {
    const o = await mutateEvery('stream.vmdk', 'vmdk', VMDK_FIELDS, () => 0)
    expect(o.bothRefused).toBeGreaterThan(10)
  }, 300_000)

  it('VHD footer (both copies, checksums re-sealed)', async () => {
    const o = await mutateEvery('good.vhd', 'vpc', VHD_FOOTER_FIELDS, vhdTargets(false))
    expect(o.bothRefused).toBeGreaterThan(5)
  }, 300_000)

  it.each(VHDX_ITEMS)('VHDX metadata item %s', async (guid, fields) => {
    const o = await mutateEvery('good.vhdx', 'vhdx', fields, (b) => vhdxItemAt(b, guid))
    expect(o.checked).toBeGreaterThan(4)
  }, 300_000)

  it.each(['good.vdi', 'static.vdi'])('VDI 1.1 header (%s)', async (base) => {
    const o = await mutateEvery(base, 'vdi', VDI_FIELDS, () => 0)
    expect(o.bothRefused).toBeGreaterThan(20)
  }, 300_000)

  it('seSparse const header', async () => {
    const o = await mutateEvery('se-sesparse.vmdk', 'vmdk', SESPARSE_CONST_FIELDS, () => 0, 'mutated-se.vmdk')
    expect(o.bothRefused).toBeGreaterThan(40)
  }, 300_000)

  it('seSparse volatile header', async () => {
    const o = await mutateEvery('se-sesparse.vmdk', 'vmdk', SESPARSE_VOLATILE_FIELDS, (b) => Number(b.readBigUInt64LE(80)) * 512, 'mutated-se.vmdk')
    expect(o.bothRefused).toBeGreaterThan(5)
  }, 300_000)

  it('VHD dynamic disk header (checksum re-sealed)', async () => {
    const o = await mutateEvery('good.vhd', 'vpc', VHD_DYNAMIC_FIELDS, vhdTargets(true))
    expect(o.bothRefused).toBeGreaterThan(5)
  }, 300_000)
})
