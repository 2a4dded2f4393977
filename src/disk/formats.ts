// The registry of container formats. Each entry detects its format from the
// first PROBE_BYTES of the file and opens it; formats vdsnap can write also
// create an ImageWriter. Order matters only where two probes could both
// match (none do today).
import type {FormatEntry} from './types.js'
import {qcow2Format} from './qcow2-format.js'
import {vmdkFormat} from './vmdk-format.js'
import {VHD_FORMAT} from './vhd-format.js'
import {VHDX_FORMAT} from './vhdx-format.js'
import {VDI_FORMAT} from './vdi-format.js'

// The entry types live in types.ts, so the format modules can name them
// without importing this registry, which imports them (a cycle).
export type {CreateOptions, FormatEntry} from './types.js'

export const FORMATS: FormatEntry[] = []
FORMATS.push(qcow2Format)
FORMATS.push(vmdkFormat)

// VHD (qemu's "vpc") and VHDX readers and writers.
FORMATS.push(VHD_FORMAT, VHDX_FORMAT)

// VirtualBox VDI reader and writer.
FORMATS.push(VDI_FORMAT)
