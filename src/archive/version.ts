// The running vdsnap's version, for archive manifests: package.json found
// upwards from this module (dist/src/archive or src/archive).
import {readFileSync} from 'node:fs'
import {dirname, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'

let cached: string | undefined

export function vdsnapVersion(): string {
  if (cached) return cached
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 5; i++, dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(resolve(dir, 'package.json'), 'utf8')) as {name?: string; version?: string}
      if (pkg.name === 'vdsnap' && pkg.version) return (cached = pkg.version)
    } catch {
      // not here: one level up
    }
  }
  return (cached = 'unknown')
}
