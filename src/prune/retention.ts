// Retention policy: which snapshots a `forget --keep-*` keeps, and why.
// A pure function of the snapshot list, the policy and the clock, with
// restic's semantics (https://restic.readthedocs.io, "Removing snapshots
// according to a policy"), applied to each group separately: by default
// each disk; `forget --group-by disk,host` (any of disk, host, source)
// groups as restic's --group-by does, e.g. one disk backed up from two hosts:

//
// 1. Sort the disk's snapshots newest first.
// 2. Walk them in that order. Each bucket kind (last, hourly, daily, weekly,
//    monthly, yearly) remembers the bucket value of the last snapshot it
//    kept; a snapshot whose value differs (a new hour, day, ISO week...)
//    is kept by that kind while it has count left. So "daily 7" keeps the
//    newest snapshot of each of the 7 newest days that have snapshots.
// 3. When a duration bucket (hourly..yearly) still has count left at the
//    oldest snapshot, that oldest snapshot is kept too (restic ≥ 0.16), so
//    a young repository keeps its whole history.
// 4. --keep-within D keeps every snapshot newer than (newest snapshot − D)
//    (or now − D with withinFrom 'now'); D is e.g. 1y5m7d2h, 2w, 36h
//    (y years, m months, w weeks, d days, h hours; calendar arithmetic).
// 5. --keep-tag T keeps every snapshot carrying T.
// 6. A policy with no rule keeps everything. A count of -1 means unlimited.
// Buckets use the local time zone unless `utc` is set.
import {UsageError} from '../errors.js'
import type {Manifest} from '../repo/manifest.js'

export interface RetentionPolicy {
  last?: number
  hourly?: number
  daily?: number
  weekly?: number
  monthly?: number
  yearly?: number
  /** e.g. "7d", "2w", "1m" (one month), "1y5m7d2h". */
  within?: string
  tags?: string[]
  /** Calendar buckets in UTC instead of the local time zone. */
  utc?: boolean
  /** What --keep-within counts back from: the newest snapshot (restic) or now. */
  withinFrom?: 'newest' | 'now'
}

export interface Kept {
  snapshot: Manifest
  reasons: string[]
}

export interface PolicyResult {
  keep: Kept[]
  remove: Manifest[]
}

type BucketKind = 'last' | 'hourly' | 'daily' | 'weekly' | 'monthly' | 'yearly'
const KINDS: BucketKind[] = ['last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly']

export interface WithinDuration {
  years: number
  months: number
  days: number
  hours: number
}

/** Parses "1y5m7d2h", "2w", "36h"; throws UsageError naming the flag. */
export function parseWithin(text: string): WithinDuration {
  const d: WithinDuration = {years: 0, months: 0, days: 0, hours: 0}
  if (!/^(\d+[ymwdh])+$/.test(text)) {
    throw new UsageError(`--keep-within "${text}" is not a duration`, {hint: 'write e.g. 7d, 2w, 1m (a month), 1y or 1y6m'})
  }
  for (const [, n, unit] of text.matchAll(/(\d+)([ymwdh])/g)) {
    const v = Number(n)
    if (unit === 'y') d.years += v
    else if (unit === 'm') d.months += v
    else if (unit === 'w') d.days += 7 * v
    else if (unit === 'd') d.days += v
    else d.hours += v
  }
  return d
}

/** `from` minus the duration, with calendar arithmetic (like Go's AddDate). */
export function subtractWithin(from: Date, d: WithinDuration, utc: boolean): Date {
  const t = new Date(from.getTime())
  if (utc) t.setUTCFullYear(t.getUTCFullYear() - d.years, t.getUTCMonth() - d.months, t.getUTCDate() - d.days)
  else t.setFullYear(t.getFullYear() - d.years, t.getMonth() - d.months, t.getDate() - d.days)
  return new Date(t.getTime() - d.hours * 3_600_000)
}

interface Parts {
  y: number
  mo: number
  d: number
  h: number
}

function parts(t: Date, utc: boolean): Parts {
  return utc
    ? {y: t.getUTCFullYear(), mo: t.getUTCMonth() + 1, d: t.getUTCDate(), h: t.getUTCHours()}
    : {y: t.getFullYear(), mo: t.getMonth() + 1, d: t.getDate(), h: t.getHours()}
}

/** ISO 8601 week-numbering year and week of a calendar date. */
export function isoWeek(y: number, mo: number, d: number): {year: number; week: number} {
  const date = new Date(Date.UTC(y, mo - 1, d))
  const dow = (date.getUTCDay() + 6) % 7 // Monday = 0
  date.setUTCDate(date.getUTCDate() - dow + 3) // the Thursday of this week
  const year = date.getUTCFullYear()
  const firstThursday = new Date(Date.UTC(year, 0, 4))
  firstThursday.setUTCDate(firstThursday.getUTCDate() - ((firstThursday.getUTCDay() + 6) % 7) + 3)
  return {year, week: 1 + Math.round((date.getTime() - firstThursday.getTime()) / (7 * 86_400_000))}
}

