// Shared helpers for the VHD/VHDX tests: seeded test data, qemu-img calls,
// hashing a reader's whole virtual disk, and checking allocated ranges.
import {execFileSync, spawnSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import type {DiskImage, ImageWriter, Range} from '../../src/disk/types.js'

export const QEMU_IMG = '/usr/bin/qemu-img'

export function tempDir(prefix: string): {dir: string; cleanup: () => void} {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  return {dir, cleanup: () => rmSync(dir, {recursive: true, force: true})}
}

/** xorshift32: deterministic test bytes. */
export function prng(seed: number): () => number {
  let x = seed >>> 0 || 1
  return () => {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    return x
  }
}

export function randomBytesSeeded(n: number, seed: number): Buffer {
  const r = prng(seed)
  const b = Buffer.alloc(n)
  for (let i = 0; i + 4 <= n; i += 4) b.writeUInt32LE(r(), i)
  for (let i = n & ~3; i < n; i++) b[i] = r() & 0xff
  return b
}

/** A raw disk of `size` bytes: random regions separated by zero regions (64 KiB granularity, odd tail). */
export function mixedDisk(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size)
  const r = prng(seed)
  for (let pos = 0; pos < size; ) {
    const len = Math.min(size - pos, (1 + (r() % 24)) * 65536 + (r() % 3) * 512 + 7)
    if (r() % 2 === 0) randomBytesSeeded(len, r()).copy(b, pos)
    pos += len
  }
  randomBytesSeeded(Math.min(1000, size), seed + 1).copy(b, size - Math.min(1000, size))
  return b
}

export function qemuImg(...args: string[]): string {
  return execFileSync(QEMU_IMG, args, {encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']})
}

export function qemuStatus(...args: string[]): {status: number | null; out: string} {
  const r = spawnSync(QEMU_IMG, args, {encoding: 'utf8'})
  return {status: r.status, out: `${r.stdout}${r.stderr}`}
}

/** The guest bytes as qemu sees them. */
export function qemuRaw(path: string, format: string, dir: string): Buffer {
  const out = join(dir, `qemu-raw-${Math.random().toString(36).slice(2)}.raw`)
  qemuImg('convert', '-f', format, '-O', 'raw', path, out)
  const b = readFileSync(out)
  rmSync(out)
  return b
}

export const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

/** Reads the whole virtual disk in uneven chunks. */
export async function readAll(img: DiskImage, chunk = 1024 * 1024 + 4096): Promise<Buffer> {
  const out = Buffer.alloc(img.virtualSize)
  for (let pos = 0; pos < img.virtualSize; pos += chunk) {
    const n = Math.min(chunk, img.virtualSize - pos)
    await img.read(out.subarray(pos, pos + n), pos, n)
  }
  return out
}

/** True when every non-zero byte of `data` lies inside `ranges`. */
export function rangesCoverData(data: Buffer, ranges: Range[]): boolean {
  let covered = 0
  const zero = Buffer.alloc(65536)
  for (const r of ranges) {
    if (!isZero(data.subarray(covered, r.offset), zero)) return false
    covered = r.offset + r.length
  }
  return isZero(data.subarray(covered), zero)
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

export function writeRaw(path: string, data: Buffer): void {
  writeFileSync(path, data)
}

/** Pads or checks: qemu may round a size up; the extra bytes must be zero. */
export function sameDisk(actual: Buffer, expected: Buffer): boolean {
  if (actual.length < expected.length) return false
  return actual.subarray(0, expected.length).equals(expected) && isZero(actual.subarray(expected.length), Buffer.alloc(65536))
}
