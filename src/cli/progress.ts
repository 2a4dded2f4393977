// Live progress, on stderr only (stdout carries results and --json):
// - On a TTY (with or without --json): a listr2 task whose line names the
//   phase ("reading", "committing"...) with bytes, rate and ETA; the ETA is
//   kept from the last rate between updates.
// - Without a TTY (cron, pipes): timestamped lines, no escape codes, at
//   each phase change and every PROGRESS_INTERVAL_MS (10 s) while work goes
//   on, and when a phase's work is complete, with or without --verbose
//   (--quiet: none).
// - --json-progress: one JSON object per line instead, like restic's status
//   messages: {"type":"status","phase",...,"bytesDone","bytesTotal",
//   "percentDone","secondsElapsed","secondsRemaining"}, at phase changes and
//   at most once a second.
// Updates are throttled by the engine (≤ 5 per second).
import {formatBytes, formatDuration, type Output} from './output.js'

export interface Progress {
  phase(name: string): void
  update(done: number, total: number): void
}

/** Between two plain progress lines without a TTY. */
export const PROGRESS_INTERVAL_MS = 10_000
const JSON_INTERVAL_MS = 1_000

interface Figures {
  /** What is counted: bytes (undefined), or a unit such as "snapshot". */
  unit?: string
  phase: string
  done: number
  total: number
  elapsedMs: number
  rate: number
  etaMs: number | null
}

function figures(phase: string, done: number, total: number, startedMs: number, unit?: string): Figures {
  const elapsedMs = Math.max(1, Date.now() - startedMs)
  const rate = (done / elapsedMs) * 1000
  return {unit, phase, done, total, elapsedMs, rate, etaMs: rate > 0 && total > done ? ((total - done) / rate) * 1000 : total > 0 && done >= total ? 0 : null}
}

function describe(f: Figures): string {
  const pct = f.total > 0 ? ` (${Math.min(100, (100 * f.done) / f.total).toFixed(1)}%)` : ''
  const eta = f.etaMs !== null && f.etaMs > 0 ? `, ETA ${formatDuration(Math.round(f.etaMs))}` : ''
  if (f.unit) return `${f.phase}: ${f.done} of ${f.total} ${f.unit}${f.total === 1 ? '' : 's'}${pct}${eta}`
  return `${f.phase}: ${formatBytes(f.done)} of ${formatBytes(f.total)}${pct}, ${formatBytes(f.rate)}/s${eta}`
}

function statusLine(f: Figures): string {
  return JSON.stringify({
    type: 'status',
    phase: f.phase,
    ...(f.unit ? {unit: f.unit, done: f.done, total: f.total} : {bytesDone: f.done, bytesTotal: f.total}),
    percentDone: f.total > 0 ? Math.min(1, f.done / f.total) : 0,
    secondsElapsed: Math.round(f.elapsedMs / 1000),
    secondsRemaining: f.etaMs === null ? null : Math.round(f.etaMs / 1000),
  })
}

/** `stdoutBusy`: stdout carries data (restore --to -): listr2 must not touch it. */
/** `unit`: what done/total count when it is not bytes ("snapshot" for copy). */
export async function withProgress<T>(out: Output, title: string, work: (p: Progress) => Promise<T>, stdoutBusy = false, unit?: string): Promise<T> {
  if (out.mode.jsonProgress) return withStatusLines(title, work, unit)
  if (out.tty && !stdoutBusy && !out.mode.quiet && process.stderr.columns) return withListr(title, work, unit)
  let phase = title
  let started = Date.now()
  let last = 0
  let ended = ''
  out.log(title)
  return work({
    phase(name) {
      phase = name
      started = Date.now()
      out.log(name)
    },
    update(done, total) {
      const now = Date.now()
      const end = total > 0 && done >= total
      if ((now - last < PROGRESS_INTERVAL_MS && !end) || (end && ended === phase)) return
      last = now
      if (end) ended = phase // the phase's last line once, whatever the interval
      out.log(describe(figures(phase, done, total, started, unit)))
    },
  })
}

async function withStatusLines<T>(title: string, work: (p: Progress) => Promise<T>, unit?: string): Promise<T> {
  let phase = title
  let started = Date.now()
  let last = 0
  let ended = ''
  const emit = (done: number, total: number) => process.stderr.write(statusLine(figures(phase, done, total, started, unit)) + '\n')
  emit(0, 0)
  return work({
    phase(name) {
      phase = name
      started = Date.now()
      last = Date.now()
      emit(0, 0)
    },
    update(done, total) {
      const now = Date.now()
      const end = total > 0 && done >= total
      if ((now - last < JSON_INTERVAL_MS && !end) || (end && ended === phase)) return
      last = now
      if (end) ended = phase
      emit(done, total)
    },
  })
}

async function withListr<T>(title: string, work: (p: Progress) => Promise<T>, unit?: string): Promise<T> {
  const {Listr, ListrLogger, ProcessOutput} = await import('listr2')
  let result: T
  let phase = title
  let started = Date.now()
  const list = new Listr(
    [
      {
        title,
        task: async (_ctx, task) => {
          result = await work({
            phase(name) {
              phase = name
              started = Date.now()
              task.output = name
            },
            update(done, total) {
              task.output = describe(figures(phase, done, total, started, unit))
            },
          })
        },
        rendererOptions: {outputBar: 1, persistentOutput: false},
      },
    ],
    // listr2 writes to stdout by default; keep stdout for results (and --json) only.
    {renderer: 'default', exitOnError: true, registerSignalListeners: false, rendererOptions: {logger: new ListrLogger({processOutput: new ProcessOutput(process.stderr, process.stderr)})}},
  )
  await list.run()
  return result!
}
