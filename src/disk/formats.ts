// The registry of container formats. Each entry detects its format from the
// first PROBE_BYTES of the file and opens it; formats vdsnap can write also
// create an ImageWriter. Order matters only where two probes could both
// match (none do today).
import type {DiskImage, ImageWriter, OpenOptions} from './types.js'
import {qcow2Format} from './qcow2-format.js'
import {vmdkFormat} from './vmdk-format.js'
import {VHD_FORMAT} from './vhd-format.js'
import {VHDX_FORMAT} from './vhdx-format.js'
import {VDI_FORMAT} from './vdi-format.js'

export interface CreateOptions {
  /** e.g. "monolithicSparse" or "streamOptimized" for VMDK, "dynamic" or "fixed" for VHD/VHDX/VDI. */
  subformat?: string
}

export interface FormatEntry {
  name: string
  probe(head: Buffer, path: string): boolean
  open(path: string, options: OpenOptions): Promise<DiskImage>
  /** Whether the format has internal snapshots that OpenOptions.imageSnapshot can select. */
  internalSnapshots?: boolean
  create?(path: string, virtualSize: number, options: CreateOptions): Promise<ImageWriter>
}

export const FORMATS: FormatEntry[] = []
FORMATS.push(qcow2Format)
FORMATS.push(vmdkFormat)

// VHD (qemu's "vpc") and VHDX readers and writers.
FORMATS.push(VHD_FORMAT, VHDX_FORMAT)

// VirtualBox VDI reader and writer.
FORMATS.push(VDI_FORMAT)
