// The rotating integrity check: each job remembers in a small JSON state
// file when it last ran `check --read-data-subset` and which part comes
// next, so that `parts` consecutive checks read every chunk once (part n of
// m selects the chunks whose id, as a number, is n−1 modulo m).
//
//   {"jobs": {"nightly": {"lastCheck": "2026-11-25T02:10:00.000Z", "nextPart": 3}}}
import {mkdir, readFile} from 'node:fs/promises'
import {writeFileAtomic} from '../fs/atomic-write.js'
import {dirname} from 'node:path'
import {toVdsnapError} from '../errors.js'

export interface JobState {
  lastCheck?: string
  nextPart: number
  /** Last successful export per `exports:` path template (export-step.ts). */
  exports?: Record<string, string>
}

export interface StateFile {
  jobs: Record<string, JobState>
}

export async function readState(path: string): Promise<StateFile> {
  try {
    const doc = JSON.parse(await readFile(path, 'utf8')) as StateFile
    return doc && typeof doc.jobs === 'object' && doc.jobs ? doc : {jobs: {}}
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || e instanceof SyntaxError) return {jobs: {}}
    throw toVdsnapError(e, `reading state file ${path}`)
  }
}

/** Atomic and durable (writeFileAtomic): a crash leaves the old state or the new one. */
export async function writeState(path: string, state: StateFile): Promise<void> {
  try {
    await mkdir(dirname(path), {recursive: true})
    await writeFileAtomic(path, JSON.stringify(state, null, 2) + '\n')
  } catch (e) {
    throw toVdsnapError(e, `writing state file ${path}`)
  }
}

/** The part to check now, or null when the last check is younger than `everyMs`. */
export function dueCheck(state: JobState | undefined, everyMs: number | null, parts: number, now: Date): {part: number; parts: number} | null {
  if (everyMs === null) return null
  const last = state?.lastCheck ? Date.parse(state.lastCheck) : Number.NaN
  // a little slack, so a weekly check in a daily cron job does not slip a day
  if (Number.isFinite(last) && now.getTime() - last < everyMs - 3_600_000) return null
  const part = state && state.nextPart >= 1 && state.nextPart <= parts ? state.nextPart : 1
  return {part, parts}
}

export function afterCheck(part: number, parts: number, now: Date, prev?: JobState): JobState {
  return {...prev, lastCheck: now.toISOString(), nextPart: (part % parts) + 1}
}
