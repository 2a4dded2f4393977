// The VMDK entry of the format registry: detection (sparse magic or a text
// descriptor), the native reader, and the monolithicSparse /
// streamOptimized writer.
import type {CreateOptions, FormatEntry} from './types.js'
import {looksLikeDescriptor} from './vmdk-descriptor.js'
import {VmdkImage} from './vmdk-reader.js'
import {isSeSparseHead} from './vmdk-sesparse.js'
import {SPARSE_MAGIC} from './vmdk-sparse.js'
import {VmdkWriter} from './vmdk-writer.js'

export const vmdkFormat: FormatEntry = {
  name: 'vmdk',
  // A bare seSparse extent is claimed too, so it is refused with a pointer to its descriptor instead of read as raw.
  probe: (head: Buffer) => (head.length >= 4 && head.readUInt32LE(0) === SPARSE_MAGIC) || looksLikeDescriptor(head) || isSeSparseHead(head),
  open: (path, options) => VmdkImage.open(path, options),
  create: (path: string, virtualSize: number, options: CreateOptions) => VmdkWriter.create(path, virtualSize, options.subformat),
}
