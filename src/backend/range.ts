// Ranged reads: the one rule every backend applies to load(name, range).
// A range must lie inside the object. Reading past its end is not a short
// read but an error: every caller asks for bytes the repository recorded
// (a chunk inside a pack, a pack's tail), so an object shorter than that is
// damaged or the reference to it is wrong, and a silent short buffer would
// only move the failure somewhere harder to explain.
import {DataError, VdsnapError} from '../errors.js'
import type {ByteRange} from './types.js'

/** A ranged load asked for bytes beyond the end of the object. Permanent (retrying reads the same object). */
export class ObjectRangeError extends DataError {
  declare readonly object: string

  constructor(
    object: string,
    location: string,
    readonly range: ByteRange,
    readonly size: number,
  ) {
    super(`reading ${describeRange(range)} of ${object} (${location}): the object has only ${size} bytes`, {
      hint: 'the object is truncated or the reference to it is wrong; run vdsnap check',
      code: 'OBJECT_RANGE',
      object,
      offset: range.offset,
    })
  }
}

/** "bytes 10-19" (inclusive, as HTTP writes it), or "0 bytes at 10". */
export function describeRange(range: ByteRange): string {
  return range.length === 0 ? `0 bytes at ${range.offset}` : `bytes ${range.offset}-${range.offset + range.length - 1}`
}

/** Rejects offsets and lengths that are not non-negative safe integers: a caller bug, not data damage. */
export function validateRange(name: string, range: ByteRange): void {
  const ok = (n: number) => Number.isSafeInteger(n) && n >= 0
  if (!ok(range.offset) || !ok(range.length) || !Number.isSafeInteger(range.offset + range.length)) {
    throw new VdsnapError(`reading ${name}: invalid byte range offset ${range.offset} length ${range.length}`)
  }
}

/** Throws ObjectRangeError unless [offset, offset + length) lies inside an object of `size` bytes. */
export function checkRangeInside(name: string, location: string, range: ByteRange, size: number): void {
  if (range.offset + range.length > size) throw new ObjectRangeError(name, location, range, size)
}
