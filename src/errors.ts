// Typed errors with stable codes. Each error says what was being done and
// what the user can do about it; only the CLI base command maps a class to an
// exit status (see EXIT_CODES and the README's table). `retryable` is set
// where the error happens, so the retry wrapper never has to guess.
//
// Besides its class (the exit code), every error carries a literal `code`
// (ERROR_CODES below: the one list of them, shown in --json error output)
// and, where one is concerned, the `object` (a repository object name, a
// snapshot id, a file path) or byte `offset` it is about. Each class has a
// default code; throw sites that know better pass a specific one.

export const EXIT_CODES = {
  ok: 0,
  internal: 1,
  usage: 2,
  warning: 3,
  locked: 4,
  password: 5,
  data: 6,
  io: 7,
  notFound: 8,
} as const

export type ExitKind = keyof typeof EXIT_CODES

/**
 * Every error code and what it means. Stable: scripts match on them (the
 * README's --json error shape), so a code is never renamed or reused.
 */
export const ERROR_CODES = {
  // class defaults
  INTERNAL: 'a bug or an unclassified failure',
  USAGE: 'bad flags, arguments or combinations of them',
  WARNING: 'finished, but something needs attention',
  LOCKED: 'another process holds a conflicting repository lock',
  LOCK_LOST: 'our repository lock was lost or taken over while running',
  LOCK_WRITE: 'the lock file cannot be written (read-only or full file system)',
  PASSWORD: 'wrong or missing password or key',
  DATA: 'stored or source data is corrupt or fails verification',
  IO: 'reading or writing failed at the operating system or network level',
  NOT_FOUND: 'a file, object or snapshot does not exist',
  // specific codes
  NO_SPACE: 'no space left on the target or repository file system',
  PERMISSION: 'permission denied',
  REPO_NOT_FOUND: 'no repository at the location given',
  REPO_EXISTS: 'a repository already exists at the location given',
  SNAPSHOT_NOT_FOUND: 'no snapshot matches the id or selector given',
  SNAPSHOT_AMBIGUOUS: 'a selector matches more than one snapshot',
  MANIFEST_CORRUPT: 'a snapshot manifest is malformed or does not match its name',
  CHUNK_MISSING: 'a chunk a snapshot refers to is not in the repository',
  CHUNK_CORRUPT: 'a chunk fails decoding, authentication or its digest',
  OBJECT_CORRUPT: 'a repository object (not a chunk) fails decoding or authentication',
  INDEX_MISSING: 'a snapshot index is not in the repository',
  INDEX_CORRUPT: 'a snapshot index is truncated, malformed or fails its checksum',
  CHAIN_BROKEN: "a snapshot's chain of delta indexes is broken, loops or has no full index",
  IMAGE_FORMAT: 'a disk image cannot be parsed (corrupt header, loop, absurd size)',
  IMAGE_BOUNDS: 'a disk image refers to data outside itself or its limits',
  ARCHIVE_CORRUPT: 'an archive is truncated, malformed or fails its checksums',
  TARGET_FULL: 'the restore target ran out of space',
  OBJECT_RANGE: 'a ranged read asked for bytes past the end of a stored object (it is truncated, or the reference to it is wrong)',
  PACK_CORRUPT: 'a pack file is truncated, malformed or fails authentication (its footer or trailer)',
  REPO_INDEX_CORRUPT: 'a repository index file is truncated, malformed or fails authentication',
} as const

export type ErrorCode = keyof typeof ERROR_CODES

export interface ErrorOptions {
  cause?: unknown
  retryable?: boolean
  hint?: string
  /** A specific code; the class's default otherwise. */
  code?: ErrorCode
  /** The object concerned: a repository object name, snapshot id or file path. */
  object?: string
  /** The byte offset concerned (in an image, archive or index). */
  offset?: number
}

export class VdsnapError extends Error {
  /** The code of an error of this class when the throw site gives none. */
  static readonly defaultCode: ErrorCode = 'INTERNAL'
  readonly kind: ExitKind = 'internal'
  readonly code: ErrorCode
  readonly retryable: boolean
  readonly hint?: string
  declare readonly object?: string
  declare readonly offset?: number

