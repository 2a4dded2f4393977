// Human durations, the one parser for flags (--lock-wait, --source-timeout,
// password-command timeouts) and job files: "90" (seconds), "250ms", "30s",
// "5m", "2h", "1d", "1w". Job files are stricter (`strict`): a whole number
// followed by one of s, m, h, d, w, exactly as docs/jobs.example.yaml shows.
import {UsageError} from '../errors.js'

const UNITS = {ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000} as const

const LOOSE = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$/
const STRICT = /^(\d+)(s|m|h|d|w)$/

/** Milliseconds, or undefined when `text` is not a duration of that form. */
export function readDuration(text: string, opts: {strict?: boolean} = {}): number | undefined {
  const m = (opts.strict ? STRICT : LOOSE).exec(text)
  if (!m) return undefined
  return Math.round(Number(m[1]) * UNITS[(m[2] ?? 's') as keyof typeof UNITS])
}

/** Milliseconds; a UsageError when `text` is not a duration. */
export function parseDuration(text: string): number {
  const ms = readDuration(text)
  if (ms === undefined) throw new UsageError(`cannot read duration "${text}"`, {hint: 'write e.g. 30s, 5m, 2h or 1d'})
  return ms
}
