// Builds ESXi seSparse snapshot disks for tests (qemu reads seSparse but
// cannot write it), from the layout qemu's block/vmdk.c reads: const header
// (sector 0), volatile header (sector 1), a journal header and journal,
// the grain directory, the grain tables, then the 4 KiB grains. Grain
// tables and grains are placed in a shuffled order, and grain numbers can
// start high (grainBase) so the odd split of the grain number over the
// entry's bits (low 12 bits in bits 48..59) is exercised.
import {closeSync, openSync, writeFileSync, writeSync, ftruncateSync} from 'node:fs'
import {basename, join, dirname} from 'node:path'
import {SE, SESPARSE_CONST_MAGIC, SESPARSE_GT_ENTRIES, SESPARSE_GT_SECTORS, SESPARSE_VOLATILE_MAGIC, SEV} from '../../src/disk/vmdk-sesparse.js'
import {prng} from '../helpers/images.js'

export const GRAIN = 4096
const SECTOR = 512

export type GrainContent = Buffer | 'zero' | 'unmapped'

export interface SeSparseSpec {
  /** Virtual size in bytes (a whole number of sectors). */
  size: number
  /** Grain index → content; others are unallocated. */
  grains: Map<number, GrainContent>
  /** First grain number used (default 0); large values test the number encoding. */
  grainBase?: number
  seed?: number
}

function u64(buf: Buffer, at: number, value: number | bigint): void {
  buf.writeBigUInt64LE(BigInt(value), at)
}

/** Writes the seSparse extent file. */
export function writeSeSparseExtent(path: string, spec: SeSparseSpec): void {
  const rnd = prng(spec.seed ?? 1)
  const capacitySectors = spec.size / SECTOR
  const coverage = SESPARSE_GT_ENTRIES * GRAIN
  const gdEntries = Math.max(1, Math.ceil(spec.size / coverage))
  const gdSectors = Math.ceil((gdEntries * 8) / SECTOR)
  const usedTables = [...new Set([...spec.grains.keys()].map((g) => Math.floor((g * GRAIN) / coverage)))]
  const tableSlots = shuffle(usedTables.map((_, i) => i), rnd)
  const journalHeader = 2
  const journal = 3
  const journalSectors = 8
  const gdOffset = journal + journalSectors
  const gtOffset = gdOffset + gdSectors
  const gtSectors = Math.max(1, usedTables.length) * SESPARSE_GT_SECTORS
  const grainsOffset = gtOffset + gtSectors
  const dataGrains = [...spec.grains.entries()].filter(([, c]) => Buffer.isBuffer(c)).map(([g]) => g)
  const base = spec.grainBase ?? 0
  const numbers = new Map<number, number>()
  shuffle(dataGrains.map((_, i) => i), rnd).forEach((slot, i) => numbers.set(dataGrains[i]!, base + slot))
  const grainCount = base + dataGrains.length

  const h = Buffer.alloc(SECTOR)
  u64(h, SE.magic, SESPARSE_CONST_MAGIC)
  u64(h, SE.version, 0x200000001n)
  u64(h, SE.capacity, capacitySectors)
  u64(h, SE.grainSize, 8)
  u64(h, SE.gtSize, SESPARSE_GT_SECTORS)
  u64(h, SE.volatileOffset, 1)
  u64(h, SE.volatileSize, 1)
  u64(h, SE.journalHeaderOffset, journalHeader)
  u64(h, SE.journalHeaderSize, 1)
  u64(h, SE.journalOffset, journal)
  u64(h, SE.journalSize, journalSectors)
  u64(h, SE.gdOffset, gdOffset)
  u64(h, SE.gdSize, gdSectors)
  u64(h, SE.gtOffset, gtOffset)
  u64(h, SE.gtSizeTotal, gtSectors)
  u64(h, SE.grainsOffset, grainsOffset)
  u64(h, SE.grainsSize, grainCount * 8)
  const v = Buffer.alloc(SECTOR)
  u64(v, SEV.magic, SESPARSE_VOLATILE_MAGIC)

  const gd = Buffer.alloc(gdSectors * SECTOR)
  usedTables.forEach((t, i) => {
    gd.writeUInt32LE(tableSlots[i]!, t * 8)
    gd.writeUInt32LE(0x10000000, t * 8 + 4)
  })
  const tables = Buffer.alloc(gtSectors * SECTOR)
  for (const [g, content] of spec.grains) {
    const t = Math.floor((g * GRAIN) / coverage)
    const at = tableSlots[usedTables.indexOf(t)]! * SESPARSE_GT_SECTORS * SECTOR + (g % SESPARSE_GT_ENTRIES) * 8
    let entry: bigint
    if (content === 'zero') entry = 0x2000000000000000n
    else if (content === 'unmapped') entry = 0x1000000000000000n
    else {
      const n = BigInt(numbers.get(g)!)
      entry = 0x3000000000000000n | ((n & 0xfffn) << 48n) | (n >> 12n)
    }
    tables.writeBigUInt64LE(entry, at)
  }
  const fd = openSync(path, 'w')
  try {
    for (const [buf, sector] of [[h, 0], [v, 1], [gd, gdOffset], [tables, gtOffset]] as const) writeSync(fd, buf, 0, buf.length, sector * SECTOR)
    for (const [g, n] of numbers) writeSync(fd, spec.grains.get(g) as Buffer, 0, GRAIN, (grainsOffset + n * 8) * SECTOR)
    ftruncateSync(fd, (grainsOffset + grainCount * 8) * SECTOR)
  } finally {
    closeSync(fd)
  }
}

