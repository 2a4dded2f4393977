// --listen HOST:PORT and --socket PATH as one address, and whether it stays
// on this machine (anything else is served to the network without TLS).
import {isIP} from 'node:net'
import {UsageError} from '../errors.js'
import type {ListenAddress} from '../nbd/server.js'

export const DEFAULT_LISTEN = '127.0.0.1:10809'

export function parseListen(listen: string | undefined, socket: string | undefined): ListenAddress {
  if (listen && socket) throw new UsageError('--listen and --socket cannot be combined: give one place to listen')
  if (socket) return {path: socket}
  const text = listen ?? DEFAULT_LISTEN
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text)
  const host = m?.[1] ?? m?.[2]
  const port = Number(m?.[3])
  if (!m || !host || port > 65535 || (m[1] !== undefined && isIP(host) !== 6)) {
    throw new UsageError(`--listen ${text} is not HOST:PORT`, {hint: 'e.g. --listen 127.0.0.1:10809 or --listen [::1]:10809 (port 0 picks a free one)'})
  }
  return {host, port}
}

export function isLoopback(addr: ListenAddress): boolean {
  if ('path' in addr) return true
  return addr.host === 'localhost' || addr.host === '::1' || /^127\./.test(addr.host)
}
