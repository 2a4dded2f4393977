// Errors from writing a restore target, in the user's terms: each names the
// path given with --to (never the temporary file written first), says what
// is wrong and what to do, and carries an exit code other than "a bug".
import {dirname} from 'node:path'
import {IoError, NotFoundError, UsageError, VdsnapError, withContext} from '../errors.js'

export type TargetAction = 'creating' | 'writing' | 'replacing' | 'opening' | 'reading'

/**
 * `err` from `action` on the target `path`; `tmp` is the temporary name the
 * data was written under, replaced by `path` wherever a message names it.
 */
export function targetError(err: unknown, path: string, action: TargetAction, tmp?: string): VdsnapError {
  if (err instanceof VdsnapError) {
    // An image writer's wrapped system error: described again from its cause, in the user's terms.
    const cause = err.cause as NodeJS.ErrnoException | undefined
    if (cause?.syscall && cause.code) return targetError(cause, path, action, tmp)
    return tmp && err.message.includes(tmp) ? renamed(err, tmp, path) : err
  }
  const e = err as NodeJS.ErrnoException
  const doing = `${action} ${path}`
  const dir = dirname(path)
  switch (e?.code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return new NotFoundError(`${doing}: directory ${dir} does not exist`, {cause: err, hint: `create it first (mkdir -p ${dir}) or choose another --to`})
    case 'EROFS':
      return new IoError(`${doing}: read-only file system`, {cause: err, hint: 'restore to a writable file system, or remount this one read-write'})
    case 'EPERM':
      return new IoError(`${doing}: operation not permitted`, {
        cause: err,
        hint: `it or its directory may be immutable or append-only (see lsattr -d ${path} ${dir}; chattr -i removes the flag), or need more privileges`,
      })
    case 'EACCES':
      return new IoError(`${doing}: permission denied`, {cause: err, hint: `check the permissions of ${path} and ${dir}, or run as a user who may write there`})
    case 'ENOSPC':
    case 'EDQUOT':
      return new IoError(`${doing}: ${e.code === 'ENOSPC' ? 'no space left on device' : 'disk quota exceeded'}`, {
        cause: err,
        code: 'TARGET_FULL',
        object: path,
        hint: 'free space there or choose another target; the repository is unchanged',
      })
    case 'EFBIG':
      return new IoError(`${doing}: the file system cannot hold a file this large`, {cause: err, hint: 'restore to a file system with larger files (ext4, xfs) or a block device'})
    case 'EISDIR':
      return new UsageError(`${path} is a directory`, {cause: err, hint: 'give a file name inside it with --to'})
    case 'EIO':
      return new IoError(`${doing}: input/output error`, {cause: err, hint: 'the device reported an error: check the kernel log (dmesg)'})
    default:
      return new IoError(`${doing}: ${systemMessage(e, path)}`, {cause: err})
  }
}

/** An errno error's message with the path it names replaced by the user's path. */
function systemMessage(e: NodeJS.ErrnoException | undefined, path: string): string {
  let msg = e?.message ?? String(e)
  for (const p of [e?.path, (e as {dest?: string} | undefined)?.dest]) if (p) msg = msg.split(p).join(path)
  return msg
}

function renamed(err: VdsnapError, tmp: string, path: string): VdsnapError {
  const copy = withContext(err, '')
  copy.message = err.message.split(tmp).join(path)
  return copy
}
