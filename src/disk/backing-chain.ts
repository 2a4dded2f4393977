// Parent chains of layered images: qcow2 backing files, VMDK delta disks,
// VHD and VHDX differencing disks. Invariants, for every format:
//  - relative names resolve against the child's directory;
//  - a chain may be at most MAX_CHAIN_DEPTH images deep;
//  - an image that appears twice in one chain (a loop) is refused;
//  - a missing parent is refused with an error naming it.
// The chain state (real paths of the images above) rides along in the open
// options, so it crosses the format registry (openImage) unchanged and a
// format's opener passes it on without knowing about the other formats.
// Name resolution differs by origin: qcow2 and VMDK store POSIX names
// (openBacking, qemu's rule); VHD and VHDX store paths from Windows or
// macOS hosts (findParent: backslashes become slashes, and an absolute path
// that does not exist here is retried as its file name next to the child).
import {realpath, stat} from 'node:fs/promises'
import {basename, dirname, isAbsolute, resolve} from 'node:path'
import {ImageFormatError, VdsnapError} from '../errors.js'
import {FORMATS} from './formats.js'
import {openImage} from './open.js'
import {normalizeRanges, type DiskImage, type ImageInfo, type OpenOptions, type Range} from './types.js'

/** Deepest chain we open; deeper chains are refused as corrupt or looping. */
export const MAX_CHAIN_DEPTH = 64

/** Open options plus the real paths of the images above this one in its chain. */
export interface ChainOpenOptions extends OpenOptions {
  chainAbove?: string[]
}

/**
 * Registers `path` in the chain before an opener opens its parent; throws on
 * a loop or a too deep chain. Returns the chain to pass to the parent.
 */
export async function enterChain(path: string, options: ChainOpenOptions): Promise<string[]> {
  const real = await realpath(path).catch(() => resolve(path))
  const above = options.chainAbove ?? []
  if (above.includes(real)) throw new ImageFormatError(path, 'backing chain loops back to this image')
  if (above.length >= MAX_CHAIN_DEPTH) {
    throw new ImageFormatError(path, `backing chain is deeper than ${MAX_CHAIN_DEPTH} images`)
  }
  return [...above, real]
}

/**
 * Opens `name` (a qcow2 backing file or VMDK parent) as the parent of the
 * image at `childPath`. `format` forces a format (from a qcow2
 * backing-format extension) when given.
 */
export async function openBacking(
  childPath: string,
  name: string,
  chain: string[],
  format?: string,
): Promise<DiskImage> {
  const resolved = isAbsolute(name) ? name : resolve(dirname(childPath), name)
  const st = await stat(resolved).catch(() => undefined)
  if (!st) throw new ImageFormatError(childPath, `backing file "${name}" not found (looked for ${resolved})`)
  const real = await realpath(resolved)
  if (chain.includes(real)) throw new ImageFormatError(childPath, `backing chain loops: "${name}" is already in the chain`)
  if (chain.length >= MAX_CHAIN_DEPTH) {
    throw new ImageFormatError(childPath, `backing chain is deeper than ${MAX_CHAIN_DEPTH} images`)
  }
  const options: ChainOpenOptions = {chainAbove: chain}
  // A format name we do not know (qemu's "vpc", say) is left to detection.
  if (format && (format === 'raw' || FORMATS.some((f) => f.name === format))) options.format = format
  try {
    return await openImage(resolved, options)
  } catch (e) {
    if (e instanceof VdsnapError) throw e
    throw new ImageFormatError(childPath, `opening backing file "${name}" failed: ${(e as Error).message}`, {cause: e})
  }
}

/** Paths of the images below `img` in its chain, nearest first (ImageInfo.parents). */
export function chainPaths(img: DiskImage): string[] {
  const out: string[] = []
  for (let p = img.parent; p; p = p.parent) out.push(p.path)
  return out
}

/**
 * What a layered image maps across its chain: its own data, plus the
 * parent's ranges (clipped to this image's size) that this layer does not
 * hide with zeros. Without a parent, its own data alone.
 */
export async function chainAllocatedRanges(img: DiskImage, own: Range[], zero: Range[] = []): Promise<Range[]> {
  if (!img.parent) return own
  const below = subtractRanges(clipRanges(await img.parent.allocatedRanges(), img.virtualSize), zero)
  return normalizeRanges([...own, ...below])
}

