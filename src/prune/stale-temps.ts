// Leftovers of writes that died: the local backend writes `.tmp-<random>`
// next to the final name and renames it; a process killed in between leaves
// the temporary file, which no listing shows. prune removes those older than
// a cutoff (an hour: no live write takes that long between open and rename).
// Only for local repositories; remote backends write with a single PUT or
// clean up themselves.
import {opendir, rm, stat} from 'node:fs/promises'
import {join} from 'node:path'
import {parseLocation} from '../repo/storage.js'

export interface TempSweep {
  files: number
  bytes: number
}

/** Removes `.tmp-*` files below `root` last modified before `cutoffMs`. */
export async function removeStaleTemps(root: string, cutoffMs: number, dryRun: boolean): Promise<TempSweep> {
  const out: TempSweep = {files: 0, bytes: 0}
  await walk(root, cutoffMs, dryRun, out, 0)
  return out
}

async function walk(dir: string, cutoffMs: number, dryRun: boolean, out: TempSweep, depth: number): Promise<void> {
  let handle
  try {
    handle = await opendir(dir)
  } catch {
    return
  }
  for await (const ent of handle) {
    const path = join(dir, ent.name)
    if (ent.isDirectory() && depth < 2) await walk(path, cutoffMs, dryRun, out, depth + 1)
    else if (ent.isFile() && ent.name.startsWith('.tmp-')) {
      const st = await stat(path).catch(() => null)
      if (!st || st.mtimeMs >= cutoffMs) continue
      out.files++
      out.bytes += st.size
      if (!dryRun) await rm(path, {force: true})
    }
  }
}

/** The directory of a local repository location, else undefined. */
export function localRootOf(location: string): string | undefined {
  const parsed = parseLocation(location)
  return parsed.kind === 'local' ? parsed.path : undefined
}
