// What a vdsnap archive holds and in which order (docs/FORMAT.md, "Archives").
// Entry names reuse the repository's object names, so a chunk archive
// unpacked with any unzip tool is a one-snapshot vdsnap repository.
//
//   manifest.json          what the archive holds (ArchiveManifest), readable
//   README.txt             plain words: what this is, how to restore it
//   config                 the repository config (chunks archives)
//   keys/<slot>            key slots (encrypted chunks archives)
//   snapshots/<id>         the snapshot's manifest object, made a full
//   indexes/<id>           the resolved full index object
//   chunks/<aa>/<id>       every chunk the snapshot uses, once, as stored,
//                          in the order of first use by offset
//   <disk>.raw             portable archives instead of the five above
//   SHA256SUMS             "<sha256 of the disk image>  <disk>.raw": last,
//                          because the hash is known only once the image
//                          has streamed by (the writer never seeks back)
import {DataError} from '../errors.js'

export const ARCHIVE_FORMAT = 1 // bump on any incompatible change
export const MANIFEST_NAME = 'manifest.json'
export const README_NAME = 'README.txt'
export const SUMS_NAME = 'SHA256SUMS'
/** Last entry of the last volume of a split archive: the number of volumes. */
export const VOLUMES_NAME = 'VOLUMES'

export interface ArchiveManifest {
  vdsnapArchive: number
  vdsnapVersion: string
  kind: 'chunks' | 'portable'
  disk: string
  snapshot: string
  time: string
  virtualSize: number
  blockSize: number
  blockCount: number
  chunkCount: number
  /** The name of the disk image entry (portable) or of the image the chunks make up. */
  image: string
  imageSha256: string
  encryption: 'aes-256-gcm' | 'none'
  /** Object names of the snapshot and its index inside the archive (chunks archives). */
  snapshotObject?: string
  indexObject?: string
  source: string
  tags: string[]
  /** Random, the same in every volume of one export: tells volumes of different archives apart. */
  archiveId?: string
  /** Split archives: this volume's number, from 1. */
  volume?: number
}

/** The image entry's name: the disk name made safe for a file name. */
export function imageName(disk: string): string {
  const safe = disk.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^\.+/, '') || 'disk'
  return `${safe}.raw`
}

export function chunkEntryName(idHex: string): string {
  return `chunks/${idHex.slice(0, 2)}/${idHex}`
}

export function encodeSums(sha256: string, image: string): Buffer {
  return Buffer.from(`${sha256}  ${image}\n`)
}

export function decodeSums(buf: Buffer, where: string): string {
  const m = /^([0-9a-f]{64}) {2}\S.*\n?$/.exec(buf.toString('utf8'))
  if (!m) throw new DataError(`${where}: ${SUMS_NAME} is malformed (corrupt archive)`, {code: 'ARCHIVE_CORRUPT'})
  return m[1]!
}

/** Parses and checks manifest.json; a newer format is refused before anything is written. */
export function decodeManifest(buf: Buffer, where: string): ArchiveManifest {
  let m: ArchiveManifest
  try {
    m = JSON.parse(buf.toString('utf8')) as ArchiveManifest
  } catch {
    throw new DataError(`${where}: ${MANIFEST_NAME} is not valid JSON (corrupt archive)`, {code: 'ARCHIVE_CORRUPT'})
  }
  if (typeof m !== 'object' || m === null || typeof m.vdsnapArchive !== 'number') {
    throw new DataError(`${where} is not a vdsnap archive (${MANIFEST_NAME} has no format version)`, {code: 'ARCHIVE_CORRUPT'})
  }
  if (m.vdsnapArchive > ARCHIVE_FORMAT) {
    throw new DataError(`${where} has archive format ${m.vdsnapArchive}; this vdsnap reads format ${ARCHIVE_FORMAT}`, {code: 'ARCHIVE_CORRUPT', hint: 'use a newer vdsnap release'})
  }
  const sizes = [m.virtualSize, m.blockSize, m.blockCount, m.chunkCount]
  if (!sizes.every((v) => Number.isSafeInteger(v) && v >= 0) || (m.kind !== 'chunks' && m.kind !== 'portable') || typeof m.disk !== 'string') {
    throw new DataError(`${where}: ${MANIFEST_NAME} is missing fields or has impossible values (corrupt archive)`, {code: 'ARCHIVE_CORRUPT'})
  }
  if (m.blockCount !== Math.ceil(m.virtualSize / m.blockSize)) throw new DataError(`${where}: ${MANIFEST_NAME} has an inconsistent block count (corrupt archive)`, {code: 'ARCHIVE_CORRUPT'})
  return m
}