/** The fields of ImageInfo a format decides itself; the rest is the same for every layered format. */
export type LayerDetails = Pick<ImageInfo, 'subformat' | 'clusterSize' | 'logicalSectorSize' | 'fileSize'> & Partial<Pick<ImageInfo, 'snapshots'>>

/** ImageInfo of a layered image: allocated bytes across the chain and its parents' paths. */
export async function layeredInfo(img: DiskImage, d: LayerDetails): Promise<ImageInfo> {
  const ranges = await img.allocatedRanges()
  return {
    path: img.path,
    format: img.format,
    subformat: d.subformat,
    virtualSize: img.virtualSize,
    allocatedBytes: ranges.reduce((s, r) => s + r.length, 0),
    clusterSize: d.clusterSize,
    logicalSectorSize: d.logicalSectorSize,
    parents: chainPaths(img),
    snapshots: d.snapshots ?? [],
    fileSize: d.fileSize,
  }
}

/** Local candidates for one stored parent path, most specific first. */
export function parentCandidates(childPath: string, stored: string): string[] {
  let p = stored.replace(/\0+$/, '').trim()
  if (!p) return []
  if (p.startsWith('file://')) {
    p = decodeURIComponent(p.slice('file://'.length).replace(/^localhost/, ''))
  }
  const slashed = p.replace(/\\/g, '/')
  const childDir = dirname(childPath)
  const windowsAbsolute = /^[A-Za-z]:\//.test(slashed) || slashed.startsWith('//')
  const out: string[] = []
  if (windowsAbsolute) out.push(resolve(childDir, basename(slashed)))
  else if (isAbsolute(slashed)) out.push(slashed, resolve(childDir, basename(slashed)))
  else out.push(resolve(childDir, slashed), resolve(childDir, basename(slashed)))
  return out
}

/**
 * The first existing file among the candidates of all stored paths.
 * Throws an ImageFormatError naming the parent when none exists.
 */
export async function findParent(childPath: string, stored: string[]): Promise<string> {
  const tried: string[] = []
  for (const s of stored) {
    for (const c of parentCandidates(childPath, s)) {
      if (tried.includes(c)) continue
      tried.push(c)
      try {
        if ((await stat(c)).isFile()) return c
      } catch {
        // try the next candidate
      }
    }
  }
  if (tried.length === 0) throw new ImageFormatError(childPath, 'differencing image names no parent file')
  throw new ImageFormatError(childPath, `parent image ${stored.find((s) => s.trim()) ?? tried[0]} not found (looked for ${tried.join(', ')})`)
}

/** Decodes UTF-16 text up to the first NUL. */
export function decodeUtf16(buf: Buffer, bigEndian: boolean): string {
  const copy = Buffer.from(buf.subarray(0, buf.length & ~1))
  if (bigEndian) copy.swap16()
  const s = copy.toString('utf16le')
  const nul = s.indexOf('\0')
  return nul >= 0 ? s.slice(0, nul) : s
}

/** Ranges minus other ranges; both sorted and non-overlapping. */
export function subtractRanges(
  from: {offset: number; length: number}[],
  minus: {offset: number; length: number}[],
): {offset: number; length: number}[] {
  const out: {offset: number; length: number}[] = []
  let j = 0
  for (const r of from) {
    let start = r.offset
    const end = r.offset + r.length
    while (j < minus.length && minus[j]!.offset + minus[j]!.length <= start) j++
    let k = j
    while (k < minus.length && minus[k]!.offset < end) {
      const m = minus[k]!
      if (m.offset > start) out.push({offset: start, length: m.offset - start})
      start = Math.max(start, m.offset + m.length)
      k++
    }
    if (start < end) out.push({offset: start, length: end - start})
  }
  return out
}

/** Clips sorted ranges to [0, size). */
export function clipRanges(ranges: {offset: number; length: number}[], size: number): {offset: number; length: number}[] {
  const out: {offset: number; length: number}[] = []
  for (const r of ranges) {
    if (r.offset >= size) break
    out.push({offset: r.offset, length: Math.min(r.length, size - r.offset)})
  }
  return out
}
