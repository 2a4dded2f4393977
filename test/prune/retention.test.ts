// Retention table tests with a pinned clock and UTC buckets: GFS edge
// cases at month and year boundaries, several snapshots a day, ISO weeks,
// --keep-within calendar arithmetic, tags, the oldest-snapshot rule.
import {describe, expect, it} from 'vitest'
import {applyPolicy, isoWeek, parseWithin, type RetentionPolicy} from '../../src/prune/retention.js'
import type {Manifest} from '../../src/repo/manifest.js'

function snap(time: string, disk = 'vm', tags: string[] = []): Manifest {
  return {
    version: 1, id: time.replace(/\D/g, '').padEnd(64, '0'), disk, time, parent: null, index: '', indexKind: 'full', chainLength: 0,
    blockSize: 65536, virtualSize: 65536, source: {path: '', format: 'raw', size: 0, mtimeMs: 0}, tags, hostname: 'h',
    stats: {bytesRead: 0, bytesChanged: 0, bytesNew: 0, bytesStored: 0, blocksChanged: 0, blocksNew: 0, blocksUsed: 0, durationMs: 0},
  }
}

const NOW = new Date('2027-01-05T12:00:00Z')

function kept(times: string[], policy: RetentionPolicy, tags: Record<string, string[]> = {}): string[] {
  const r = applyPolicy(times.map((t) => snap(t, 'vm', tags[t] ?? [])), {...policy, utc: true}, NOW)
  expect(r.keep.length + r.remove.length).toBe(times.length)
  return r.keep.map((k) => k.snapshot.time).sort()
}

/** Every `hours` hours from `from` for `n` snapshots. */
function series(from: string, hours: number, n: number): string[] {
  return Array.from({length: n}, (_, i) => new Date(Date.parse(from) + i * hours * 3_600_000).toISOString())
}