/**
 * Writes `<name>.vmdk` (descriptor) and `<name>-sesparse.vmdk`; a parent makes it an ESXi snapshot delta
 * (qemu refuses to read through a parent whose CID is not the delta's parentCID).
 */
export function writeSeSparseDisk(descriptorPath: string, spec: SeSparseSpec, parentHint?: string, parentCid = '1a2b3c4d', cid = '2a3b4c5d'): string {
  const extent = basename(descriptorPath).replace(/\.vmdk$/, '') + '-sesparse.vmdk'
  writeSeSparseExtent(join(dirname(descriptorPath), extent), spec)
  writeFileSync(descriptorPath, [
    '# Disk DescriptorFile', 'version=1', 'encoding="UTF-8"', `CID=${cid}`, `parentCID=${parentHint ? parentCid : 'ffffffff'}`,
    'isNativeSnapshot="no"', 'createType="seSparse"', ...(parentHint ? [`parentFileNameHint="${parentHint}"`] : []), '',
    '# Extent description', `RW ${spec.size / SECTOR} SESPARSE "${extent}"`, '', '# The Disk Data Base', '#DDB', '',
    'ddb.adapterType = "lsilogic"', 'ddb.virtualHWVersion = "14"', '',
  ].join('\n'))
  return extent
}

/** An ESXi base disk: a "vmfs" descriptor over a flat file holding `data`. */
export function writeVmfsBase(descriptorPath: string, data: Buffer): void {
  const flat = basename(descriptorPath).replace(/\.vmdk$/, '') + '-flat.vmdk'
  writeFileSync(join(dirname(descriptorPath), flat), data)
  writeFileSync(descriptorPath, [
    '# Disk DescriptorFile', 'version=1', 'encoding="UTF-8"', 'CID=1a2b3c4d', 'parentCID=ffffffff', 'createType="vmfs"', '',
    '# Extent description', `RW ${data.length / SECTOR} VMFS "${flat}"`, '', '# The Disk Data Base', '#DDB', '', 'ddb.adapterType = "lsilogic"', '',
  ].join('\n'))
}

/** `data` with a spec's grains applied over it (unallocated grains keep `data`). */
export function applyGrains(data: Buffer, spec: SeSparseSpec): Buffer {
  const out = Buffer.from(data)
  for (const [g, c] of spec.grains) {
    if (Buffer.isBuffer(c)) c.copy(out, g * GRAIN)
    else out.fill(0, g * GRAIN, (g + 1) * GRAIN)
  }
  return out
}

function shuffle<T>(a: T[], rnd: () => number): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1))
    ;[a[i], a[j]] = [a[j]!, a[i]!]
  }
  return a
}
