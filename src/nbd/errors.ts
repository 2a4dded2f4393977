// NBD failures as vdsnap's typed errors, each one line naming the URL the
// user gave. The classes follow the README's exit-code table:
//   - the server cannot be reached, the connection drops, the server
//     reports a read error, or it stops answering: I/O (exit 7);
//   - the server breaks the protocol (garbage, a reply nobody asked for,
//     a read reply that does not cover the request): data error (exit 6);
//   - the export does not exist: not found (exit 8).
import {DataError, IoError, NotFoundError, VdsnapError} from '../errors.js'
import {NbdOptionRefused} from './handshake.js'
import {Errno, NbdConnectionError, NbdProtocolError, Rep} from './protocol.js'

/** An error the server reported for one request (an errno in a reply). */
export class NbdServerError extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message)
    this.name = 'NbdServerError'
  }
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(Errno).map(([k, v]) => [v, k]))

export function errnoName(n: number): string {
  return ERRNO_NAMES.get(n) ?? `error ${n}`
}

const RETRY_HINT = 'check that the NBD server is running and reachable, then run again'

export function nbdError(e: unknown, url: string, doing: string): VdsnapError {
  if (e instanceof VdsnapError) return e
  if (e instanceof NbdConnectionError) return new IoError(`${url}: lost the connection to the NBD server ${doing} (${e.message})`, {cause: e, hint: RETRY_HINT})
  if (e instanceof NbdProtocolError) {
    return new DataError(`${url}: the server broke the NBD protocol ${doing}: ${e.message}`, {cause: e, hint: 'check the server (qemu-nbd, qemu, nbdkit) and its version'})
  }
  if (e instanceof NbdServerError) return new IoError(`${url}: the server failed ${doing}: ${e.message}`, {cause: e, hint: 'check the server\'s log and its disk'})
  if (e instanceof NbdOptionRefused) return refused(e, url)
  const code = (e as NodeJS.ErrnoException)?.code
  const msg = (e as Error)?.message ?? String(e)
  if (code === 'ECONNREFUSED' || code === 'ENOENT' || code === 'EACCES' || code === 'ECONNRESET' || code === 'EPIPE' || code === 'ETIMEDOUT' || code === 'EHOSTUNREACH') {
    return new IoError(`${url}: cannot reach the NBD server ${doing} (${code})`, {cause: e, hint: RETRY_HINT})
  }
  return new IoError(`${url}: ${msg} ${doing}`, {cause: e, hint: RETRY_HINT})
}

function refused(e: NbdOptionRefused, url: string): VdsnapError {
  const said = e.message ? ` (server: ${e.message.replace(/\s+/g, ' ').trim()})` : ''
  switch (e.replyType) {
    case Rep.ERR_UNKNOWN:
      return new NotFoundError(`${url}: the server has no such export${said}`, {hint: 'list its exports with `nbdinfo --list URL` and name one in the URL path'})
    case Rep.ERR_TLS_REQD:
      return new IoError(`${url}: the server requires TLS, which vdsnap does not speak${said}`, {hint: 'export the disk without TLS on 127.0.0.1 or a unix socket'})
    case Rep.ERR_POLICY:
      return new IoError(`${url}: the server refused the export${said}`, {hint: 'check the server\'s access settings'})
    default:
      return new IoError(`${url}: the server refused to open the export (reply ${e.replyType - 0x80000000})${said}`, {hint: RETRY_HINT})
  }
}
