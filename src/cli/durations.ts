// Human durations for flags: "90", "30s", "5m", "2h", "1d" (seconds by default).
import {UsageError} from '../errors.js'

const UNITS: Record<string, number> = {ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000}

/** Returns milliseconds. */
export function parseDuration(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$/.exec(text)
  if (!m) throw new UsageError(`cannot read duration "${text}"`, {hint: 'write e.g. 30s, 5m, 2h or 1d'})
  return Math.round(Number(m[1]) * UNITS[m[2] ?? 's']!)
}