  constructor(message: string, options: ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : {cause: options.cause})
    this.name = new.target.name
    this.code = options.code ?? (new.target as typeof VdsnapError).defaultCode
    this.retryable = options.retryable ?? false
    this.hint = options.hint
    if (options.object !== undefined) this.object = options.object
    if (options.offset !== undefined) this.offset = options.offset
  }

  /** One line for the user: what went wrong, then what to do. */
  oneLine(): string {
    return this.hint ? `${this.message}; ${this.hint}` : this.message
  }
}

/** Bad flags, arguments or combinations of them. */
export class UsageError extends VdsnapError {
  override readonly kind = 'usage'
  static override readonly defaultCode: ErrorCode = 'USAGE'
}

/** Something that needs attention but did not lose data (source changed during read...). */
export class WarningError extends VdsnapError {
  override readonly kind = 'warning'
  static override readonly defaultCode: ErrorCode = 'WARNING'
}

export class LockedError extends VdsnapError {
  override readonly kind = 'locked'
  static override readonly defaultCode: ErrorCode = 'LOCKED'
}

export class PasswordError extends VdsnapError {
  override readonly kind = 'password'
  static override readonly defaultCode: ErrorCode = 'PASSWORD'
}

/** Stored or source data is corrupt, truncated or fails verification. */
export class DataError extends VdsnapError {
  override readonly kind = 'data'
  static override readonly defaultCode: ErrorCode = 'DATA'
}

/** The disk image or device could not be parsed (corrupt header, loop, absurd size). */
export class ImageFormatError extends DataError {
  static override readonly defaultCode: ErrorCode = 'IMAGE_FORMAT'
  constructor(
    readonly path: string,
    message: string,
    options: ErrorOptions = {},
  ) {
    super(`${path}: ${message}`, {object: path, ...options})
  }
}

/** Reading or writing failed at the operating system or network level. */
export class IoError extends VdsnapError {
  override readonly kind = 'io'
  static override readonly defaultCode: ErrorCode = 'IO'
}

export class NotFoundError extends VdsnapError {
  override readonly kind = 'notFound'
  static override readonly defaultCode: ErrorCode = 'NOT_FOUND'
}

/**
 * The same error — class, exit code, hint, `retryable` — with what was being
 * done in front of its message, for callers that add context without
 * changing what the error means.
 */
export function withContext(err: unknown, doing: string): VdsnapError {
  const e = toVdsnapError(err)
  const copy = Object.assign(Object.create(Object.getPrototypeOf(e)) as VdsnapError, e)
  copy.message = `${doing}: ${e.message}`
  copy.stack = e.stack
  Object.defineProperty(copy, 'cause', {value: e, writable: true, configurable: true})
  return copy
}

/** Returns a VdsnapError for anything thrown, classifying common Node errors. */
export function toVdsnapError(err: unknown, doing?: string): VdsnapError {
  if (err instanceof VdsnapError) return err
  const e = err as NodeJS.ErrnoException
  const prefix = doing ? `${doing}: ` : ''
  switch (e?.code) {
    case 'ENOENT':
      return new NotFoundError(`${prefix}no such file or directory${e.path ? ` (${e.path})` : ''}`, {cause: err, object: e.path})
    case 'ENOSPC':
      return new IoError(`${prefix}no space left on device${e.path ? ` (${e.path})` : ''}`, {
        cause: err,
        code: 'NO_SPACE',
        object: e.path,
        hint: 'free space on the target or repository and run again; nothing already stored was lost',
      })
    case 'EACCES':
    case 'EPERM':
      return new IoError(`${prefix}permission denied${e.path ? ` (${e.path})` : ''}`, {cause: err, code: 'PERMISSION', object: e.path})
    case 'EDQUOT':
      return new IoError(`${prefix}${e.message}`, {cause: err, code: 'NO_SPACE', object: e.path})
    case 'EIO':
    case 'EROFS':
      return new IoError(`${prefix}${e.message}`, {cause: err, object: e.path})
    default:
      return new VdsnapError(`${prefix}${e?.message ?? String(err)}`, {cause: err})
  }
}
