// The snapshot filter flags shared by snapshots, forget and restore.
import {Flags} from '@oclif/core'
import type {SnapshotFilter} from '../repo/snapshot-filter.js'

export const filterFlags = {
  host: Flags.string({summary: 'Only snapshots taken on this host (repeatable: any of them).', multiple: true, multipleNonGreedy: true, helpGroup: 'FILTER'}),
  source: Flags.string({summary: 'Only snapshots of this source path (repeatable: any of them).', multiple: true, multipleNonGreedy: true, helpGroup: 'FILTER'}),
  tag: Flags.string({summary: 'Only snapshots with this tag; "a,b" needs both (repeatable: any of them).', multiple: true, multipleNonGreedy: true, helpGroup: 'FILTER'}),
}

export function filterOf(f: {host?: string[]; source?: string[]; tag?: string[]}): SnapshotFilter {
  return {hosts: f.host ?? [], sources: f.source ?? [], tags: f.tag ?? []}
}
