// --bitmap NAME: a QEMU dirty bitmap, read from the NBD server's
// qemu:dirty-bitmap:NAME context, as the change source of a backup.
//
// A dirty bitmap marks the blocks written since it was created or last
// cleared; it says nothing about what happened before. So it may stand for
// "changed since the parent snapshot" only when it already existed when the
// parent was read, which the parent records (source.bitmap: export and
// bitmap name), and the user rotated it at that moment (README recipes).
//   1. The server does not export the bitmap: warn, read every allocated
//      block, record no bitmap (the next run falls back again).
//   2. No parent: a full read anyway; record the bitmap.
//   3. The parent did not record this export's bitmap: warn, read every
//      allocated block, record it (the next run may use it).
//   4. Otherwise the dirty ranges are the change source, checked by the
//      same trust-but-verify sample as every other one.
import type {Range} from '../disk/types.js'
import type {NbdImage} from '../disk/nbd-image.js'
import {shortId, type Manifest, type SourceFacts} from '../repo/manifest.js'

export interface BitmapOutcome {
  /** The dirty ranges to read, or null for a read of every allocated block. */
  ranges: Range[] | null
  warning?: string
  notice?: string
}

export async function bitmapChanges(image: NbdImage, facts: SourceFacts, parent: Manifest | null): Promise<BitmapOutcome> {
  const name = image.bitmap!
  if (!image.hasBitmap) {
    return {
      ranges: null,
      warning:
        `${image.path} exports no dirty bitmap "${name}" (qemu:dirty-bitmap:${name}): read every allocated block instead; ` +
        'check the bitmap name and that the server exports it (qemu-nbd -B, block-export-add bitmaps, virsh backup-begin)',
    }
  }
  facts.bitmap = {export: image.exportName, name}
  if (!parent) return {ranges: null, notice: `no parent snapshot for this disk: read every allocated block; the next backup with --bitmap ${name} reads only the blocks it marks`}
  const p = parent.source.bitmap
  if (!p || p.export !== image.exportName || p.name !== name) {
    return {
      ranges: null,
      warning:
        `the parent snapshot ${shortId(parent.id)} was not taken with dirty bitmap "${name}" of export "${image.exportName}", so the bitmap may miss changes made before it: ` +
        `read every allocated block instead (the next backup with --bitmap ${name} reads only the blocks it marks)`,
    }
  }
  return {ranges: await image.dirtyRanges()}
}
