// Parent (differencing) chains for VHD and VHDX: turning the paths a child
// stores into a file on this machine, and refusing loops and deep chains.
// Stored paths come from Windows or macOS hosts: backslashes become
// slashes, relative paths resolve against the child's directory, and an
// absolute path that does not exist here (a drive letter, another host's
// mount) is retried as its file name next to the child.
import {realpath, stat} from 'node:fs/promises'
import {basename, dirname, isAbsolute, resolve} from 'node:path'
import {ImageFormatError} from '../errors.js'

/** Deepest chain we open; deeper chains are refused as corrupt or looping. */
export const MAX_CHAIN_DEPTH = 64

/** Threaded through parent opens to detect loops and absurd depth. */
export interface ChainContext {
  depth: number
  /** Real paths of the images already open in this chain. */
  visited: Set<string>
}

export function rootChain(): ChainContext {
  return {depth: 0, visited: new Set()}
}

/** Registers `path` in the chain; throws on a loop or a too deep chain. */
export async function enterChain(ctx: ChainContext, path: string): Promise<ChainContext> {
  let real = path
  try {
    real = await realpath(path)
  } catch {
    // the open that follows reports a missing file with its own message
  }
  if (ctx.visited.has(real)) throw new ImageFormatError(path, 'parent chain loops back to this image')
  if (ctx.depth >= MAX_CHAIN_DEPTH) throw new ImageFormatError(path, `parent chain is deeper than ${MAX_CHAIN_DEPTH} images`)
  return {depth: ctx.depth + 1, visited: new Set([...ctx.visited, real])}
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
