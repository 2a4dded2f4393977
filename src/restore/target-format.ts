// The format a restore writes: --format when given, else what the --to
// name's extension says (.qcow2, .vdi, .vhd, .vhdx, .vmdk; .img and .raw are raw),
// else raw. A --format that contradicts a known extension is refused: a
// file called web.qcow2 holding raw bytes is a trap for whoever boots it.
import {extname} from 'node:path'
import {UsageError} from '../errors.js'

const BY_EXTENSION: Record<string, string> = {
  '.qcow2': 'qcow2',
  '.vdi': 'vdi',
  '.vhd': 'vhd',
  '.vhdx': 'vhdx',
  '.vmdk': 'vmdk',
  '.img': 'raw',
  '.raw': 'raw',
}

export interface TargetFormat {
  format: string
  /** The extension the format was inferred from, when --format was not given. */
  fromExtension?: string
}

export function targetFormat(to: string, given?: string): TargetFormat {
  const ext = to === '-' ? '' : extname(to).toLowerCase()
  const implied = BY_EXTENSION[ext]
  const format = given?.toLowerCase()
  if (format && implied && format !== implied) {
    const stem = to.slice(0, to.length - ext.length)
    const ownExt = Object.entries(BY_EXTENSION).find(([, f]) => f === format)?.[0] ?? `.${format}`
    throw new UsageError(`--format ${format} contradicts the ${ext} extension of ${to} (${implied})`, {
      hint: `leave out --format to write ${implied}, or name the target ${stem}${ownExt}`,
    })
  }
  if (format) return {format}
  return implied ? {format: implied, fromExtension: ext} : {format: 'raw'}
}
