// unlock: break stale locks. Reads no keys, so it works without a password.
import {NotFoundError} from '../errors.js'
import {breakLocks, type StoredLock} from './lock.js'
import {openStorage, type StorageOptions} from './storage.js'

export async function unlockRepository(location: string, all: boolean, storage: StorageOptions = {}): Promise<StoredLock[]> {
  const backend = await openStorage(location, storage)
  try {
    if (!(await backend.stat('config'))) throw new NotFoundError(`no vdsnap repository at ${location}`)
    return await breakLocks(backend, all)
  } finally {
    await backend.close()
  }
}
