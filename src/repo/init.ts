// init: create a repository at a location.
import {UsageError, withContext} from '../errors.js'
import type {RepoConfig} from './config.js'
import {Repository} from './repository.js'
import {openStorage, type StorageOptions} from './storage.js'

export function parseCompression(text: string): number {
  if (text === 'none' || text === 'zstd:0') return 0
  const m = /^zstd(?::(\d+))?$/.exec(text)
  const level = m ? Number(m[1] ?? 3) : NaN
  if (!(level >= 1 && level <= 19)) throw new UsageError(`--compression ${text}: use zstd:LEVEL with LEVEL 1 to 19, or none`)
  return level
}

export async function initRepository(
  location: string,
  opts: {blockSize: number; level: number; password?: string; syntheticFullEvery: number},
  storage: StorageOptions = {},
): Promise<RepoConfig & {location: string}> {
  const backend = await openStorage(location, storage)
  try {
    // Keep the backend's error class (its exit code) and hint: an unknown
    // host key or a missing bucket must read the same as on any other command.
    await backend.create?.().catch((e: unknown) => {
      throw withContext(e, `cannot create a repository at ${location}`)
    })
    const repo = await Repository.init(backend, opts)
    return {...repo.config, location: backend.location}
  } finally {
    await backend.close()
  }
}
