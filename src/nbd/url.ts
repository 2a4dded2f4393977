// NBD URLs as users give them (the NBD URI convention that qemu, libnbd and
// nbdkit share):
//   nbd://HOST[:PORT]/EXPORT           TCP, port 10809 by default
//   nbd+unix:///EXPORT?socket=PATH     a unix socket
// The export name is the path without its leading slash, percent-decoded;
// an empty path is the server's default export (""). TLS (nbds://) is not
// spoken: refused with a usage error rather than sent in the clear.
import {UsageError} from '../errors.js'

export const DEFAULT_PORT = 10809

export interface NbdAddress {
  /** The URL as the user gave it: every message names it. */
  url: string
  exportName: string
  host?: string
  port?: number
  socket?: string
}

const SCHEMES = /^nbds?(\+(unix|tcp|vsock))?:\/\//i

/** True when the source names an NBD server rather than a file. */
export function isNbdUrl(source: string): boolean {
  return SCHEMES.test(source)
}

export function parseNbdUrl(source: string): NbdAddress {
  const bad = (what: string): UsageError =>
    new UsageError(`${source}: ${what}`, {hint: 'give nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH'})
  let u: URL
  try {
    u = new URL(source)
  } catch {
    throw bad('not a valid NBD URL')
  }
  const scheme = u.protocol.slice(0, -1).toLowerCase()
  if (scheme.startsWith('nbds')) throw bad('NBD over TLS is not supported')
  let exportName: string
  try {
    exportName = decodeURIComponent(u.pathname.replace(/^\//, ''))
  } catch {
    throw bad('the export name is not valid percent-encoding')
  }
  if (Buffer.byteLength(exportName) > 4096) throw bad('the export name is longer than 4096 bytes')
  const params = [...u.searchParams.keys()]
  if (scheme === 'nbd' || scheme === 'nbd+tcp') {
    if (!u.hostname) throw bad('no host')
    if (params.length > 0) throw bad(`unknown query parameter "${params[0]}"`)
    const host = u.hostname.replace(/^\[(.*)\]$/, '$1')
    return {url: source, exportName, host, port: u.port ? Number(u.port) : DEFAULT_PORT}
  }
  if (scheme === 'nbd+unix') {
    if (u.host) throw bad('a unix-socket URL has no host (three slashes: nbd+unix:///EXPORT?socket=PATH)')
    const socket = u.searchParams.get('socket')
    if (!socket) throw bad('no socket=PATH parameter')
    const other = params.find((p) => p !== 'socket')
    if (other) throw bad(`unknown query parameter "${other}"`)
    return {url: source, exportName, socket}
  }
  throw bad(`the ${scheme}:// transport is not supported`)
}
