// The lock file's content: a small plaintext JSON object naming host, pid,
// kind and times (docs/FORMAT.md, "Locks"). One parser for it: a file that
// is not valid JSON, or lacks a field or has one of the wrong type, is
// "unreadable". An unreadable lock cannot name a live process we could ask
// about, so it is treated as stale: it blocks nobody, and `unlock` removes
// it and says which (a crash half-way through writing, a hand edit, another
// tool's file).
import {hostname} from 'node:os'

export interface LockInfo {
  host: string
  pid: number
  exclusive: boolean
  command: string
  created: string
  refreshed: string
}

/** After this long without a refresh a lock is stale on any host. */
export const STALE_MS = 15 * 60_000

/** The lock's fields, or why they cannot be trusted. */
export function parseLockInfo(text: string): LockInfo | {unreadable: string} {
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch {
    return {unreadable: 'not valid JSON'}
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return {unreadable: 'not a JSON object'}
  const o = v as Record<string, unknown>
  const problems: string[] = []
  for (const k of ['host', 'command', 'created', 'refreshed'] as const) {
    if (typeof o[k] !== 'string' || (k === 'host' && o[k] === '')) problems.push(o[k] === undefined ? `no "${k}"` : `a bad "${k}"`)
  }
  if (!Number.isSafeInteger(o.pid) || (o.pid as number) <= 0) problems.push(o.pid === undefined ? 'no "pid"' : 'a bad "pid"')
  if (typeof o.exclusive !== 'boolean') problems.push(o.exclusive === undefined ? 'no "exclusive"' : 'a bad "exclusive"')
  for (const k of ['created', 'refreshed'] as const) {
    if (typeof o[k] === 'string' && !Number.isFinite(Date.parse(o[k]))) problems.push(`a bad "${k}"`)
  }
  if (problems.length > 0) return {unreadable: `it has ${problems.join(', ')}`}
  return o as unknown as LockInfo
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

export function isStale(info: LockInfo, now: number, host = hostname()): boolean {
  if (info.host === host && !pidAlive(info.pid)) return true
  const refreshed = Date.parse(info.refreshed)
  return !Number.isFinite(refreshed) || now - refreshed > STALE_MS
}

/** `"backup" (pid 42 on web1, since 2026-...)`: the holder as messages name it. */
export function describeHolder(info: LockInfo): string {
  return `"${info.command}" (pid ${info.pid} on ${info.host}, since ${info.created})`
}
