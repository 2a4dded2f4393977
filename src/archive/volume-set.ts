// Which volumes of a split archive were given: all of one archive, each
// once, none missing (named by file), and their order. Shared by the ZIP
// and tar volume readers.
import {DataError, UsageError} from '../errors.js'
import {VOLUMES_NAME, type ArchiveManifest} from './layout.js'

export interface VolumeFacts {
  readonly describe: string
  readonly manifest: ArchiveManifest
  /** The volume count when this is the last volume (it holds VOLUMES), else null. */
  readonly total: number | null
}

function volumeName(v: VolumeFacts, n: number): string {
  return v.describe.replace(/\.\d{3}$/, '') + `.${String(n).padStart(3, '0')}`
}

/** Checks that `vols` are the whole set of one archive's volumes; returns them in number order. */
export function orderVolumes<V extends VolumeFacts>(vols: V[]): V[] {
  const first = vols[0]!
  const byNumber = new Map<number, V>()
  for (const v of vols) {
    const m = v.manifest
    if (m.volume === undefined) throw new UsageError(`${v.describe} is a whole archive, not a volume: give it alone`)
    if (m.archiveId !== first.manifest.archiveId || m.snapshot !== first.manifest.snapshot) {
      throw new DataError(`${v.describe} is a volume of another archive (snapshot ${m.snapshot.slice(0, 8)}, archive ${m.archiveId}) than ${first.describe} (snapshot ${first.manifest.snapshot.slice(0, 8)}, archive ${first.manifest.archiveId})`, {hint: 'give the volumes of one export'})
    }
    if (byNumber.has(m.volume)) throw new UsageError(`${v.describe} and ${byNumber.get(m.volume)!.describe} are both volume ${m.volume}`)
    byNumber.set(m.volume, v)
  }
  const last = vols.find((v) => v.total !== null)
  const have = [...byNumber.keys()].sort((a, b) => a - b)
  if (!last) {
    throw new DataError(`the last volume of ${first.describe.replace(/\.\d{3}$/, '')} (the one ending with SHA256SUMS) is missing; given: volumes ${have.join(', ')}`, {hint: 'give every volume of the archive'})
  }
  const total = last.total!
  if (!Number.isInteger(total) || total < 1 || total > 99_999 || last.manifest.volume !== total) throw new DataError(`${last.describe}: ${VOLUMES_NAME} is malformed (corrupt archive)`)
  const missing = Array.from({length: total}, (_, i) => i + 1).filter((n) => !byNumber.has(n))
  if (missing.length > 0) {
    throw new DataError(`${missing.length === 1 ? 'volume' : 'volumes'} ${missing.map((n) => volumeName(last, n)).join(', ')} of ${total} ${missing.length === 1 ? 'is' : 'are'} missing`, {hint: 'give every volume of the archive, in any order'})
  }
  return have.map((n) => byNumber.get(n)!)
}

/** How the volumes are named together in messages: NAME.{001..00N}. */
export function describeVolumes(first: string, total: number): string {
  return `${first.replace(/\.\d{3}$/, '')}.{001..${String(total).padStart(3, '0')}}`
}
