// The errors of taking a lock: another process holds one (LockedError,
// naming it), or our lock file cannot be written (LockWriteError, saying
// whether the file system is read-only or full, so the command can tell the
// user how to proceed).
import {IoError, LockedError} from '../errors.js'
import type {Backend} from '../backend/types.js'
import {describeHolder, type LockInfo} from './lock-info.js'

/**
 * The lock file could not be written: a read-only (EROFS, EACCES, EPERM) or
 * full (ENOSPC, EDQUOT) file system. `reason` tells which, so the command can
 * say how to proceed (--no-lock, freeing space...).
 */
export class LockWriteError extends IoError {
  constructor(
    readonly location: string,
    readonly reason: 'readOnly' | 'noSpace',
    readonly detail: string,
    options: {cause?: unknown; hint?: string} = {},
  ) {
    super(`cannot write a lock file in ${location}: ${detail}`, {code: 'LOCK_WRITE', object: location, ...options})
  }
}

/** The errno code of an error or of the error it wraps (backends add context with `cause`). */
function errnoOf(e: unknown): string | undefined {
  for (let c = e, depth = 0; c && depth < 5; c = (c as {cause?: unknown}).cause, depth++) {
    const code = (c as NodeJS.ErrnoException).code
    if (typeof code === 'string' && code.startsWith('E')) return code
  }
  return undefined
}

export function lockWriteError(location: string, e: unknown): unknown {
  const code = errnoOf(e)
  if (code === 'EROFS' || code === 'EACCES' || code === 'EPERM') {
    const detail = code === 'EROFS' ? 'its file system is mounted read-only' : 'permission denied (read-only or write-once storage?)'
    return new LockWriteError(location, 'readOnly', detail, {cause: e})
  }
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new LockWriteError(location, 'noSpace', code === 'EDQUOT' ? 'the disk quota is used up' : 'no space left on its file system', {
      cause: e,
      hint: 'free a few KiB on that file system and run the command again',
    })
  }
  return e
}

export function lockedError(backend: Backend, holder: LockInfo): LockedError {
  return new LockedError(
    `repository ${backend.location} is locked ${holder.exclusive ? 'exclusively ' : ''}by ${describeHolder(holder)}`,
    {hint: 'wait for it to finish, raise --lock-wait, or run "vdsnap unlock" if that process is gone'},
  )
}
