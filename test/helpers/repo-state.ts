// A fingerprint of every file under a directory (a repository, a target
// directory): relative name → size, mtime and SHA-256, to assert that a
// refused command changed nothing.
import {createHash} from 'node:crypto'
import {existsSync, readFileSync, readdirSync, statSync} from 'node:fs'
import {join} from 'node:path'

export function treeState(dir: string): Record<string, string> {
  const state: Record<string, string> = {}
  const walk = (d: string) => {
    for (const e of readdirSync(d, {withFileTypes: true})) {
      const p = join(d, e.name)
      if (e.isDirectory()) walk(p)
      else {
        const st = statSync(p)
        state[p.slice(dir.length + 1)] = `${st.size} ${st.mtimeMs} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`
      }
    }
  }
  if (existsSync(dir)) walk(dir)
  return state
}

/** The same fingerprint, under the name the repository tests use. */
export const repoState = treeState