function bucketValue(kind: BucketKind, t: Date, nr: number, utc: boolean): number {
  const p = parts(t, utc)
  switch (kind) {
    case 'last':
      return nr
    case 'hourly':
      return ((p.y * 100 + p.mo) * 100 + p.d) * 100 + p.h
    case 'daily':
      return (p.y * 100 + p.mo) * 100 + p.d
    case 'weekly': {
      const w = isoWeek(p.y, p.mo, p.d)
      return w.year * 100 + w.week
    }
    case 'monthly':
      return p.y * 100 + p.mo
    case 'yearly':
      return p.y
  }
}

/** A --keep-* count: a non-negative integer, or "unlimited" (-1). */
export function parseKeepCount(text: string, flag: string): number {
  if (text === 'unlimited') return -1
  if (!/^\d+$/.test(text)) throw new UsageError(`--${flag} "${text}" is not a count`, {hint: 'give a whole number or "unlimited"'})
  return Number(text)
}

export function isEmptyPolicy(p: RetentionPolicy): boolean {
  return KINDS.every((k) => !p[k]) && !p.within && !(p.tags && p.tags.length > 0)
}

export type GroupKey = 'disk' | 'host' | 'source'
export const GROUP_KEYS: GroupKey[] = ['disk', 'host', 'source']

/** Parses "disk,host" for --group-by; throws UsageError on an unknown key. */
export function parseGroupBy(text: string): GroupKey[] {
  const keys = text.split(',').map((k) => k.trim()).filter((k) => k)
  const bad = keys.find((k) => !GROUP_KEYS.includes(k as GroupKey))
  if (bad !== undefined || keys.length === 0) {
    throw new UsageError(`--group-by "${text}" is not a list of ${GROUP_KEYS.join(', ')}`, {hint: 'e.g. --group-by disk,host'})
  }
  return [...new Set(keys)] as GroupKey[]
}

function groupOf(s: Manifest, keys: GroupKey[]): string {
  return JSON.stringify(keys.map((k) => (k === 'disk' ? s.disk : k === 'host' ? s.hostname : s.source.path)))
}

/** Applies the policy to each group's snapshots (default: each disk); see the module comment. */
export function applyPolicy(snapshots: Manifest[], policy: RetentionPolicy, now: Date, groupBy: GroupKey[] = ['disk']): PolicyResult {
  const groups = new Map<string, Manifest[]>()
  for (const s of snapshots) {
    const g = groupOf(s, groupBy)
    groups.set(g, [...(groups.get(g) ?? []), s])
  }
  const result: PolicyResult = {keep: [], remove: []}
  for (const group of [...groups.keys()].sort()) {
    const r = applyToDisk(groups.get(group)!, policy, now)
    result.keep.push(...r.keep)
    result.remove.push(...r.remove)
  }
  return result
}

function applyToDisk(list: Manifest[], policy: RetentionPolicy, now: Date): PolicyResult {
  const sorted = [...list].sort((a, b) => b.time.localeCompare(a.time) || b.id.localeCompare(a.id))
  if (isEmptyPolicy(policy)) return {keep: sorted.map((s) => ({snapshot: s, reasons: ['no policy']})), remove: []}
  const utc = policy.utc ?? false
  const buckets = KINDS.map((kind) => ({kind, count: policy[kind] ?? 0, last: Number.NaN}))
  const within = policy.within ? parseWithin(policy.within) : null
  const anchor = policy.withinFrom === 'now' ? now : new Date(sorted[0]?.time ?? now)
  const cutoff = within ? subtractWithin(anchor, within, utc).getTime() : 0
  const result: PolicyResult = {keep: [], remove: []}
  sorted.forEach((snap, nr) => {
    const reasons: string[] = []
    const t = new Date(snap.time)
    for (const tag of policy.tags ?? []) if (snap.tags.includes(tag)) reasons.push(`has tag ${tag}`)
    if (within && t.getTime() > cutoff) reasons.push(`within ${policy.within}`)
    for (const b of buckets) {
      if (b.count === 0) continue
      const v = bucketValue(b.kind, t, nr, utc)
      const oldest = nr === sorted.length - 1 && b.kind !== 'last'
      if (v !== b.last || oldest) {
        reasons.push(v !== b.last ? `${b.kind} snapshot` : `oldest ${b.kind} snapshot`)
        b.last = v
        if (b.count > 0) b.count--
      }
    }
    if (reasons.length > 0) result.keep.push({snapshot: snap, reasons})
    else result.remove.push(snap)
  })
  return result
}
