// The repository config: plaintext JSON at "config", written once by init.
// It holds nothing secret: format version, block size, compression,
// whether objects are encrypted, and defaults for backups.
import {randomBytes} from 'node:crypto'
import {DataError, UsageError} from '../errors.js'
import {MAX_BLOCK_SIZE, MIN_BLOCK_SIZE} from './index-codec.js'

export const FORMAT_VERSION = 1

export interface RepoConfig {
  vdsnap: number
  id: string
  created: string
  blockSize: number
  compression: {algorithm: 'zstd' | 'none'; level: number}
  encryption: 'aes-256-gcm' | 'none'
  chunkId: 'hmac-sha256' | 'sha256'
  syntheticFullEvery: number
}

// Chosen by measurement (BENCHMARKS.md, "Block size"): on the benchmark set
// 512 KiB stores 40% less than 1 MiB for a 1% incremental of scattered 64 KiB
// writes, at the same full-backup throughput, for twice the objects.
export const DEFAULT_BLOCK_SIZE = 512 * 1024
export const DEFAULT_SYNTHETIC_FULL_EVERY = 30

export function newConfig(opts: {blockSize: number; level: number; encrypted: boolean; syntheticFullEvery?: number}): RepoConfig {
  validateBlockSize(opts.blockSize)
  return {
    vdsnap: FORMAT_VERSION,
    id: randomBytes(16).toString('hex'),
    created: new Date().toISOString(),
    blockSize: opts.blockSize,
    compression: opts.level > 0 ? {algorithm: 'zstd', level: opts.level} : {algorithm: 'none', level: 0},
    encryption: opts.encrypted ? 'aes-256-gcm' : 'none',
    chunkId: opts.encrypted ? 'hmac-sha256' : 'sha256',
    syntheticFullEvery: opts.syntheticFullEvery ?? DEFAULT_SYNTHETIC_FULL_EVERY,
  }
}

export function validateBlockSize(n: number): void {
  if (!Number.isInteger(n) || n < MIN_BLOCK_SIZE || n > MAX_BLOCK_SIZE || (n & (n - 1)) !== 0) {
    throw new UsageError(`block size ${n} is not a power of two between 64KiB and 16MiB`)
  }
}

export function parseConfig(text: string, location: string): RepoConfig {
  let c: RepoConfig
  try {
    c = JSON.parse(text) as RepoConfig
  } catch {
    throw new DataError(`${location}/config is not valid JSON (corrupt repository config)`)
  }
  if (c.vdsnap !== FORMAT_VERSION) {
    throw new DataError(`${location} has repository format ${c.vdsnap}; this vdsnap reads format ${FORMAT_VERSION}`, {
      hint: 'use a vdsnap release that supports it',
    })
  }
  try {
    validateBlockSize(c.blockSize)
  } catch {
    throw new DataError(`${location}/config has an invalid block size ${c.blockSize}`)
  }
  if (!['aes-256-gcm', 'none'].includes(c.encryption)) throw new DataError(`${location}/config: unknown encryption ${c.encryption}`)
  return c
}

/** Parses "1MiB", "64k", "4M", "1048576". */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$/i.exec(text)
  if (!m) throw new UsageError(`cannot read size "${text}"`, {hint: 'write e.g. 1MiB, 512KiB or 1048576'})
  const mult = {'': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4}[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't']
  return Math.round(Number(m[1]) * mult)
}

/** "4.00 MiB": a byte count for people (exact counts belong in --json). */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']
  let v = n
  let i = 0
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`
}
