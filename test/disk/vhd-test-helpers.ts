// Helpers only the VHD/VHDX tests need: seeded 32-bit test data, a disk
// with 64 KiB-granular regions, qemu-img exit statuses, feeding a writer,
// comparing a disk qemu may have rounded up, the fuzz loops' check and the
// smaller-child check. The generic image helpers
// (qemu-img, qemuRaw, readWhole, rangesCoverData, tempDir) are in
// image-fixtures.ts.
import {spawnSync} from 'node:child_process'
import {openImage} from '../../src/disk/open.js'
import {expect} from 'vitest'
import {VdsnapError} from '../../src/errors.js'
import type {DiskImage, ImageWriter} from '../../src/disk/types.js'
import {prng, QEMU_IMG, readWhole} from './image-fixtures.js'

/** Seeded unsigned 32-bit integers (the shared mulberry32 generator, scaled). */
export function prngU32(seed: number): () => number {
  const r = prng(seed)
  return () => Math.floor(r() * 2 ** 32)
}

export function randomBytesSeeded(n: number, seed: number): Buffer {
  const r = prngU32(seed)
  const b = Buffer.alloc(n)
  for (let i = 0; i + 4 <= n; i += 4) b.writeUInt32LE(r(), i)
  for (let i = n & ~3; i < n; i++) b[i] = r() & 0xff
  return b
}

/** A raw disk of `size` bytes: random regions separated by zero regions (64 KiB granularity, odd tail). */
export function mixedDisk(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size)
  const r = prngU32(seed)
  for (let pos = 0; pos < size; ) {
    const len = Math.min(size - pos, (1 + (r() % 24)) * 65536 + (r() % 3) * 512 + 7)
    if (r() % 2 === 0) randomBytesSeeded(len, r()).copy(b, pos)
    pos += len
  }
  randomBytesSeeded(Math.min(1000, size), seed + 1).copy(b, size - Math.min(1000, size))
  return b
}

export function qemuStatus(...args: string[]): {status: number | null; out: string} {
  const r = spawnSync(QEMU_IMG, args, {encoding: 'utf8'})
  return {status: r.status, out: `${r.stdout}${r.stderr}`}
}

function isZero(b: Buffer, zero: Buffer): boolean {
  for (let i = 0; i < b.length; i += zero.length) {
    const s = b.subarray(i, i + zero.length)
    if (!s.equals(zero.subarray(0, s.length))) return false
  }
  return true
}

/** Feeds `data` to a writer in 64 KiB blocks, skipping all-zero ones (the tail may be short). */
export async function writeThrough(w: ImageWriter, data: Buffer, block = 65536): Promise<void> {
  const zero = Buffer.alloc(block)
  for (let pos = 0; pos < data.length; pos += block) {
    const piece = data.subarray(pos, pos + block)
    if (!piece.equals(zero.subarray(0, piece.length))) await w.write(pos, piece)
  }
  await w.close()
}

/** Pads or checks: qemu may round a size up; the extra bytes must be zero. */
export function sameDisk(actual: Buffer, expected: Buffer): boolean {
  if (actual.length < expected.length) return false
  return actual.subarray(0, expected.length).equals(expected) && isZero(actual.subarray(expected.length), Buffer.alloc(65536))
}

/** Opens and reads a (possibly corrupt) image: it must work or throw a VdsnapError. */
export async function expectReadOrVdsnapError(open: (path: string) => Promise<DiskImage>, path: string): Promise<void> {
  try {
    const img = await open(path)
    try {
      if (img.virtualSize <= 64 * 1024 * 1024) await readWhole(img, [3 * 1024 * 1024])
      await img.allocatedRanges()
    } finally {
      await img.close()
    }
  } catch (e) {
    expect(e, String(e)).toBeInstanceOf(VdsnapError)
  }
}

/**
 * A 4 MiB differencing child (made by `create`) over an 8 MiB parent whose
 * only data lies past 4 MiB lists no allocated range past its own end.
 */
export async function expectSmallerChildClipped(
  create: (path: string, size: number, opts?: {parent: string}) => Promise<ImageWriter>,
  parent: string,
  child: string,
): Promise<void> {
  const w = await create(parent, 8 * 1024 * 1024)
  await w.write(6 * 1024 * 1024, Buffer.alloc(65536, 1))
  await w.close()
  const c = await create(child, 4 * 1024 * 1024, {parent})
  await c.write(0, Buffer.alloc(65536, 2))
  await c.close()
  const img = await openImage(child)
  try {
    const ranges = await img.allocatedRanges()
    expect(ranges.length).toBeGreaterThan(0)
    for (const r of ranges) expect(r.offset + r.length).toBeLessThanOrEqual(img.virtualSize)
    expect((await img.info()).allocatedBytes).toBeLessThanOrEqual(img.virtualSize)
  } finally {
    await img.close()
  }
}
