// The qcow2 entry of the format registry: detection by magic and version,
// the native reader, and the v3 writer.
import {UsageError} from '../errors.js'
import type {CreateOptions, FormatEntry} from './types.js'
import {QCOW2_MAGIC} from './qcow2-header.js'
import {Qcow2Image} from './qcow2-reader.js'
import {Qcow2Writer} from './qcow2-writer.js'

export const qcow2Format: FormatEntry = {
  name: 'qcow2',
  probe: (head: Buffer) => head.length >= 8 && head.readUInt32BE(0) === QCOW2_MAGIC && [2, 3].includes(head.readUInt32BE(4)),
  open: (path, options) => Qcow2Image.open(path, options),
  internalSnapshots: true,
  create: async (path: string, virtualSize: number, options: CreateOptions) => {
    // One subformat is written: v3 (compat=1.1). Anything else must not be silently ignored.
    if (options.subformat !== undefined && options.subformat !== 'v3') {
      throw new UsageError(`qcow2 subformat "${options.subformat}" cannot be written`, {hint: 'vdsnap writes qcow2 v3: leave out --subformat'})
    }
    return Qcow2Writer.create(path, virtualSize)
  },
}
