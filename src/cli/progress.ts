// Live progress. On a TTY: a listr2 task showing phase, bytes, rate and
// ETA. Without a TTY (cron, pipes, --json): timestamped lines on stderr at
// phase changes, plus a progress line every 15 s with --verbose; no escape
// codes ever. Updates are throttled by the engine (≤ 5 per second).
import {formatBytes, formatDuration, type Output} from './output.js'

export interface Progress {
  phase(name: string): void
  update(done: number, total: number): void
}

function describe(phase: string, done: number, total: number, startedMs: number): string {
  const elapsed = Math.max(1, Date.now() - startedMs)
  const rate = (done / elapsed) * 1000
  const pct = total > 0 ? ` (${Math.min(100, (100 * done) / total).toFixed(1)}%)` : ''
  const eta = rate > 0 && total > done ? `, ETA ${formatDuration(((total - done) / rate) * 1000)}` : ''
  return `${phase}: ${formatBytes(done)} of ${formatBytes(total)}${pct}, ${formatBytes(rate)}/s${eta}`
}

/** `stdoutBusy`: stdout carries data (restore --to -): listr2 must not touch it. */
export async function withProgress<T>(out: Output, title: string, work: (p: Progress) => Promise<T>, stdoutBusy = false): Promise<T> {
  if (out.tty && !stdoutBusy && !out.mode.json && !out.mode.quiet && process.stderr.columns) {
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
                task.output = describe(phase, done, total, started)
              },
            })
          },
          rendererOptions: {outputBar: 1, persistentOutput: false},
        },
      ],
      // listr2 writes to stdout by default; keep stdout for results only.
      {renderer: 'default', exitOnError: true, registerSignalListeners: false, rendererOptions: {logger: new ListrLogger({processOutput: new ProcessOutput(process.stderr, process.stderr)})}},
    )
    await list.run()
    return result!
  }
  let phase = title
  let started = Date.now()
  let last = 0
  out.log(title)
  return work({
    phase(name) {
      phase = name
      started = Date.now()
      if (out.mode.verbose) out.log(name)
    },
    update(done, total) {
      const now = Date.now()
      if (!out.mode.verbose || now - last < 15_000) return
      last = now
      out.log(describe(phase, done, total, started))
    },
  })
}
