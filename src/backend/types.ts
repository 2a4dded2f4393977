// The storage interface: five data verbs, nothing about snapshots.
// Names are slash-separated relative paths ("chunks/ab/abcd...", "config").
//
// Contract for every backend:
// - save(name, data) is atomic: readers see the old object, or the whole new
//   one, never a part (temporary name + fsync + rename, or a single PUT).
//   An existing object is replaced. Safe to retry.
// - load(name, range?) returns the bytes, all of them or exactly
//   range.length bytes from range.offset (one ranged read: pread, an SFTP
//   read at offset, an HTTP Range GET). A range must lie inside the object:
//   one that reaches past its end throws ObjectRangeError (range.ts, a
//   permanent DataError); a zero-length range inside it returns no bytes.
//   A missing object throws NotFoundError (permanent). Safe to retry.
// - stat(name) returns {size} or null when missing.
// - list(prefix) yields {name, size} of every object whose name starts with
//   the directory prefix ("chunks/"), in ascending name order (compareNames:
//   by UTF-8 bytes, which is S3's ListObjectsV2 order), each name once. The
//   retry wrapper relies on it to resume a broken listing after the last
//   name it yielded instead of remembering every name.
// - remove(name) deletes; a missing object is not an error.
// Transient faults (connection reset, timeouts, 5xx, throttling) throw
// errors with retryable = true; everything else is permanent.

export interface ObjectInfo {
  name: string
  size: number
}

export interface ByteRange {
  offset: number
  length: number
}

export interface Backend {
  /** Human-readable location, e.g. "/srv/repo" or "sftp://host/path". */
  readonly location: string
  save(name: string, data: Buffer): Promise<void>
  load(name: string, range?: ByteRange): Promise<Buffer>
  stat(name: string): Promise<ObjectInfo | null>
  list(prefix: string): AsyncIterable<ObjectInfo>
  remove(name: string): Promise<void>
  /** Releases connections. */
  close(): Promise<void>
}

/** Optional extras a backend may offer; callers feature-test for them. */
export interface BackendExtras {
  /** Creates the repository's top-level location; fails if it exists and is not empty. */
  create?(): Promise<void>
  /** True for backends on this host, where a lock's pid can be checked. */
  readonly isLocal?: boolean
  /**
   * Makes every object saved so far durable, where save() deferred part of
   * that (the local backend fsyncs chunk directories here, once, instead of
   * after every chunk). Called before writing an object that refers to
   * earlier ones (an index refers to chunks).
   */
  flush?(): Promise<void>
  /**
   * The temporary objects (".tmp-*", the last name part) that saves which
   * died left behind, with their modification times; list() never shows
   * them. remove(name) deletes one. Used by prune (under the exclusive
   * lock) and key commands, by the age rule in repo/stale-temps.ts.
   */
  listTemps?(): AsyncIterable<TempObject>
}

export interface TempObject extends ObjectInfo {
  /** Last modification, milliseconds since the epoch (the server's clock). */
  mtimeMs: number
}

/** True for the name of a temporary object (its last part starts with ".tmp-"). */
export function isTempName(name: string): boolean {
  return name.slice(name.lastIndexOf('/') + 1).startsWith('.tmp-')
}

export type StorageBackend = Backend & BackendExtras

const NON_BMP_OR_HIGH = /[\ud800-\uffff]/

/** The order of list(): by UTF-8 bytes. Equal to plain string order for names without characters from U+D800 up. */
export function compareNames(a: string, b: string): number {
  if (NON_BMP_OR_HIGH.test(a) || NON_BMP_OR_HIGH.test(b)) return Buffer.compare(Buffer.from(a), Buffer.from(b))
  return a < b ? -1 : a > b ? 1 : 0
}
