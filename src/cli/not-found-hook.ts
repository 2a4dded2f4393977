// oclif's command_not_found hook: an unknown command gets the same one-line
// error as every other usage error (exit 2; the JSON error document with
// --json), with the closest command as a suggestion — instead of oclif's own
// " ›   Error: command X not found".
import type {Hook} from '@oclif/core'
import {EXIT_CODES} from '../errors.js'
import {errorDocument} from './output.js'

/** Levenshtein distance (names are short: a plain table). */
function distance(a: string, b: string): number {
  let prev = Array.from({length: b.length + 1}, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const cur = [i]
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    prev = cur
  }
  return prev[b.length]!
}

/** The closest command id to `id`, when it is close enough to be a typo. */
export function suggestCommand(id: string, ids: string[]): string | undefined {
  let best: {id: string; d: number} | undefined
  for (const c of ids) {
    const d = distance(id, c)
    if (!best || d < best.d) best = {id: c, d}
  }
  return best && best.d <= Math.max(2, Math.floor(id.length / 3)) ? best.id : undefined
}

const hook: Hook<'command_not_found'> = async function (opts) {
  const shown = opts.id.replaceAll(':', ' ')
  const hit = suggestCommand(opts.id, opts.config.commandIDs)
  const message = hit
    ? `"${shown}" is not a vdsnap command; did you mean "vdsnap ${hit.replaceAll(':', ' ')}"?`
    : `"${shown}" is not a vdsnap command; "vdsnap --help" lists the commands`
  if (opts.argv?.includes('--json')) process.stdout.write(errorDocument({message, kind: 'usage', code: 'USAGE'}) + '\n')
  process.stderr.write(`vdsnap: error: ${message}\n`)
  process.exitCode = EXIT_CODES.usage
}

export default hook
