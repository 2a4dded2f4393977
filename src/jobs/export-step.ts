// The job file's `exports:` step: archives for tape and cold storage, made
// by `run` after the backups and copies, under a shared lock, e.g. once a
// month from a daily job:
//
//   exports:
//     - to: /mnt/tape/{disk}-{date}.zip   # {disk}, {date} (YYYY-MM-DD, UTC), {snapshot} (8 hex)
//       every: 4w                          # default: every run
//       format: zip                        # or tar
//       portable: false
//       record-size: 256KiB
//       split: 400GiB                      # volumes NAME.001, … (chunk archives)
//
// For each of the job's disks the newest snapshot is exported; an export is
// due when its last success (in the job's state file) is older than
// `every`. A failed export is recorded and the next one still runs.
import {resolve} from 'node:path'
import {runExport} from '../archive/export.js'
import {EXIT_CODES, toVdsnapError, UsageError} from '../errors.js'
import {parseSize} from '../repo/config.js'
import {withRepoLock} from '../repo/session.js'
import type {Repository} from '../repo/repository.js'
import {readState, writeState} from './check-state.js'
import type {ExportSummary} from './summary.js'

export interface ExportSpec {
  /** Path template, relative paths resolved against the job file's directory. */
  to: string
  /** 0: every run. */
  everyMs: number
  format: 'zip' | 'tar'
  portable: boolean
  recordSize?: number
  split?: number
}


type Obj = Record<string, unknown>

/** Parses `exports:`; `fail` and `duration` are the job file's own validators. */
export function parseExports(v: unknown, key: string, dir: string, fail: (k: string, what: string) => never, duration: (t: string, k: string) => number): ExportSpec[] {
  if (v === undefined || v === null) return []
  if (!Array.isArray(v)) fail(key, 'must be a list')
  return (v as unknown[]).map((e, i) => {
    const k = `${key}[${i}]`
    if (typeof e !== 'object' || e === null || Array.isArray(e)) fail(k, 'must be a mapping')
    const o = e as Obj
    for (const name of Object.keys(o)) if (!['to', 'every', 'format', 'portable', 'record-size', 'split'].includes(name)) fail(`${k}.${name}`, 'unknown key (allowed: to, every, format, portable, record-size, split)')
    if (typeof o.to !== 'string' || !o.to) fail(`${k}.to`, 'required: a path template such as /mnt/tape/{disk}-{date}.zip')
    const format = o.format ?? 'zip'
    if (format !== 'zip' && format !== 'tar') fail(`${k}.format`, 'must be zip or tar')
    if (o.portable !== undefined && typeof o.portable !== 'boolean') fail(`${k}.portable`, 'must be true or false')
    const size = (name: string): number | undefined => {
      if (o[name] === undefined) return undefined
      try {
        return parseSize(String(o[name]))
      } catch {
        return fail(`${k}.${name}`, `"${String(o[name])}" is not a size (e.g. 256KiB, 400GiB)`)
      }
    }
    const recordSize = size('record-size')
    const split = size('split')
    const every = o.every === undefined || o.every === 'run' ? 0 : duration(String(o.every), `${k}.every`)
    return {to: resolve(dir, o.to as string), everyMs: every, format, portable: o.portable === true, recordSize, split}
  })
}

/** The archive path for one disk: {disk}, {date}, {snapshot} filled in. */
export function exportPath(template: string, disk: string, snapshot: string, now: Date): string {
  const safe = disk.replace(/[^A-Za-z0-9._-]+/g, '_')
  return template.replaceAll('{disk}', safe).replaceAll('{date}', now.toISOString().slice(0, 10)).replaceAll('{snapshot}', snapshot.slice(0, 8))
}

export async function exportStep(
  repo: Repository,
  o: {job: string; specs: ExportSpec[]; disks: string[]; stateFile: string; lockWaitMs: number; now: Date; log?: (l: string) => void},
): Promise<ExportSummary[]> {
  const out: ExportSummary[] = []
  for (const spec of o.specs) {
    const state = await readState(o.stateFile)
    const last = state.jobs[o.job]?.exports?.[spec.to]
    if (spec.everyMs > 0 && last && o.now.getTime() - Date.parse(last) < spec.everyMs - 3_600_000) continue
    let allOk = true
    for (const disk of o.disks) {
      const s = await exportOne(repo, spec, disk, o)
      allOk &&= s.ok
      out.push(s)
    }
    if (allOk) {
      const fresh = await readState(o.stateFile)
      const js = (fresh.jobs[o.job] ??= {nextPart: 1})
      js.exports = {...js.exports, [spec.to]: o.now.toISOString()}
      await writeState(o.stateFile, fresh)
    }
  }
  return out
}

async function exportOne(repo: Repository, spec: ExportSpec, disk: string, o: {job: string; lockWaitMs: number; now: Date; log?: (l: string) => void}): Promise<ExportSummary> {
  const base: ExportSummary = {disk, to: spec.to, ok: false, snapshot: null, archiveBytes: 0, error: null}
  try {
    return await withRepoLock(repo, {exclusive: false, command: 'run export', waitMs: o.lockWaitMs}, async () => {
      const snap = (await repo.listSnapshots(disk)).at(-1)
      if (!snap) throw new UsageError(`disk ${disk} has no snapshot to export`)
      const to = exportPath(spec.to, disk, snap.id, o.now)
      const res = await runExport(repo, {snapshot: snap, to, portable: spec.portable, format: spec.format, recordSize: spec.recordSize, split: spec.split})
      o.log?.(`${o.job}: export ${disk} to ${to}: ${res.archiveBytes} bytes`)
      return {...base, to, ok: true, snapshot: snap.id, archiveBytes: res.archiveBytes}
    })
  } catch (e) {
    const err = toVdsnapError(e)
    o.log?.(`${o.job}: export ${disk}: failed: ${err.oneLine()}`)
    return {...base, error: {message: err.oneLine(), kind: err.kind, code: err.code, exitCode: EXIT_CODES[err.kind]}}
  }
}
