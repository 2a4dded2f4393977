// Snapshot manifests: JSON, wrapped in an object envelope (encrypted when
// the repository is) and stored at snapshots/<id>. A manifest is written
// last, after its chunks and its index, so a visible snapshot never points
// at missing data.

export interface LayerFacts {
  path: string
  size: number
  mtimeMs: number
}

export interface SourceFacts {
  path: string
  format: string
  size: number
  mtimeMs: number
  /** The image's layers, top first (itself, then its backing files / parents). */
  layers?: LayerFacts[]
  /** What narrowed the blocks read: a --changed-blocks file, the overlay's own ranges or an NBD server's dirty bitmap. */
  changeSource?: 'changed-blocks' | 'overlay' | 'bitmap'
  /**
   * NBD sources read with --bitmap: the QEMU dirty bitmap the server exported
   * when this snapshot was taken. The next --bitmap run trusts the bitmap
   * only when its parent recorded the same export and bitmap name.
   */
  bitmap?: {export: string; name: string}
  /**
   * The image's stable identity where its format has one ("vhd:<unique id>",
   * "vhdx:<VirtualDiskId>"); absent for other formats and in manifests
   * written before it was recorded (then there is nothing to compare).
   */
  identity?: string
}

export interface SnapshotStats {
  /** Bytes of the virtual disk that were read (candidates). */
  bytesRead: number
  /** Bytes of blocks that differ from the parent. */
  bytesChanged: number
  /** Plaintext bytes of chunks new to the repository. */
  bytesNew: number
  /** Bytes written to storage for new chunks (after compression/encryption). */
  bytesStored: number
  blocksChanged: number
  blocksNew: number
  /** Non-zero blocks in the resolved snapshot. */
  blocksUsed: number
  durationMs: number
}

export interface Manifest {
  version: 1
  id: string
  disk: string
  time: string
  parent: string | null
  index: string
  indexKind: 'full' | 'delta'
  /** Number of delta indexes between this snapshot and its nearest full index (0 when full). */
  chainLength: number
  blockSize: number
  virtualSize: number
  source: SourceFacts
  tags: string[]
  hostname: string
  stats: SnapshotStats
  warnings?: string[]
}

export function shortId(id: string): string {
  return id.slice(0, 8)
}
