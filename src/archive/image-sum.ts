// The image SHA-256 of a snapshot, kept in the repository once computed
// (imagesums/<snapshot id>, docs/FORMAT.md §12.5), so that exporting the
// same snapshot again does not decode and hash every byte of the disk:
// SHA-256 is serial (about 0.6 s per GiB on one core), and with it known a
// chunk export only copies stored chunk objects.
//
// The object is an envelope of kind 3 (encrypted and authenticated with the
// repository's key, or checksummed in a plaintext repository) holding
// {"snapshot", "virtualSize", "sha256"}. It is written only from plaintext
// that export verified chunk by chunk, and trusted only when it decodes and
// names the snapshot and its size; a snapshot's content never changes (a
// rebase by forget keeps its bytes), and forget removes it with the manifest.
// Anything else (missing, damaged, another snapshot's) reads as "not known".
import {decodeObject, encodeObject, ObjectKind} from '../chunk/object-codec.js'
import type {Manifest} from '../repo/manifest.js'
import type {Repository} from '../repo/repository.js'

export const IMAGE_SUMS_PREFIX = 'imagesums/'

export function imageSumName(snapshotId: string): string {
  return `${IMAGE_SUMS_PREFIX}${snapshotId}`
}

interface ImageSum {
  snapshot: string
  virtualSize: number
  sha256: string
}

/** The snapshot's image SHA-256 (hex) when the repository holds a sound record of it, else null. */
export async function loadImageSum(repo: Repository, snap: Manifest, virtualSize: number): Promise<string | null> {
  const name = imageSumName(snap.id)
  try {
    const s = JSON.parse(decodeObject(ObjectKind.Manifest, name, await repo.backend.load(name), repo.encKey).toString('utf8')) as ImageSum
    return s.snapshot === snap.id && s.virtualSize === virtualSize && /^[0-9a-f]{64}$/.test(s.sha256) ? s.sha256 : null
  } catch {
    return null // not there (the first export), or unreadable: computed again
  }
}

/** Records the image SHA-256 export computed; a repository that refuses the write is left as it is (the next export computes it again). */
export async function saveImageSum(repo: Repository, snap: Manifest, virtualSize: number, sha256: string): Promise<boolean> {
  const name = imageSumName(snap.id)
  const body = Buffer.from(JSON.stringify({snapshot: snap.id, virtualSize, sha256} satisfies ImageSum))
  try {
    await repo.backend.save(name, encodeObject(ObjectKind.Manifest, name, body, {level: Math.max(1, repo.level), key: repo.encKey}))
    return true
  } catch {
    return false
  }
}
