// Registry entry for VHDX: recognised by the "vhdxfile" identifier at offset 0.
import type {FormatEntry} from './types.js'
import {VhdxImage} from './vhdx-reader.js'
import {FILE_SIGNATURE} from './vhdx-structures.js'
import {createVhdxWriter} from './vhdx-writer.js'

export const VHDX_FORMAT: FormatEntry = {
  name: 'vhdx',
  probe: (head) => head.toString('latin1', 0, 8) === FILE_SIGNATURE,
  open: (path, options) => VhdxImage.open(path, options),
  create: (path, virtualSize, options) => createVhdxWriter(path, virtualSize, options),
}
