// The read path shared by the VHD and VHDX readers. A format maps a
// virtual offset to an extent: bytes in its file, zeros, or "ask the
// parent". readExtents walks the extents of a request and coalesces
// neighbouring data extents that are contiguous in the file into one large
// file read, so a well-laid-out image is read with few system calls.
// Invariant: extents are never empty and never cross the requested range.
import {ImageFormatError} from '../errors.js'
import type {BoundedFile} from './bounded-file.js'
import type {DiskImage, Range} from './types.js'

export type Extent =
  | {kind: 'data'; length: number; fileOffset: number}
  | {kind: 'zero'; length: number}
  | {kind: 'parent'; length: number}

export interface ExtentMap {
  /** The extent at virtual `offset`, at most `maxLength` bytes (> 0). */
  mapExtent(offset: number, maxLength: number): Promise<Extent>
}

/** Largest single coalesced file read. */
const MAX_COALESCED_READ = 64 * 1024 * 1024

export async function readExtents(
  map: ExtentMap,
  file: BoundedFile,
  parent: DiskImage | undefined,
  virtualSize: number,
  buf: Buffer,
  offset: number,
  length: number,
): Promise<number> {
  if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > virtualSize || length > buf.length) {
    throw new ImageFormatError(file.path, `read of ${length} bytes at ${offset} is past the end (${virtualSize})`)
  }
  let pos = 0
  let run: {bufPos: number; fileOffset: number; length: number} | undefined
  const flush = async () => {
    if (run) await file.readInto(buf, run.bufPos, run.length, run.fileOffset, 'image data')
    run = undefined
  }
  while (pos < length) {
    const ext = await map.mapExtent(offset + pos, length - pos)
    const n = Math.min(ext.length, length - pos)
    if (n <= 0) throw new ImageFormatError(file.path, `internal: empty extent at ${offset + pos}`)
    if (ext.kind === 'data') {
      if (run && run.fileOffset + run.length === ext.fileOffset && run.length + n <= MAX_COALESCED_READ) run.length += n
      else {
        await flush()
        run = {bufPos: pos, fileOffset: ext.fileOffset, length: n}
      }
    } else {
      await flush()
      if (ext.kind === 'zero' || !parent) buf.fill(0, pos, pos + n)
      else await readParent(parent, buf.subarray(pos, pos + n), offset + pos)
    }
    pos += n
  }
  await flush()
  return length
}

/** Reads from the parent; bytes beyond a smaller parent read as zeros. */
async function readParent(parent: DiskImage, dst: Buffer, offset: number): Promise<void> {
  const inParent = Math.max(0, Math.min(dst.length, parent.virtualSize - offset))
  if (inParent > 0) await parent.read(dst, offset, inParent)
  if (inParent < dst.length) dst.fill(0, inParent)
}

/** Appends a range, merging with the last one when adjacent. */
export function pushRange(out: Range[], offset: number, length: number): void {
  if (length <= 0) return
  const last = out[out.length - 1]
  if (last && last.offset + last.length === offset) last.length += length
  else out.push({offset, length})
}
