// A snapshot as the CLI's JSON shows it: the stored manifest (docs/FORMAT.md)
// with the names every other command uses for the same facts — `host` (as
// key list and locks), `changedBlocks` and `newChunks` (as backup, run and
// diff) — so a script reads one name per fact. The stored format keeps its
// own names.
import type {Manifest} from '../repo/manifest.js'

export function snapshotDoc(m: Manifest): object {
  const {hostname, stats, ...rest} = m
  const {blocksChanged, blocksNew, ...other} = stats
  return {...rest, host: hostname, stats: {...other, changedBlocks: blocksChanged, newChunks: blocksNew}}
}
