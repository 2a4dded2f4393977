// Which snapshots a command considers: --host, --source and --tag, as
// restic's snapshot filters. Each flag may repeat; a snapshot matches when
// it matches one value of every flag given. A --tag value may list tags
// separated by commas, all of which the snapshot must carry ("a,b" = a and
// b; "--tag a --tag b" = a or b). --source compares the absolute source path
// the snapshot recorded (relative values are resolved first).
import {resolve} from 'node:path'
import type {Manifest} from './manifest.js'

export interface SnapshotFilter {
  hosts?: string[]
  sources?: string[]
  tags?: string[]
}

export function isEmptyFilter(f: SnapshotFilter | undefined): boolean {
  return !f || (!f.hosts?.length && !f.sources?.length && !f.tags?.length)
}

export function matchesFilter(m: Manifest, f: SnapshotFilter | undefined): boolean {
  if (!f) return true
  if (f.hosts?.length && !f.hosts.includes(m.hostname)) return false
  if (f.sources?.length && !f.sources.some((s) => resolve(s) === m.source.path)) return false
  if (f.tags?.length) {
    const any = f.tags.some((group) => group.split(',').filter((t) => t).every((t) => m.tags.includes(t)))
    if (!any) return false
  }
  return true
}

/** How the filter reads in a message: ` (host web1, tag nightly)`, or '' when empty. */
export function describeFilter(f: SnapshotFilter | undefined): string {
  if (isEmptyFilter(f)) return ''
  const parts = [
    ...(f!.hosts ?? []).map((h) => `host ${h}`),
    ...(f!.sources ?? []).map((s) => `source ${s}`),
    ...(f!.tags ?? []).map((t) => `tag ${t}`),
  ]
  return ` matching ${parts.join(', ')}`
}
