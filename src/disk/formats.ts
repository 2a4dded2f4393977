// The registry of container formats. Each entry detects its format from the
// first PROBE_BYTES of the file and opens it. Order matters only where two
// probes could both match (none do today).
import type {DiskImage, OpenOptions} from './types.js'

export interface FormatEntry {
  name: string
  probe(head: Buffer, path: string): boolean
  open(path: string, options: OpenOptions): Promise<DiskImage>
}

export const FORMATS: FormatEntry[] = []
