// Where a worker thread's script is: the compiled sibling of the module that
// starts it, or, when that module runs from TypeScript sources (tests), the
// same file in the build (dist/src/<folder>/).
import {existsSync} from 'node:fs'
import {basename, dirname, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'
import {VdsnapError} from '../errors.js'

/** The script `name`.js beside `moduleUrl` (import.meta.url of the caller); `what` names it in the error. */
export function workerScript(moduleUrl: string, name: string, what: string): string {
  const here = dirname(fileURLToPath(moduleUrl))
  const sibling = resolve(here, `${name}.js`)
  if (existsSync(sibling)) return sibling
  const built = resolve(here, '../../dist/src', basename(here), `${name}.js`)
  if (existsSync(built)) return built
  throw new VdsnapError(`${what} not found; run "npm run build" first`)
}
