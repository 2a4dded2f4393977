// Opens the backing (qcow2) or parent (VMDK) image of a layered image.
// Invariants: relative names resolve against the child's directory; a
// chain may be at most MAX_CHAIN_DEPTH images deep; an image that appears
// twice in one chain (a loop) is refused; a missing parent is refused with
// an error naming it. The chain state rides along in the open options so
// every format's opener passes it on without knowing about it.
import {realpath, stat} from 'node:fs/promises'
import {dirname, isAbsolute, resolve} from 'node:path'
import {ImageFormatError, VdsnapError} from '../errors.js'
import {FORMATS} from './formats.js'
import {openImage} from './open.js'
import type {DiskImage, OpenOptions} from './types.js'

export const MAX_CHAIN_DEPTH = 64

/** Open options plus the real paths of the images above this one in its chain. */
export interface ChainOpenOptions extends OpenOptions {
  chainAbove?: string[]
}

/** Real path of `path`, recorded by an opener before it opens its parent. */
export async function chainStateFor(path: string, options: ChainOpenOptions): Promise<string[]> {
  const real = await realpath(path).catch(() => resolve(path))
  const above = options.chainAbove ?? []
  if (above.includes(real)) throw new ImageFormatError(path, 'backing chain loops back to this image')
  if (above.length >= MAX_CHAIN_DEPTH) {
    throw new ImageFormatError(path, `backing chain is deeper than ${MAX_CHAIN_DEPTH} images`)
  }
  return [...above, real]
}

/**
 * Opens `name` as the parent of the image at `childPath`. `format` forces a
 * format (from a qcow2 backing-format extension) when given.
 */
export async function openParent(
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
