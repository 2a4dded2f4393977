// Where a regular file holds data. Linux reports holes through
// lseek(SEEK_DATA/SEEK_HOLE); Node has no binding for it, so we ask the
// optional native helper (native/seek.c) when it was built, and otherwise
// report the whole file: zero detection then keeps holes out of the
// repository, at the cost of reading them.
import {createRequire} from 'node:module'

interface SeekBinding {
  dataRanges(fd: number, size: number): number[]
}

let binding: SeekBinding | null | undefined

function loadBinding(): SeekBinding | null {
  if (binding !== undefined) return binding
  try {
    const require = createRequire(import.meta.url)
    binding = require('../../../build/Release/vdsnap_seek.node') as SeekBinding
  } catch {
    try {
      const require = createRequire(import.meta.url)
      binding = require('../../build/Release/vdsnap_seek.node') as SeekBinding
    } catch {
      binding = null
    }
  }
  return binding
}

export function hasHoleMap(): boolean {
  return loadBinding() !== null
}

/** Sorted data ranges of the file open as `fd`, `size` bytes long. */
export function dataRanges(fd: number, size: number): {offset: number; length: number}[] {
  const b = loadBinding()
  if (!b) return size > 0 ? [{offset: 0, length: size}] : []
  const flat = b.dataRanges(fd, size)
  const out: {offset: number; length: number}[] = []
  for (let i = 0; i + 1 < flat.length; i += 2) out.push({offset: flat[i]!, length: flat[i + 1]!})
  return out
}
