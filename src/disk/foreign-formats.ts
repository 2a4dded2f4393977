// Signatures of disk image formats vdsnap does not read. Without this list
// such an image falls through to raw and is stored as its container bytes,
// with the wrong disk size and an unusable restore. Each entry is magic
// bytes at a fixed offset of the head (or of the file's last 512 bytes), so
// the check costs nothing beyond the probe read; each also checks a second
// field (a version or signature word) so that a real raw disk is never
// refused by chance: an MBR, a GPT, ext4 or NTFS start with other bytes.
// LUKS ("LUKS\xba\xbe") is deliberately absent: a LUKS volume is a raw disk
// to a backup. When vdsnap learns to read one of these formats, its entry
// leaves this list (the one place that names them).
// Offsets and values are fixed by the formats: never change them.

export interface ForeignFormat {
  /** What the user is told was found. */
  name: string
  /** Matches the first bytes of the file, or the last 512 (`tail`, absent for short files and devices). */
  match(head: Buffer, tail: Buffer | undefined): boolean
}

const ascii = (b: Buffer, at: number, text: string): boolean => b.length >= at + text.length && b.toString('latin1', at, at + text.length) === text
const u32le = (b: Buffer, at: number): number | undefined => (b.length >= at + 4 ? b.readUInt32LE(at) : undefined)
const u32be = (b: Buffer, at: number): number | undefined => (b.length >= at + 4 ? b.readUInt32BE(at) : undefined)

/** Parallels: "WithoutFreeSpace" (v1) or "WithouFreSpacExt" (v2 >2 TiB), then version 2 (LE). */
const PARALLELS_VERSION = 2
/** Apple UDIF: the "koly" trailer in the last 512 bytes, version 4, header size 512 (BE). */
const DMG_TRAILER_BYTES = 512

export const FOREIGN_FORMATS: ForeignFormat[] = [
  {name: 'Parallels', match: (h) => (ascii(h, 0, 'WithoutFreeSpace') || ascii(h, 0, 'WithouFreSpacExt')) && u32le(h, 16) === PARALLELS_VERSION},
  {name: 'qcow version 1', match: (h) => ascii(h, 0, 'QFI\xfb') && u32be(h, 4) === 1},
  {name: 'QED', match: (h) => ascii(h, 0, 'QED\0') && (u32le(h, 4) ?? 0) >= 512},
  {name: 'Proxmox VMA', match: (h) => ascii(h, 0, 'VMA\0') && u32be(h, 4) === 1},
  {name: 'Bochs', match: (h) => ascii(h, 0, 'Bochs Virtual HD Image\0')},
  {name: 'cloop', match: (h) => ascii(h, 0, '#!/bin/sh\n#V2.0 Format\n')},
  {name: 'Apple DMG', match: (_h, t) => t !== undefined && ascii(t, 0, 'koly') && u32be(t, 4) === 4 && u32be(t, 8) === DMG_TRAILER_BYTES},
]

export const FOREIGN_TAIL_BYTES = DMG_TRAILER_BYTES

/** The name of the foreign format these bytes carry, or null. */
export function detectForeignFormat(head: Buffer, tail: Buffer | undefined): string | null {
  return FOREIGN_FORMATS.find((f) => f.match(head, tail))?.name ?? null
}
