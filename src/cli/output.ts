// Rendering: --json prints exactly one JSON document on stdout; human output
// goes to stdout; warnings and progress go to stderr. Without a TTY, lines
// carry a timestamp and no escape codes.
import {EXIT_CODES, type ErrorCode, type ExitKind} from '../errors.js'

/** What --json error output says about an error (README: "Errors are one line..."). */
export interface ErrorReport {
  message: string
  kind: ExitKind
  code: ErrorCode
  object?: string
  offset?: number
  /** The exit status when it is not the kind's (oclif's own errors carry theirs). */
  exitCode?: number
}

/**
 * The one JSON document printed on stdout for a failed command with --json:
 * `{"error": {"message", "kind", "code", "exitCode"}}`, plus `object` and
 * `offset` when the error concerns one.
 */
export function errorDocument(r: ErrorReport): string {
  const {message, kind, code, object, offset} = r
  return JSON.stringify({error: {message, kind, code, exitCode: r.exitCode ?? EXIT_CODES[kind], ...(object === undefined ? {} : {object}), ...(offset === undefined ? {} : {offset})}})
}

export interface OutputMode {
  json: boolean
  quiet: boolean
  verbose: boolean
  /** Progress as JSON status lines on stderr (--json-progress). */
  jsonProgress?: boolean
}

export class Output {
  readonly tty: boolean

  constructor(readonly mode: OutputMode) {
    this.tty = Boolean(process.stderr.isTTY && (process.stderr.columns ?? 0) > 0)
  }

  /** The command's result: JSON document or human text. */
  result(doc: unknown, human: () => string): void {
    if (this.mode.json) process.stdout.write(JSON.stringify(doc, null, 2) + '\n')
    else if (!this.mode.quiet) {
      const text = human()
      if (text) process.stdout.write(text.endsWith('\n') ? text : text + '\n')
    }
  }

  /** A status line on stderr (timestamped without a TTY). */
  log(line: string): void {
    if (this.mode.quiet) return
    process.stderr.write(this.tty ? `${line}\n` : `${new Date().toISOString()} ${line}\n`)
  }

  warn(line: string): void {
    process.stderr.write(this.tty ? `warning: ${line}\n` : `${new Date().toISOString()} warning: ${line}\n`)
  }
}

/** "1 snapshot", "3 snapshots": a count and its noun (a plain -s plural unless `plural` is given). */
export function counted(n: number, noun: string, plural = `${noun}s`): string {
  return `${n} ${n === 1 ? noun : plural}`
}

// Lives next to parseSize (the backup engine words notices with it too).
export {formatBytes} from '../repo/config.js'

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms} ms`
  const s = ms / 1000
  if (s < 60) return `${s.toFixed(1)} s`
  const m = Math.floor(s / 60)
  return `${m}m${Math.round(s - m * 60)
    .toString()
    .padStart(2, '0')}s`
}

export function table(rows: string[][]): string {
  if (rows.length === 0) return ''
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)))
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join('  ').trimEnd()).join('\n')
}
