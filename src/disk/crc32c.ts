// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as VHDX uses for
// its headers, region tables and log entries. Node's zlib.crc32
// is plain CRC-32 (a different polynomial), so we keep a small
// slicing-by-1 table here. Invariant: crc32c(b) === crc32c over b with the
// usual init/final XOR of 0xFFFFFFFF; the result is an unsigned 32-bit number.

const CASTAGNOLI_REFLECTED = 0x82f63b78 // never change

const TABLE = (() => {
  const t = new Uint32Array(256)
  for (let i = 0; i < 256; i++) {
    let c = i
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ CASTAGNOLI_REFLECTED : c >>> 1
    t[i] = c >>> 0
  }
  return t
})()

/** CRC-32C of `buf`. */
export function crc32c(buf: Uint8Array): number {
  let c = 0xffffffff
  for (let i = 0; i < buf.length; i++) c = TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

/** CRC-32C of `buf` computed as if its 4 bytes at `fieldOffset` were zero (the stored checksum). */
export function crc32cWithZeroedField(buf: Buffer, fieldOffset: number): number {
  const copy = Buffer.from(buf)
  copy.writeUInt32LE(0, fieldOffset)
  return crc32c(copy)
}
