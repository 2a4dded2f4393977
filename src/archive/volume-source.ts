// A split archive (NAME.001, NAME.002, …) read from its volume files, given
// in any order. All must carry the same archive id, each number once, and
// the last one (ending with VOLUMES) says how many there are, so a missing
// volume is named before anything is read further.
// - ZIP volumes are opened by entry (node-stream-zip); a chunk is looked up
//   in whichever volume holds it; the head comes from volume 1.
// - tar volumes (no index to seek by) are chained in number order into one
//   forward pass (tar-volume-source.ts).
import {DataError} from '../errors.js'
import type {ArchiveSource} from './archive-source.js'
import {VOLUMES_NAME} from './layout.js'
import {openTarVolumes} from './tar-volume-source.js'
import {describeVolumes, orderVolumes} from './volume-set.js'
import {isZipFile, openZipFile} from './zip-file-source.js'

type Volume = Awaited<ReturnType<typeof openZipFile>>

export async function openVolumes(paths: string[]): Promise<ArchiveSource> {
  if (!(await isZipFile(paths[0]!))) return openTarVolumes(paths)
  const vols: Volume[] = []
  try {
    for (const p of paths) vols.push(await openZipFile(p))
    return combine(vols)
  } catch (e) {
    for (const v of vols) await v.close().catch(() => {})
    throw e
  }
}

function combine(opened: Volume[]): ArchiveSource {
  const facts = opened.map((v) => ({describe: v.describe, manifest: v.manifest, total: v.head.has(VOLUMES_NAME) ? Number(v.head.get(VOLUMES_NAME)!.toString('ascii').trim()) : null, v}))
  const vols = orderVolumes(facts).map((f) => f.v)
  const one = vols[0]!
  const last = vols[vols.length - 1]!
  return {
    describe: describeVolumes(one.describe, vols.length),
    manifest: one.manifest,
    head: one.head,
    async loadChunk(hex, atBlock) {
      const name = `chunks/${hex.slice(0, 2)}/${hex}`
      const v = vols.find((x) => x.hasEntry(name))
      if (!v) throw new DataError(`no volume holds chunk ${hex.slice(0, 16)}… (${name}) needed for block ${atBlock}: corrupt or incomplete archive`, {code: 'ARCHIVE_CORRUPT', object: name})
      return v.loadChunk(hex, atBlock)
    },
    planUses: () => {},
    image: () => one.image(),
    imageSha256: () => last.imageSha256(),
    async close() {
      for (const v of vols) await v.close().catch(() => {})
    },
  }
}
