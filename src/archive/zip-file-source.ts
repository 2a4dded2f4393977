// A vdsnap ZIP archive in a seekable file, read by entry with
// node-stream-zip (central directory first). node-stream-zip does not check
// the CRC of data-descriptor entries; our own CRC check of every whole
// entry, the chunk digests and the image SHA-256 do not depend on it.
import StreamZip from 'node-stream-zip'
import {crc32} from 'node:zlib'
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
    throw new DataError(`${path} is not a readable ZIP archive (${(e as Error).message}): truncated or not a vdsnap archive`, {hint: 'use a complete copy'})
  }
  const read = async (name: string): Promise<Buffer> => {
    const entry = entries[name]
    if (!entry) throw new DataError(`${path} lacks entry ${name} (incomplete archive)`)
    let data: Buffer
    try {
      data = await zip.entryData(entry)
    } catch (e) {
      throw new DataError(`${path}: entry ${name} cannot be read (${(e as Error).message})`, {hint: 'the archive is damaged; use another copy'})
    }
    if (!(entry.flags & 8) && crc32(data) !== entry.crc) throw new DataError(`${path}: entry ${name} fails its CRC (corrupt)`, {hint: 'the archive is damaged; use another copy'})
    return data
  }
  let manifest: ArchiveManifest
  const head = new Map<string, Buffer>()
  try {
    manifest = decodeManifest(await read(MANIFEST_NAME), path)
    for (const name of Object.keys(entries)) if (HEAD.test(name)) head.set(name, await read(name))
  } catch (e) {
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
      if (!entry) throw new DataError(`${path} lacks entry ${manifest.image} (incomplete archive)`)
      const stream = (await zip.stream(entry)) as AsyncIterable<Buffer>
      try {
        for await (const piece of stream) yield piece
      } catch (e) {
        throw new DataError(`${path}: entry ${manifest.image} cannot be read (${(e as Error).message})`, {hint: 'the archive is damaged; use another copy'})
      }
    },
    imageSha256: async () => decodeSums(await read(SUMS_NAME), path),
    close: () => zip.close(),
  }
}
