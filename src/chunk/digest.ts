// Chunk ids: SHA-256 of the plaintext block, or HMAC-SHA-256 under the
// repository's id key when it is encrypted (so ids say nothing about
// content to someone without the key). The all-zero id is reserved for
// "this block is all zeros" and is never the id of a stored chunk.
import {createHash, createHmac} from 'node:crypto'

export const DIGEST_SIZE = 32
export const ZERO_ID = Buffer.alloc(DIGEST_SIZE) // never change

export function chunkDigest(data: Uint8Array, idKey?: Uint8Array): Buffer {
  return idKey ? createHmac('sha256', idKey).update(data).digest() : createHash('sha256').update(data).digest()
}

export function isZeroId(id: Uint8Array): boolean {
  return ZERO_ID.equals(id)
}

const zeroPages = new Map<number, Buffer>()

/** True when every byte of `data` is zero; uses memcmp against a shared zero buffer. */
export function isAllZero(data: Buffer): boolean {
  const n = data.length
  let zero = zeroPages.get(n)
  if (!zero) {
    zero = Buffer.alloc(n)
    if (zeroPages.size < 8) zeroPages.set(n, zero)
  }
  return data.equals(zero)
}
