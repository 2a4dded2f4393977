// Opens the storage behind a repository location and composes the wrappers
// (retry, bandwidth, concurrency). This is the one place that decides their
// order. Heavy backends (SFTP, S3) are imported lazily so that a local
// backup does not pay for loading ssh2 or the AWS SDK.
//
// Locations: a path, file:///abs/path, sftp://user@host[:port]/path (a path
// starting "/~/" is relative to the login directory), s3://bucket[/prefix].
// Anything else is a UsageError.
import {userInfo} from 'node:os'
import {resolve} from 'node:path'
import {fileURLToPath} from 'node:url'
import {UsageError} from '../errors.js'
import {BandwidthBackend} from '../backend/bandwidth.js'
import {ConcurrencyBackend} from '../backend/concurrency.js'
import {LocalBackend} from '../backend/local.js'
import {RetryBackend, type RetryOptions} from '../backend/retry.js'
import type {S3Location} from '../backend/s3.js'
import type {SftpLocation} from '../backend/sftp.js'
import type {StorageBackend} from '../backend/types.js'
import {expandIdentityPath, readSshConfig} from '../backend/ssh-config.js'

export interface StorageOptions {
  /** Bytes per second, 0 or undefined for no limit. */
  limitUpload?: number
  limitDownload?: number
  /** Transfers in flight at once; default 8 (local), 16 (S3) or 32 (SFTP). */
  connections?: number
  /** SFTP: private key file, offered alone (like `ssh -i` with IdentitiesOnly). */
  sshKey?: string
  /** SFTP: known_hosts file; default ~/.ssh/known_hosts. */
  knownHostsFile?: string
  /** SFTP: OpenSSH client configuration; default ~/.ssh/config. */
  sshConfigFile?: string
  /** S3: endpoint URL; default AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL / AWS. */
  s3Endpoint?: string
  /** S3: force path-style addressing; default on for IP and localhost endpoints. */
  s3PathStyle?: boolean
  s3Region?: string
  /** Backoff settings; tests inject sleep and randomness here. */
  retry?: RetryOptions
}

export type ParsedLocation =
  | {kind: 'local'; path: string}
  /** `given`: which parts the location spelled out (they win over ~/.ssh/config). */
  | {kind: 'sftp'; sftp: SftpLocation; given: {user: boolean; port: boolean}}
  | {kind: 's3'; s3: S3Location}

/** Parses a repository location; throws UsageError for anything unsupported. */
export function parseLocation(location: string): ParsedLocation {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(location)?.[1]?.toLowerCase()
  if (!scheme) {
    if (!location) throw new UsageError('empty repository location', {hint: 'give a path, sftp://user@host/path or s3://bucket/prefix'})
    return {kind: 'local', path: resolve(location)}
  }
  let url: URL
  try {
    url = new URL(location)
  } catch {
    throw new UsageError(`cannot parse repository location ${location}`)
  }
  if (scheme === 'file') return {kind: 'local', path: fileURLToPath(url)}
  if (scheme === 'sftp') return {kind: 'sftp', sftp: parseSftp(url, location), given: {user: url.username !== '', port: url.port !== ''}}
  if (scheme === 's3') return {kind: 's3', s3: parseS3(url, location)}
  throw new UsageError(`unsupported repository location ${location}`, {hint: 'use a path, file://, sftp:// or s3://'})
}

function parseSftp(url: URL, location: string): SftpLocation {
  if (!url.hostname) throw new UsageError(`no host in ${location}`, {hint: 'write sftp://user@host[:port]/path'})
  if (url.password) throw new UsageError(`passwords in sftp:// locations are not supported (${url.hostname})`, {hint: 'use a key or ssh-agent'})
  let path = decodeURIComponent(url.pathname)
  if (path.startsWith('/~/')) path = path.slice(3)
  else if (path === '/~' || path === '') path = '.'
  path = path.replace(/(.)\/+$/, '$1')
  return {
    user: url.username ? decodeURIComponent(url.username) : userInfo().username,
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port ? Number(url.port) : 22,
    path,
  }
}

function parseS3(url: URL, location: string): S3Location {
  if (!url.hostname) throw new UsageError(`no bucket in ${location}`, {hint: 'write s3://bucket/prefix'})
  const prefix = decodeURIComponent(url.pathname).replace(/^\/+|\/+$/g, '')
  return {bucket: url.hostname, prefix}
}

async function openRaw(parsed: ParsedLocation, options: StorageOptions): Promise<StorageBackend> {
  switch (parsed.kind) {
    case 'local':
      return new LocalBackend(parsed.path)
    case 'sftp': {
      const {SftpBackend} = await import('../backend/sftp.js')
      const {where, identityFiles} = await applySshConfig(parsed.sftp, parsed.given, options.sshConfigFile)
      return new SftpBackend(where, {sshKey: options.sshKey, knownHostsFile: options.knownHostsFile, identityFiles})
    }
    case 's3': {
      const {S3Backend} = await import('../backend/s3.js')
      return new S3Backend(parsed.s3, {
        endpoint: options.s3Endpoint,
        pathStyle: options.s3PathStyle,
        region: options.s3Region,
        maxSockets: Math.max(options.connections ?? 16, 16),
      })
    }
  }
}

/**
 * Opens the storage at `location` with its wrappers. Throws UsageError for a
 * bad location; connecting is lazy, so network errors surface on first use.
 */
export async function openStorage(location: string, options: StorageOptions = {}): Promise<StorageBackend> {
  const parsed = parseLocation(location)
  const raw = await openRaw(parsed, options)
  // Wrapper order, from the outside in: retry → bandwidth → concurrency → raw.
  // - Concurrency is innermost so a slot is held only while a request is
  //   really on the wire: a call waiting for bandwidth tokens or sleeping in
  //   a retry backoff does not block other transfers' slots.
  // - Bandwidth sits outside concurrency so its shared buckets see every
  //   transfer whatever the slot count, and inside retry so each retried
  //   attempt pays again for the bytes it really resends.
  // - Retry is outermost so one logical call gets a bounded number of whole
  //   attempts, each re-queuing for tokens and a slot like a fresh call.
  // Remote requests wait for round trips, not for the disk: more of them in
  // flight hide the latency. SFTP needs the most, as each save costs three
  // round trips (open; writes + fsync + close; rename) where S3 has one PUT.
  const defaultConnections = {local: 8, s3: 16, sftp: 32}[parsed.kind]
  let backend: StorageBackend = new ConcurrencyBackend(raw, options.connections ?? defaultConnections)
  if (options.limitUpload || options.limitDownload) {
    backend = new BandwidthBackend(backend, {upload: options.limitUpload, download: options.limitDownload})
  }
  return new RetryBackend(backend, options.retry)
}

/**
 * OpenSSH's client configuration for an sftp:// host (ssh-config.ts): the
 * name in the location is looked up as a Host alias; HostName, Port, User
 * and IdentityFile apply where the location did not spell them out.
 */
async function applySshConfig(
  loc: SftpLocation,
  given: {user: boolean; port: boolean},
  file?: string,
): Promise<{where: SftpLocation; identityFiles: string[]}> {
  const cfg = await readSshConfig(loc.host, file)
  const where: SftpLocation = {
    ...loc,
    host: cfg.hostName?.replace(/%h/g, loc.host) ?? loc.host,
    user: given.user ? loc.user : (cfg.user ?? loc.user),
    port: given.port ? loc.port : (cfg.port ?? loc.port),
  }
  return {where, identityFiles: cfg.identityFiles.map((f) => expandIdentityPath(f, {host: where.host, user: where.user}))}
}