describe('applyPolicy', () => {
  const fourADay = series('2026-12-28T01:00:00.000Z', 6, 40) // 10 days, 4 a day, across the year boundary

  it.each([
    ['keep-last 3 keeps the 3 newest', {last: 3}, fourADay.slice(-3)],
    ['keep-daily 3 keeps the last of each of the 3 newest days', {daily: 3}, ['2027-01-04T19:00:00.000Z', '2027-01-05T19:00:00.000Z', '2027-01-06T19:00:00.000Z']],
    ['keep-hourly 2 with 6-hourly snapshots keeps 2', {hourly: 2}, fourADay.slice(-2)],
    ['keep-daily crosses the year boundary', {daily: 10}, series('2026-12-28T19:00:00.000Z', 24, 10)],
    ['keep-yearly 2 keeps the newest of 2027 and of 2026', {yearly: 2}, ['2026-12-31T19:00:00.000Z', '2027-01-06T19:00:00.000Z']],
    ['keep-monthly 5 with only 2 months keeps both and the oldest', {monthly: 5}, ['2026-12-28T01:00:00.000Z', '2026-12-31T19:00:00.000Z', '2027-01-06T19:00:00.000Z']],
    // ISO weeks: 2026-12-28 (Mon) .. 2027-01-03 (Sun) are week 53 of 2026; 01-04.. is week 1 of 2027
    ['keep-weekly 1 keeps the newest of the newest ISO week', {weekly: 1}, ['2027-01-06T19:00:00.000Z']],
    ['keep-weekly 2 keeps the Sunday of ISO week 2026-W53', {weekly: 2}, ['2027-01-03T19:00:00.000Z', '2027-01-06T19:00:00.000Z']],
    ['keep-within 2d keeps what is newer than newest − 48h', {within: '2d'}, fourADay.filter((t) => t > '2027-01-04T19:00:00.000Z')],
    ['keep-within 1w', {within: '1w'}, fourADay.filter((t) => t > '2026-12-30T19:00:00.000Z')],
    ['unlimited daily keeps one a day, and the oldest', {daily: -1}, ['2026-12-28T01:00:00.000Z', ...series('2026-12-28T19:00:00.000Z', 24, 10)]],
    ['rules combine (union)', {last: 1, daily: 2}, ['2027-01-05T19:00:00.000Z', '2027-01-06T19:00:00.000Z']],
  ] as [string, RetentionPolicy, string[]][])('%s', (_name, policy, want) => {
    expect(kept(fourADay, policy)).toEqual([...want].sort())
  })

  it('keep-monthly at month ends: the last snapshot of each month', () => {
    const times = ['2026-01-31T23:59:59.000Z', '2026-02-01T00:00:00.000Z', '2026-02-28T23:00:00.000Z', '2026-03-01T00:30:00.000Z', '2026-03-31T23:00:00.000Z', '2026-04-01T00:00:01.000Z']
    expect(kept(times, {monthly: 3})).toEqual(['2026-02-28T23:00:00.000Z', '2026-03-31T23:00:00.000Z', '2026-04-01T00:00:01.000Z'])
  })

  it('keep-within 1m uses calendar months (Mar 31 − 1 month = Mar 3)', () => {
    const times = ['2026-03-02T00:00:00.000Z', '2026-03-03T00:00:00.000Z', '2026-03-03T00:00:01.000Z', '2026-03-31T00:00:00.000Z']
    expect(kept(times, {within: '1m'})).toEqual(['2026-03-03T00:00:01.000Z', '2026-03-31T00:00:00.000Z'])
  })

  it('keep-within relative to now when asked', () => {
    const times = ['2026-12-20T00:00:00.000Z', '2027-01-01T00:00:00.000Z']
    const r = applyPolicy(times.map((t) => snap(t)), {within: '7d', withinFrom: 'now', utc: true}, NOW)
    expect(r.keep.map((k) => k.snapshot.time)).toEqual(['2027-01-01T00:00:00.000Z'])
  })

  it('keep-tag keeps tagged snapshots and says why', () => {
    const times = series('2026-06-01T00:00:00.000Z', 24, 5)
    const r = applyPolicy(times.map((t, i) => snap(t, 'vm', i === 1 ? ['monthly'] : [])), {last: 1, tags: ['monthly'], utc: true}, NOW)
    expect(r.keep.map((k) => [k.snapshot.time, k.reasons])).toEqual([
      [times[4], ['last snapshot']],
      [times[1], ['has tag monthly']],
    ])
  })

  it('groups per disk', () => {
    const list = [snap('2026-01-01T00:00:00.000Z', 'a'), snap('2026-01-02T00:00:00.000Z', 'a'), snap('2026-01-01T00:00:00.000Z', 'b')]
    const r = applyPolicy(list, {last: 1, utc: true}, NOW)
    expect(r.keep.map((k) => `${k.snapshot.disk}@${k.snapshot.time.slice(0, 10)}`)).toEqual(['a@2026-01-02', 'b@2026-01-01'])
  })

  it('an empty policy keeps everything', () => {
    expect(kept(fourADay, {})).toHaveLength(40)
  })

  it('reasons name every rule that keeps a snapshot', () => {
    const r = applyPolicy(fourADay.map((t) => snap(t)), {last: 1, daily: 1, weekly: 1, monthly: 1, yearly: 1, utc: true}, NOW)
    expect(r.keep[0]!.reasons).toEqual(['last snapshot', 'daily snapshot', 'weekly snapshot', 'monthly snapshot', 'yearly snapshot'])
  })
})

describe('isoWeek and parseWithin', () => {
  it.each([
    ['2026-12-28', 2026, 53],
    ['2027-01-03', 2026, 53],
    ['2027-01-04', 2027, 1],
    ['2024-12-30', 2025, 1],
    ['2021-01-03', 2020, 53],
    ['2026-06-15', 2026, 25],
  ])('%s is week %i-%i', (d, y, w) => {
    const [yy, mm, dd] = d.split('-').map(Number) as [number, number, number]
    expect(isoWeek(yy, mm, dd)).toEqual({year: y, week: w})
  })

  it('parses compound durations and rejects junk', () => {
    expect(parseWithin('1y5m2w7d2h')).toEqual({years: 1, months: 5, days: 21, hours: 2})
    expect(() => parseWithin('7 days')).toThrow(/--keep-within/)
  })
})
