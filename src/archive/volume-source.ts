// A split archive (NAME.001, NAME.002, …) read from its volume files, given
// in any order: each is opened by entry (node-stream-zip), all must carry
// the same archive id, and the last one (with VOLUMES) says how many there
// are, so a missing volume is named. Chunks are looked up in whichever
// volume holds them; the head comes from the first volume.
import {DataError, UsageError} from '../errors.js'
import type {ArchiveSource} from './archive-source.js'
import {VOLUMES_NAME} from './layout.js'
import {openZipFile} from './zip-file-source.js'

type Volume = Awaited<ReturnType<typeof openZipFile>>

export async function openVolumes(paths: string[]): Promise<ArchiveSource> {
  const vols: Volume[] = []
  try {
    for (const p of paths) vols.push(await openZipFile(p))
    return combine(vols)
  } catch (e) {
    for (const v of vols) await v.close().catch(() => {})
    throw e
  }
}

function volumeName(v: Volume, n: number): string {
  return v.describe.replace(/\.\d{3}$/, '') + `.${String(n).padStart(3, '0')}`
}

function combine(vols: Volume[]): ArchiveSource {
  const first = vols[0]!
  const byNumber = new Map<number, Volume>()
  for (const v of vols) {
    const m = v.manifest
    if (m.volume === undefined) throw new UsageError(`${v.describe} is a whole archive, not a volume: give it alone`)
    if (m.archiveId !== first.manifest.archiveId || m.snapshot !== first.manifest.snapshot) {
      throw new DataError(`${v.describe} is a volume of another archive (snapshot ${m.snapshot.slice(0, 8)}, archive ${m.archiveId}) than ${first.describe} (snapshot ${first.manifest.snapshot.slice(0, 8)}, archive ${first.manifest.archiveId})`, {code: 'ARCHIVE_CORRUPT', hint: 'give the volumes of one export'})
    }
    if (byNumber.has(m.volume)) throw new UsageError(`${v.describe} and ${byNumber.get(m.volume)!.describe} are both volume ${m.volume}`)
    byNumber.set(m.volume, v)
  }
  const last = vols.find((v) => v.head.has(VOLUMES_NAME))
  const have = [...byNumber.keys()].sort((a, b) => a - b)
  if (!last) {
    throw new DataError(`the last volume of ${first.describe.replace(/\.\d{3}$/, '')} (the one ending with SHA256SUMS) is missing; given: volumes ${have.join(', ')}`, {code: 'ARCHIVE_CORRUPT', hint: 'give every volume of the archive'})
  }
  const total = Number(last.head.get(VOLUMES_NAME)!.toString('ascii').trim())
  if (!Number.isInteger(total) || total < 1 || total > 99_999) throw new DataError(`${last.describe}: VOLUMES is malformed (corrupt archive)`, {code: 'ARCHIVE_CORRUPT'})
  const missing = Array.from({length: total}, (_, i) => i + 1).filter((n) => !byNumber.has(n))
  if (missing.length > 0) {
    throw new DataError(`${missing.length === 1 ? 'volume' : 'volumes'} ${missing.map((n) => volumeName(last, n)).join(', ')} of ${total} ${missing.length === 1 ? 'is' : 'are'} missing`, {code: 'ARCHIVE_CORRUPT', hint: 'give every volume of the archive, in any order'})
  }
  const one = byNumber.get(1)!
  return {
    describe: `${one.describe.replace(/\.\d{3}$/, '')}.{001..${String(total).padStart(3, '0')}}`,
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
