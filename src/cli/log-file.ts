// --log-file: every status line appended with an ISO timestamp, never an
// escape code, so cron runs leave a readable history.
import {appendFileSync} from 'node:fs'
import {toVdsnapError} from '../errors.js'

export class LogFile {
  constructor(readonly path: string) {
    this.write('') // fail early (permission, missing directory), before any work
  }

  write(line: string): void {
    try {
      // eslint-disable-next-line no-control-regex
      if (line) appendFileSync(this.path, `${new Date().toISOString()} ${line.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '')}\n`)
      else appendFileSync(this.path, '')
    } catch (e) {
      throw toVdsnapError(e, `writing log file ${this.path}`)
    }
  }
}
