// Test images made by real tools at test time: mkfs.ext4 -d fills a file
// system from a directory; helpers rewrite, zero and append byte ranges.
import {execFileSync} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import {closeSync, existsSync, ftruncateSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {ROOT} from './cli.js'

export function tempDir(prefix = 'vdsnap-test-'): {path: string; cleanup(): void} {
  const path = mkdtempSync(join(tmpdir(), prefix))
  return {path, cleanup: () => rmSync(path, {recursive: true, force: true})}
}

/** An ext4 image of `sizeBytes`, filled from `fromDir` (default: this project's src/ and test/). */
export function makeExt4Image(path: string, sizeBytes: number, fromDir = join(ROOT, 'src')): void {
  execFileSync('truncate', ['-s', String(sizeBytes), path])
  execFileSync('mkfs.ext4', ['-q', '-F', '-E', 'root_owner=0:0', '-d', fromDir, path], {stdio: 'pipe'})
}

/** A seeded pseudo-random generator (mulberry32) so failures replay. */
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

export function writeAt(path: string, offset: number, data: Buffer): void {
  const fd = openSync(path, 'r+')
  try {
    writeSync(fd, data, 0, data.length, offset)
  } finally {
    closeSync(fd)
  }
}

export function randomAt(path: string, offset: number, length: number): void {
  writeAt(path, offset, randomBytes(length))
}

export function zeroAt(path: string, offset: number, length: number): void {
  writeAt(path, offset, Buffer.alloc(length))
}

export function resize(path: string, size: number): void {
  const fd = openSync(path, 'r+')
  try {
    ftruncateSync(fd, size)
  } finally {
    closeSync(fd)
  }
}

export function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex')
}

export function fileSize(path: string): number {
  return statSync(path).size
}

/** Objects below `dir`, recursively; a temporary file (a write cut short by kill -9) is not an object. */
export function countFiles(dir: string): number {
  if (!existsSync(dir)) return 0
  let n = 0
  for (const e of readdirSync(dir, {withFileTypes: true})) {
    if (e.isDirectory()) n += countFiles(join(dir, e.name))
    else if (!e.name.startsWith('.tmp-')) n++
  }
  return n
}
