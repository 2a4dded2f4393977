// The contract every disk image reader fulfils. A reader presents the
// *virtual* disk as the guest sees it: reads at any offset return guest
// bytes (zeros where nothing is allocated), whatever the container format.
// disk/ knows nothing about repositories.

/** A byte range of the virtual disk. */
export interface Range {
  offset: number
  length: number
}

export interface ImageSnapshotInfo {
  id: string
  name: string
  virtualSize?: number
  date?: string
}

export interface ImageInfo {
  path: string
  format: string
  /** Subformat, e.g. "dynamic", "monolithicSparse", "v3". */
  subformat?: string
  virtualSize: number
  /** Bytes the image maps to data (allocated ranges, including backing layers). */
  allocatedBytes: number
  /** Cluster / grain / block size of the container, when it has one. */
  clusterSize?: number
  logicalSectorSize?: number
  /** Backing / parent chain, nearest first (paths as resolved). */
  parents: string[]
  snapshots: ImageSnapshotInfo[]
  /** File size of this image (and its extents) on disk. */
  fileSize?: number
}

export interface DiskImage {
  readonly path: string
  readonly format: string
  readonly virtualSize: number
  /**
   * The image's stable identity where its format has one that survives
   * writes ("vhd:<unique id>", "vhdx:<VirtualDiskId>"); undefined otherwise
   * (raw, qcow2, and VMDK, whose CID changes on every write). A backup
   * compares it with the disk's previous snapshot to catch a swapped image.
   */
  readonly identity?: string
  /**
   * Sorted, non-overlapping ranges that may hold non-zero data, across the
   * whole chain. Everything outside reads as zeros and need not be read.
   */
  allocatedRanges(): Promise<Range[]>
  /**
   * For overlays / differencing images: the ranges this top layer holds
   * itself (written since its parent was created). Undefined when the image
   * has no parent.
   */
  overlayRanges?(): Promise<Range[]>
  /** The parent (backing) image, opened, if any. */
  readonly parent?: DiskImage
  /**
   * Fills `buf[0..length)` with the virtual disk's bytes at `offset`.
   * Reads past the virtual size are an error. Returns `length`.
   */
  read(buf: Buffer, offset: number, length?: number): Promise<number>
  info(): Promise<ImageInfo>
  /**
   * Sources read once (a stream): called after the last read, confirms the
   * source ended exactly at the virtual size and its producer succeeded.
   */
  endOfRead?(): Promise<void>
  close(): Promise<void>
}

/** Writes a virtual disk into an image file. Blocks arrive in ascending offset order. */
export interface ImageWriter {
  readonly format: string
  /** Writes `data` (a whole number of sectors, or the disk's tail) at `offset`. Zero blocks are simply not written. */
  write(offset: number, data: Buffer): Promise<void>
  /** Writes metadata, flushes and closes. */
  close(): Promise<void>
  /** Closes and removes a partial output after a failure. */
  abort(): Promise<void>
}

export interface OpenOptions {
  /** Force a format instead of detecting it from the content. */
  format?: string
  /** Read an internal snapshot (qcow2) instead of the active layer. */
  imageSnapshot?: string
  /** NBD sources: also ask the server for this QEMU dirty bitmap (qemu:dirty-bitmap:NAME). */
  bitmap?: string
}

/** Merges and sorts ranges; adjacent ranges are joined. */
export function normalizeRanges(ranges: Range[]): Range[] {
  const sorted = ranges.filter((r) => r.length > 0).sort((a, b) => a.offset - b.offset)
  const out: Range[] = []
  for (const r of sorted) {
    const last = out[out.length - 1]
    if (last && r.offset <= last.offset + last.length) {
      last.length = Math.max(last.length, r.offset + r.length - last.offset)
    } else {
      out.push({offset: r.offset, length: r.length})
    }
  }
  return out
}

/** Options of a format's create (the registry in formats.ts). */
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
