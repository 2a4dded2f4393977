// oclif's flag and argument errors, rewritten as one line that says what is
// wrong and what to do. oclif's own messages span several lines ("Parsing
// --x \n\tExpected an integer greater than or equal to 1 but received: 0\nSee
// more help with --help") and the base command prints one line only, which
// used to leave "Parsing --x" with no reason at all.
import {Errors} from '@oclif/core'

// oclif's wording of a failed integer flag (Flags.integer with min / max).
const INTEGER_RULES: [RegExp, (m: RegExpExecArray) => string][] = [
  [/^Expected an integer greater than or equal to (-?\d+) but received: (.*)$/, (m) => `must be a whole number ≥ ${m[1]} (got "${m[2]}")`],
  [/^Expected an integer less than or equal to (-?\d+) but received: (.*)$/, (m) => `must be a whole number ≤ ${m[1]} (got "${m[2]}")`],
  [/^Expected an integer but received: (.*)$/, (m) => `must be a whole number (got "${m[1]}")`],
]

function reasonFor(flag: string, detail: string): string {
  for (const [re, say] of INTEGER_RULES) {
    const m = re.exec(detail)
    if (m) return `${flag} ${say(m)}`
  }
  return `${flag}: ${detail.replace(/^./, (c) => c.toLowerCase())}`
}

/** The lines of an oclif message that carry information. */
function meaningfulLines(message: string): string[] {
  return message
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0 && !/^See more help with --help$/.test(l) && !/^The following errors? occurred:$/.test(l))
}

/** One line for an oclif parse error of command `commandId` ("backup", "key:add"). */
export function describeParseError(err: Errors.CLIError, commandId?: string): string {
  const help = commandId ? `; see "vdsnap ${commandId.replaceAll(':', ' ')} --help"` : '; see "vdsnap --help"'
  const missing = (err as {args?: {name: string; description?: string}[]}).args // RequiredArgsError (not exported)
  if (/^Missing \d+ required args?:/.test(err.message) && missing?.length) {
    const names = missing.map((a) => `${a.name.toUpperCase()}${a.description ? ` (${a.description.replace(/\.$/, '')})` : ''}`)
    return `missing argument${names.length === 1 ? '' : 's'} ${names.join(', ')}${help}`
  }
  const lines = meaningfulLines(err.message)
  const parsing = /^Parsing (--?[\w-]+)$/.exec(lines[0] ?? '')
  if (parsing) return `${reasonFor(parsing[1]!, lines.slice(1).join('; ') || 'invalid value')}${help}`
  return `${lines.join('; ') || 'invalid command line'}${help}`
}
