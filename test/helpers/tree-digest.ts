// Every file under a directory with a digest of its content: compared before
// and after a refused command to show that nothing changed.
import {createHash} from 'node:crypto'
import {readdirSync, readFileSync, statSync} from 'node:fs'
import {join, relative} from 'node:path'

export function treeDigest(root: string): string[] {
  const out: string[] = []
  const walk = (d: string) => {
    for (const e of readdirSync(d)) {
      const p = join(d, e)
      if (statSync(p).isDirectory()) walk(p)
      else out.push(`${relative(root, p)} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`)
    }
  }
  walk(root)
  return out.sort()
}
