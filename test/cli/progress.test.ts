// Progress without a TTY: a line at each phase change and one every 10 s
// while work goes on, with no --verbose; --json-progress status lines at
// most once a second. The clock is pinned (vi.setSystemTime), so the
// interval is tested without waiting for it.
import {afterEach, beforeEach, describe, expect, it, vi} from 'vitest'
import {Output} from '../../src/cli/output.js'
import {PROGRESS_INTERVAL_MS, withProgress} from '../../src/cli/progress.js'

describe('withProgress without a TTY', () => {
  let lines: string[]
  beforeEach(() => {
    lines = []
    vi.useFakeTimers({toFake: ['Date']})
    vi.setSystemTime(new Date('2026-12-02T05:00:00Z'))
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: unknown) => (lines.push(String(chunk)), true))
  })
  afterEach(() => {
    vi.restoreAllMocks()
    vi.useRealTimers()
  })

  const at = (ms: number) => vi.setSystemTime(new Date(Date.parse('2026-12-02T05:00:00Z') + ms))

  it('prints phases and a progress line every 10 s without --verbose (none with --quiet)', async () => {
    for (const quiet of [false, true]) {
      lines = []
      const out = new Output({json: false, quiet, verbose: false})
      await withProgress(out, 'backup x', async (p) => {
        p.phase('reading')
        for (let s = 0; s <= 25; s++) {
          at(s * 1000)
          p.update(s * 1_000_000, 25_000_000)
        }
        p.phase('committing')
      })
      const progress = lines.filter((l) => / reading: /.test(l))
      if (quiet) {
        expect(lines).toEqual([])
        continue
      }
      expect(lines.some((l) => l.endsWith(' reading\n'))).toBe(true)
      expect(lines.some((l) => l.endsWith(' committing\n'))).toBe(true)
      // every 10 s, and the phase's last line (25 of 25 MB) when its work is complete
      expect(progress.map((l) => l.slice(0, 24))).toEqual(['2026-12-02T05:00:00.000Z', '2026-12-02T05:00:10.000Z', '2026-12-02T05:00:20.000Z', '2026-12-02T05:00:25.000Z'])
      expect(progress[3]).toMatch(/reading: 23.8 MiB of 23.8 MiB \(100.0%\)/)
      expect(progress[1]).toMatch(/reading: 9.54 MiB of 23.8 MiB \(40.0%\), .*\/s, ETA /)
      expect(PROGRESS_INTERVAL_MS).toBe(10_000)
    }
  })

  it('--json-progress: JSON status lines, at most one a second, phases named', async () => {
    const out = new Output({json: true, quiet: false, verbose: false, jsonProgress: true})
    await withProgress(out, 'backup x', async (p) => {
      p.phase('reading')
      for (let t = 0; t <= 3000; t += 250) {
        at(t)
        p.update(t * 1000, 3_000_000)
      }
      p.phase('committing')
    })
    const docs = lines.map((l) => JSON.parse(l))
    expect(docs.every((d) => d.type === 'status')).toBe(true)
    expect(docs.map((d) => d.phase)).toEqual(['backup x', 'reading', 'reading', 'reading', 'reading', 'committing'])
    const last = docs[4]
    expect(last).toEqual({type: 'status', phase: 'reading', bytesDone: 3_000_000, bytesTotal: 3_000_000, percentDone: 1, secondsElapsed: 3, secondsRemaining: 0})
  })

  it('counts what is not bytes in its own unit (copy: snapshots, check: chunks), in text and JSON', async () => {
    await withProgress(new Output({json: false, quiet: false, verbose: false}), 'copy a → b', async (p) => p.update(1, 1), false, 'snapshot')
    expect(lines.at(-1)).toMatch(/copy a → b: 1 of 1 snapshot \(100\.0%\)\n$/)
    lines = []
    await withProgress(new Output({json: true, quiet: false, verbose: false, jsonProgress: true}), 'check r', async (p) => p.update(4, 4), false, 'chunk')
    expect(JSON.parse(lines.at(-1)!)).toMatchObject({unit: 'chunk', done: 4, total: 4, percentDone: 1})
    expect(lines.join('')).not.toContain('bytesDone')
  })
})
