// Checks of the source before anything is read: is it the same source as
// the disk's previous snapshot (path, host, stable image identity), and is
// another process writing to it? Both refuse by default; the --allow-*
// flags turn them into a notice or a warning.
import {findWriter} from '../disk/in-use.js'
import {isNbdUrl, parseNbdUrl} from '../nbd/url.js'
import type {DiskImage} from '../disk/types.js'
import {IoError} from '../errors.js'
import type {Manifest, SourceFacts} from '../repo/manifest.js'
import {isStreamLabel} from './source.js'

/**
 * A disk's snapshots are one lineage: a backup of another path, from another
 * host, or of another image (a different VHD/VHDX identity) under the same
 * --disk name is almost always a mistake (a wrong job file, a copied
 * config) that would silently chain unrelated data. The same path with a
 * new device or inode is normal (an LVM snapshot recreated every night) and
 * not compared. So is a path that belongs to the same backing chain: an
 * overlay made on the image backed up last time (an external snapshot such
 * as virsh snapshot-create-as --disk-only makes), or the base after the
 * overlay was committed into it. The identity is compared only for the
 * same path (an image replaced under its name); manifests without one have
 * nothing to compare.
 */
export function sourceChanges(previous: Manifest, now: SourceFacts, host: string): string[] {
  const was = previous.source
  const diffs: string[] = []
  const chain = (f: SourceFacts) => (f.layers ?? [f]).map((l) => l.path)
  // A stream (`-` or `command: CMD`) has no path that names the disk: the
  // same disk arrives through stdin one night and a command the next, and a
  // command line often names a dated snapshot. Only the host is compared.
  // An NBD URL's host, port and socket are transport (libvirt's pull mode may
  // give each backup another socket): the export name is what names the disk.
  const related =
    isStreamLabel(was.path) || isStreamLabel(now.path) || samePath(was.path, now.path) || chain(now).includes(was.path) || chain(was).includes(now.path)
  if (!related) diffs.push(`source ${was.path} → ${now.path}`)
  if (previous.hostname !== host) diffs.push(`host ${previous.hostname} → ${host}`)
  if (was.path === now.path && was.identity && now.identity && was.identity !== now.identity) diffs.push(`image identity ${was.identity} → ${now.identity}`)
  return diffs
}

function samePath(a: string, b: string): boolean {
  if (a === b) return true
  return isNbdUrl(a) && isNbdUrl(b) && parseNbdUrl(a).exportName === parseNbdUrl(b).exportName
}

/** The tag a snapshot of a source in use for writing carries. */
export const CRASH_CONSISTENT_TAG = 'crash-consistent'

/** Refuses (exit 7) a source another process holds for writing, unless allowed: then tags and warns. */
export async function checkNotInUse(image: DiskImage, allow: boolean, warnings: string[], tags: string[]): Promise<void> {
  const paths: string[] = []
  for (let img: DiskImage | undefined = image; img; img = img.parent) paths.push(img.path)
  const writer = await findWriter(paths)
  if (!writer) return
  if (!allow) {
    throw new IoError(`source ${writer.path} is open for writing: ${writer.why}`, {
      hint: 'back up a snapshot of the disk instead (virsh snapshot-create-as --disk-only, lvcreate -s), or freeze the guest with --pre-hook "virsh domfsfreeze DOMAIN" (or fsfreeze) and give --allow-in-use',
    })
  }
  warnings.push(`source ${writer.path} was open for writing (${writer.why}): the snapshot is at best crash-consistent and is tagged ${CRASH_CONSISTENT_TAG}`)
  if (!tags.includes(CRASH_CONSISTENT_TAG)) tags.push(CRASH_CONSISTENT_TAG)
}
