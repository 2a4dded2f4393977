// A repository's every file (relative name → size, mtime and SHA-256), to
// assert that a refused command changed nothing.
import {createHash} from 'node:crypto'
import {existsSync, readdirSync, readFileSync, statSync} from 'node:fs'
import {join} from 'node:path'

function files(dir: string): string[] {
  const out: string[] = []
  const walk = (d: string) => {
    for (const e of readdirSync(d, {withFileTypes: true})) {
      const p = join(d, e.name)
      if (e.isDirectory()) walk(p)
      else out.push(p)
    }
  }
  if (existsSync(dir)) walk(dir)
  return out.sort()
}

export function repoState(dir: string): Record<string, string> {
  const state: Record<string, string> = {}
  for (const f of files(dir)) {
    const st = statSync(f)
    state[f.slice(dir.length + 1)] = `${st.size} ${st.mtimeMs} ${createHash('sha256').update(readFileSync(f)).digest('hex')}`
  }
  return state
}
