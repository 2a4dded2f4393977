// Registry entry for VirtualBox VDI: detected by the signature at byte 64
// (the banner text before it varies by VirtualBox version and is ignored).
import type {FormatEntry} from './types.js'
import {isVdiHead} from './vdi-header.js'
import {VdiImage} from './vdi-reader.js'
import {VdiWriter} from './vdi-writer.js'

export const VDI_FORMAT: FormatEntry = {
  name: 'vdi',
  probe: (head) => isVdiHead(head),
  open: (path, options) => VdiImage.open(path, options),
  create: (path, virtualSize, options) => VdiWriter.create(path, virtualSize, options),
}
