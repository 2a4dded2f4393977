// A vdsnap ZIP archive in a seekable file, read by entry: node-stream-zip
// reads the central directory (and streams the deflated portable image);
// stored entries (chunks, metadata) are read here with one positioned read
// of their local header and one of their data, CRC-checked with the native
// zlib.crc32 (node-stream-zip's JavaScript CRC32 cost restore from an
// archive file more than twice the time of a restore from the repository).
// node-stream-zip does not check the CRC of data-descriptor entries; the
// chunk digests and the image SHA-256 do not depend on it.
import StreamZip from 'node-stream-zip'
import {open} from 'node:fs/promises'
import {crc32} from 'node:zlib'
import {FLAG_DESCRIPTOR, LOCAL_HEADER_SIZE, METHOD_STORED, SIG_LOCAL} from './zip-format.js'
import {DataError, toVdsnapError} from '../errors.js'
import type {ArchiveSource} from './archive-source.js'
import {chunkEntryName, decodeManifest, decodeSums, MANIFEST_NAME, SUMS_NAME, type ArchiveManifest} from './layout.js'

const HEAD = /^(config|keys\/[0-9a-f]+|snapshots\/[0-9a-f]{64}|indexes\/[0-9a-f]{64}|VOLUMES)$/

export async function openZipFile(path: string): Promise<ArchiveSource & {hasEntry(name: string): boolean}> {
  let zip: InstanceType<typeof StreamZip.async>
  let entries: Record<string, StreamZip.ZipEntry>
  try {
    zip = new StreamZip.async({file: path, storeEntries: true})
    entries = await zip.entries()
  } catch (e) {
    const err = toVdsnapError(e, `reading ${path}`)
    if (err.kind !== 'internal') throw err
    throw new DataError(`${path} is not a readable ZIP archive (${(e as Error).message}): truncated or not a vdsnap archive`, {code: 'ARCHIVE_CORRUPT', hint: 'use a complete copy'})
  }
  const fh = await open(path, 'r')
  const damaged = {hint: 'the archive is damaged; use another copy'}
  const readStored = async (entry: StreamZip.ZipEntry): Promise<Buffer> => {
    const local = Buffer.alloc(LOCAL_HEADER_SIZE)
    if ((await fh.read(local, 0, LOCAL_HEADER_SIZE, entry.offset)).bytesRead !== LOCAL_HEADER_SIZE || local.readUInt32LE(0) !== SIG_LOCAL) {
      throw new DataError(`${path}: entry ${entry.name} has no local header where the central directory says (corrupt)`, {code: 'ARCHIVE_CORRUPT', ...damaged})
    }
    const start = entry.offset + LOCAL_HEADER_SIZE + local.readUInt16LE(26) + local.readUInt16LE(28)
    const data = Buffer.allocUnsafe(entry.compressedSize)
    if ((await fh.read(data, 0, data.length, start)).bytesRead !== data.length) throw new DataError(`${path} is truncated inside entry ${entry.name}`, {code: 'ARCHIVE_CORRUPT', ...damaged})
    return data
  }
  const read = async (name: string): Promise<Buffer> => {
    const entry = entries[name]
    if (!entry) throw new DataError(`${path} lacks entry ${name} (incomplete archive)`, {code: 'ARCHIVE_CORRUPT'})
    let data: Buffer
    try {
      data = entry.method === METHOD_STORED && !(entry.flags & FLAG_DESCRIPTOR) ? await readStored(entry) : await zip.entryData(entry)
    } catch (e) {
      if (e instanceof DataError) throw e
      throw new DataError(`${path}: entry ${name} cannot be read (${(e as Error).message})`, {code: 'ARCHIVE_CORRUPT', hint: 'the archive is damaged; use another copy'})
    }
    if (!(entry.flags & 8) && crc32(data) !== entry.crc) throw new DataError(`${path}: entry ${name} fails its CRC (corrupt)`, {code: 'ARCHIVE_CORRUPT', hint: 'the archive is damaged; use another copy'})
    return data
  }
  let manifest: ArchiveManifest
  const head = new Map<string, Buffer>()
  try {
    manifest = decodeManifest(await read(MANIFEST_NAME), path)
    for (const name of Object.keys(entries)) if (HEAD.test(name)) head.set(name, await read(name))
  } catch (e) {
    await fh.close().catch(() => {})
    await zip.close().catch(() => {})
    throw e
  }
  return {
    describe: path,
    manifest,
    head,
    hasEntry: (name) => entries[name] !== undefined,
    loadChunk: (hex) => read(chunkEntryName(hex)),
    planUses: () => {},
    async *image() {
      const entry = entries[manifest.image]
      if (!entry) throw new DataError(`${path} lacks entry ${manifest.image} (incomplete archive)`, {code: 'ARCHIVE_CORRUPT'})
      const stream = (await zip.stream(entry)) as AsyncIterable<Buffer>
      try {
        for await (const piece of stream) yield piece
      } catch (e) {
        throw new DataError(`${path}: entry ${manifest.image} cannot be read (${(e as Error).message})`, {code: 'ARCHIVE_CORRUPT', hint: 'the archive is damaged; use another copy'})
      }
    },
    imageSha256: async () => decodeSums(await read(SUMS_NAME), path),
    async close() {
      await fh.close().catch(() => {})
      await zip.close()
    },
  }
}

/** Whether the file at `path` begins like a ZIP archive (a local header); tar archives do not. */
export async function isZipFile(path: string): Promise<boolean> {
  const fh = await open(path, 'r').catch((e: unknown) => Promise.reject(toVdsnapError(e, `opening archive ${path}`)))
  const magic = Buffer.alloc(4)
  const {bytesRead} = await fh.read(magic, 0, 4, 0).finally(() => fh.close())
  return bytesRead === 4 && magic.readUInt32LE(0) === SIG_LOCAL
}
