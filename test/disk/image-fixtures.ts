// Test fixtures for the native image readers and writers: a deterministic
// raw disk with random and zero regions, qemu-img / qemu-io wrappers, and
// helpers that read a whole image and check it against qemu's own view.
import {execFileSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import type {DiskImage, Range} from '../../src/disk/types.js'

export const QEMU_IMG = '/usr/bin/qemu-img'
export const QEMU_IO = '/usr/bin/qemu-io'
export const MiB = 1024 * 1024

/** Seeded PRNG (mulberry32) so every run builds the same images. */
export function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** A disk of `size` bytes: random regions (some sector-unaligned) between zero regions. */
export function makeDiskBytes(size: number, seed = 1): Buffer {
  const rnd = prng(seed)
  const buf = Buffer.alloc(size)
  let at = Math.floor(rnd() * 4) * 4096
  while (at < size) {
    const len = Math.min(size - at, Math.floor(rnd() * 300_000) + 1)
    for (let i = at; i < at + len; i++) buf[i] = (rnd() * 256) | 0
    at += len + Math.floor(rnd() * 600_000)
  }
  // A run of compressible text too, so compressed clusters are really compressed.
  const text = Buffer.from('vdsnap compressible data '.repeat(4000))
  text.copy(buf, Math.min(size - text.length, 2 * MiB))
  // The last sector is non-zero so the tail of the image is exercised.
  buf.fill(0x5a, size - 300)
  return buf
}

export function qemuImg(...args: string[]): string {
  return execFileSync(QEMU_IMG, args, {encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']})
}

/** qemu-img run in `cwd`, for options (data_file) that qemu resolves against the working directory. */
export function qemuImgAt(cwd: string, ...args: string[]): string {
  return execFileSync(QEMU_IMG, args, {cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']})
}

export function qemuIo(file: string, format: string, cmd: string): void {
  execFileSync(QEMU_IO, ['-f', format, '-c', cmd, file], {stdio: 'ignore'})
}

export function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex')
}

/** qemu's view of an image as raw bytes. */
export function qemuRaw(dir: string, file: string, format?: string, snapshot?: string): Buffer {
  const out = join(dir, `qemu-view-${Math.random().toString(36).slice(2)}.raw`)
  const args = ['convert', ...(format ? ['-f', format] : []), ...(snapshot ? ['-l', snapshot] : []), '-O', 'raw', file, out]
  qemuImg(...args)
  const data = readFileSync(out)
  rmSync(out)
  return data
}

/** Reads the whole virtual disk, in uneven pieces to cross cluster boundaries. */
export async function readWhole(img: DiskImage): Promise<Buffer> {
  const out = Buffer.alloc(img.virtualSize)
  const pieces = [MiB, 7 * 512, 3 * MiB + 4096, 512, 65536 + 1536]
  let at = 0
  for (let i = 0; at < img.virtualSize; i++) {
    const n = Math.min(pieces[i % pieces.length]!, img.virtualSize - at)
    await img.read(out.subarray(at, at + n), at, n)
    at += n
  }
  return out
}

/** Throws unless every non-zero byte of `data` lies in `ranges`. */
export function assertCovers(data: Buffer, ranges: Range[]): void {
  let pos = 0
  const zero = Buffer.alloc(MiB)
  const checkZero = (from: number, to: number) => {
    for (let p = from; p < to; p += MiB) {
      const n = Math.min(MiB, to - p)
      if (!data.subarray(p, p + n).equals(zero.subarray(0, n))) throw new Error(`non-zero data in [${p}, ${p + n}) outside the allocated ranges`)
    }
  }
  for (const r of ranges) {
    checkZero(pos, r.offset)
    pos = r.offset + r.length
  }
  checkZero(pos, data.length)
}

export function tempDir(prefix: string): {dir: string; cleanup: () => void} {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  return {dir, cleanup: () => rmSync(dir, {recursive: true, force: true})}
}

export function writeRaw(path: string, data: Buffer): void {
  writeFileSync(path, data)
}
