// Test fixtures for the native image readers and writers: a deterministic
// raw disk with random and zero regions, qemu-img / qemu-io wrappers, and
// helpers that read a whole image and check it against qemu's own view.
// Seeded randomness and temporary directories come from test/helpers.
import {execFileSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {readFileSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {expect} from 'vitest'
import {openImage} from '../../src/disk/open.js'
import type {DiskImage, Range} from '../../src/disk/types.js'
import {prng} from '../helpers/images.js'

export {prng, tempDir} from '../helpers/images.js'

export const QEMU_IMG = '/usr/bin/qemu-img'
export const QEMU_IO = '/usr/bin/qemu-io'
export const MiB = 1024 * 1024

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

/** Uneven read sizes that cross cluster, grain and block boundaries. */
const UNEVEN_PIECES = [MiB, 7 * 512, 3 * MiB + 4096, 512, 65536 + 1536]

/** Reads the whole virtual disk in pieces of the given sizes, in turn. */
export async function readWhole(img: DiskImage, pieces: number[] = UNEVEN_PIECES): Promise<Buffer> {
  const out = Buffer.alloc(img.virtualSize)
  let at = 0
  for (let i = 0; at < img.virtualSize; i++) {
    const n = Math.min(pieces[i % pieces.length]!, img.virtualSize - at)
    await img.read(out.subarray(at, at + n), at, n)
    at += n
  }
  return out
}

/** The first span of `data` that holds non-zero bytes outside `ranges`, if any. */
function uncoveredData(data: Buffer, ranges: Range[]): [number, number] | undefined {
  const zero = Buffer.alloc(MiB)
  const nonZero = (from: number, to: number): [number, number] | undefined => {
    for (let p = from; p < to; p += MiB) {
      const n = Math.min(MiB, to - p)
      if (!data.subarray(p, p + n).equals(zero.subarray(0, n))) return [p, p + n]
    }
    return undefined
  }
  let pos = 0
  for (const r of ranges) {
    const bad = nonZero(pos, r.offset)
    if (bad) return bad
    pos = r.offset + r.length
  }
  return nonZero(pos, data.length)
}

/** Throws unless every non-zero byte of `data` lies in `ranges`. */
export function assertCovers(data: Buffer, ranges: Range[]): void {
  const bad = uncoveredData(data, ranges)
  if (bad) throw new Error(`non-zero data in [${bad[0]}, ${bad[1]}) outside the allocated ranges`)
}

/** True when every non-zero byte of `data` lies inside `ranges`. */
export function rangesCoverData(data: Buffer, ranges: Range[]): boolean {
  return uncoveredData(data, ranges) === undefined
}

/** Opens `file` and checks format, size, every byte, and that the allocated ranges cover all data. */
export async function checkImage(file: string, expected: Buffer, format: string): Promise<void> {
  const img = await openImage(file)
  try {
    expect(img.format).toBe(format)
    expect(img.virtualSize).toBe(expected.length)
    const got = await readWhole(img)
    expect(sha256(got)).toBe(sha256(expected))
    assertCovers(got, await img.allocatedRanges())
  } finally {
    await img.close()
  }
}

export function writeRaw(path: string, data: Buffer): void {
  writeFileSync(path, data)
}

/**
 * A 1 MiB LUKS-encrypted qcow2 made by qemu-img. qemu-img times its key
 * derivation and now and then fails with "Unable to get accurate CPU usage"
 * (seen 2-3 times in 30 here), so it gets three tries; a last failure says why.
 */
export function makeEncryptedQcow2(path: string): void {
  for (let attempt = 1; ; attempt++) {
    try {
      execFileSync(QEMU_IMG, ['create', '-q', '-f', 'qcow2', '--object', 'secret,id=s0,data=x', '-o', 'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10', path, '1M'], {
        stdio: ['ignore', 'ignore', 'pipe'],
      })
      return
    } catch (e) {
      if (attempt === 3) throw new Error(`qemu-img could not create an encrypted qcow2: ${(e as {stderr?: Buffer}).stderr?.toString() ?? e}`)
    }
  }
}
