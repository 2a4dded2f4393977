// Typed errors with stable codes. Each error says what was being done and
// what the user can do about it; only the CLI base command maps a code to an
// exit status (see EXIT_CODES and the README's table). `retryable` is set
// where the error happens, so the retry wrapper never has to guess.

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

export interface ErrorOptions {
  cause?: unknown
  retryable?: boolean
  hint?: string
}

export class VdsnapError extends Error {
  readonly kind: ExitKind = 'internal'
  readonly retryable: boolean
  readonly hint?: string

  constructor(message: string, options: ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : {cause: options.cause})
    this.name = new.target.name
    this.retryable = options.retryable ?? false
    this.hint = options.hint
  }

  /** One line for the user: what went wrong, then what to do. */
  oneLine(): string {
    return this.hint ? `${this.message}; ${this.hint}` : this.message
  }
}

/** Bad flags, arguments or combinations of them. */
export class UsageError extends VdsnapError {
  override readonly kind = 'usage'
}

/** Something that needs attention but did not lose data (source changed during read...). */
export class WarningError extends VdsnapError {
  override readonly kind = 'warning'
}

export class LockedError extends VdsnapError {
  override readonly kind = 'locked'
}

export class PasswordError extends VdsnapError {
  override readonly kind = 'password'
}

/** Stored or source data is corrupt, truncated or fails verification. */
export class DataError extends VdsnapError {
  override readonly kind = 'data'
}

/** The disk image or device could not be parsed (corrupt header, loop, absurd size). */
export class ImageFormatError extends DataError {
  constructor(
    readonly path: string,
    message: string,
    options: ErrorOptions = {},
  ) {
    super(`${path}: ${message}`, options)
  }
}

/** Reading or writing failed at the operating system or network level. */
export class IoError extends VdsnapError {
  override readonly kind = 'io'
}

export class NotFoundError extends VdsnapError {
  override readonly kind = 'notFound'
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
      return new NotFoundError(`${prefix}no such file or directory${e.path ? ` (${e.path})` : ''}`, {cause: err})
    case 'ENOSPC':
      return new IoError(`${prefix}no space left on device${e.path ? ` (${e.path})` : ''}`, {
        cause: err,
        hint: 'free space on the target or repository and run again; nothing already stored was lost',
      })
    case 'EACCES':
    case 'EPERM':
      return new IoError(`${prefix}permission denied${e.path ? ` (${e.path})` : ''}`, {cause: err})
    case 'EIO':
    case 'EROFS':
    case 'EDQUOT':
      return new IoError(`${prefix}${e.message}`, {cause: err})
    default:
      return new VdsnapError(`${prefix}${e?.message ?? String(err)}`, {cause: err})
  }
}
