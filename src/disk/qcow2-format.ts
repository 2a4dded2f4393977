// The qcow2 entry of the format registry: detection by magic and version,
// the native reader, and the v3 writer.
import type {CreateOptions, FormatEntry} from './formats.js'
import {QCOW2_MAGIC} from './qcow2-header.js'
import {Qcow2Image} from './qcow2-reader.js'
import {Qcow2Writer} from './qcow2-writer.js'

export const qcow2Format: FormatEntry = {
  name: 'qcow2',
  probe: (head: Buffer) => head.length >= 8 && head.readUInt32BE(0) === QCOW2_MAGIC && [2, 3].includes(head.readUInt32BE(4)),
  open: (path, options) => Qcow2Image.open(path, options),
  create: (path: string, virtualSize: number, _options: CreateOptions) => Qcow2Writer.create(path, virtualSize),
}
