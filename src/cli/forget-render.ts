// Rendering of forget and prune results (commands forget, prune, run).
import {counted, formatBytes, table} from './output.js'
import {formatTime} from './times.js'
import type {PruneResult} from '../prune/prune.js'
import type {RunForgetResult} from '../prune/run-forget.js'
import {shortId} from '../repo/manifest.js'

export function forgetDoc(res: RunForgetResult): object {
  return {
    dryRun: res.dryRun,
    keep: res.kept.map((k) => ({id: k.snapshot.id, disk: k.snapshot.disk, time: k.snapshot.time, reasons: k.reasons})),
    remove: res.removed.map((m) => ({id: m.id, disk: m.disk, time: m.time})),
    rebased: res.rebased,
    damagedRemoved: res.damagedRemoved,
    /** Every snapshot removed, readable or damaged. */
    removedCount: res.removed.length + res.damagedRemoved.length,
    manifestsRewritten: res.manifestsRewritten,
    indexesRemoved: res.indexesRemoved,
    prune: res.prune,
  }
}

export function forgetText(res: RunForgetResult, localTime = false): string {
  const rows = [['', 'ID', 'TIME', 'DISK', 'WHY']]
  for (const k of res.kept) rows.push(['keep', shortId(k.snapshot.id), formatTime(k.snapshot.time, localTime), k.snapshot.disk, k.reasons.join(', ')])
  for (const m of res.removed) rows.push([res.dryRun ? 'would remove' : 'removed', shortId(m.id), formatTime(m.time, localTime), m.disk, ''])
  const lines = rows.length > 1 ? [table(rows)] : []
  for (const id of res.damagedRemoved) lines.push(`${shortId(id)} (damaged) ${res.dryRun ? 'would be' : 'was'} removed`)
  for (const r of res.rebased) lines.push(`${shortId(r.id)} ${res.dryRun ? 'would rest' : 'now rests'} on ${r.newParent ? shortId(r.newParent) : 'nothing'} (${r.indexKind} index)`)
  const damaged = res.damagedRemoved.length
  const removed = res.removed.length + damaged
  lines.push(`${counted(removed, 'snapshot')}${damaged ? ` (${damaged} damaged)` : ''} ${res.dryRun ? 'would be ' : ''}removed, ${res.kept.length || 'the others'} kept`)
  if (res.prune) lines.push(pruneLine(res.prune))
  return lines.join('\n')
}

export function pruneLine(p: PruneResult): string {
  return `prune: ${counted(p.chunksRemoved, 'chunk')} and ${counted(p.indexesRemoved, 'index', 'indexes')} ${p.dryRun ? 'would be ' : ''}removed, ${formatBytes(p.bytesFreed)} ${p.dryRun ? 'to free' : 'freed'}; ${counted(p.chunksKept, 'chunk')} kept`
}
