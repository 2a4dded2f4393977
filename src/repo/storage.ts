// Opens the storage behind a repository location and composes the wrappers
// (retry, concurrency, bandwidth). This is the one place that decides their
// order. Heavy backends (SFTP, S3) are imported lazily so that a local
// backup does not pay for loading them.
import {resolve} from 'node:path'
import {UsageError} from '../errors.js'
import {LocalBackend} from '../backend/local.js'
import type {StorageBackend} from '../backend/types.js'

export interface StorageOptions {
  /** Bytes per second, 0 or undefined for no limit. */
  limitUpload?: number
  limitDownload?: number
  /** Transfers in flight at once. */
  connections?: number
}

export async function openStorage(location: string, _options: StorageOptions = {}): Promise<StorageBackend> {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location) && !location.startsWith('file://')) {
    throw new UsageError(`unsupported repository location ${location}`, {hint: 'use a local path or file:// URL'})
  }
  const path = location.startsWith('file://') ? new URL(location).pathname : location
  return new LocalBackend(resolve(path))
}
