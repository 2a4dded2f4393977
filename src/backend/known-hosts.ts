// Host key checking against an OpenSSH known_hosts file, the way `ssh` does
// with StrictHostKeyChecking=yes: an unknown or changed key is refused.
//
// Supported entry forms (one per line, '#' comments):
//   host1,host2 ssh-ed25519 AAAA...        plain names, '*' '?' wildcards, '!' negation
//   [host]:2222 ecdsa-sha2-nistp256 AAAA... non-default ports
//   |1|base64salt|base64hmac ssh-rsa AAAA... hashed (HMAC-SHA1 of the name)
//   @revoked host ssh-ed25519 AAAA...       a key that must never be accepted
// @cert-authority lines are ignored (certificates are not supported).
// The name looked up is "host" for port 22 and "[host]:port" otherwise.
import {createHash, createHmac} from 'node:crypto'
import {readFile} from 'node:fs/promises'
import {homedir} from 'node:os'
import {join} from 'node:path'

export interface KnownHostEntry {
  marker?: '@revoked' | '@cert-authority'
  hosts: string
  keyType: string
  key: Buffer
}

export type HostKeyVerdict =
  | {status: 'match'}
  | {status: 'revoked'}
  /** The host is listed, but with other keys. */
  | {status: 'changed'}
  | {status: 'unknown'}

export function defaultKnownHostsPath(): string {
  return join(homedir(), '.ssh', 'known_hosts')
}

/** Reads and parses a known_hosts file; a missing file has no entries. */
export async function readKnownHosts(path: string): Promise<KnownHostEntry[]> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw e
  }
  return parseKnownHosts(text)
}

export function parseKnownHosts(text: string): KnownHostEntry[] {
  const entries: KnownHostEntry[] = []
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (!line || line.startsWith('#')) continue
    const fields = line.split(/\s+/)
    let marker: KnownHostEntry['marker']
    if (fields[0] === '@revoked' || fields[0] === '@cert-authority') marker = fields.shift() as KnownHostEntry['marker']
    if (fields.length < 3) continue
    entries.push({marker, hosts: fields[0]!, keyType: fields[1]!, key: Buffer.from(fields[2]!, 'base64')})
  }
  return entries
}

/** "host" for port 22, "[host]:port" otherwise, as OpenSSH writes it. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`
}

function globToRegExp(pattern: string): RegExp {
  const body = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')
  return new RegExp(`^${body}$`, 'i')
}

function hashedMatches(field: string, name: string): boolean {
  const parts = field.split('|')
  if (parts.length !== 4 || parts[1] !== '1') return false
  const salt = Buffer.from(parts[2]!, 'base64')
  const digest = createHmac('sha1', salt).update(name).digest('base64')
  return digest === parts[3]
}

/** True when the entry's host field names `name` ("host" or "[host]:port"). */
export function hostFieldMatches(field: string, name: string): boolean {
  if (field.startsWith('|')) return hashedMatches(field, name)
  let matched = false
  for (const pattern of field.split(',')) {
    const negated = pattern.startsWith('!')
    const re = globToRegExp(negated ? pattern.slice(1) : pattern)
    if (!re.test(name)) continue
    if (negated) return false
    matched = true
  }
  return matched
}

/** Decides about the key blob a server presented. */
export function checkHostKey(entries: KnownHostEntry[], name: string, blob: Buffer): HostKeyVerdict {
  const mine = entries.filter((e) => e.marker !== '@cert-authority' && hostFieldMatches(e.hosts, name))
  if (mine.some((e) => e.marker === '@revoked' && e.key.equals(blob))) return {status: 'revoked'}
  const listed = mine.filter((e) => !e.marker)
  if (listed.some((e) => e.key.equals(blob))) return {status: 'match'}
  return listed.length > 0 ? {status: 'changed'} : {status: 'unknown'}
}

/** Key types listed for a host, so the handshake can prefer a key we can check. */
export function knownKeyTypes(entries: KnownHostEntry[], name: string): string[] {
  const types = entries.filter((e) => !e.marker && hostFieldMatches(e.hosts, name)).map((e) => e.keyType)
  return [...new Set(types)]
}

/** The key type named inside an SSH public key blob ("ssh-ed25519", ...). */
export function blobKeyType(blob: Buffer): string {
  if (blob.length < 4) return 'unknown'
  const len = blob.readUInt32BE(0)
  return len <= blob.length - 4 ? blob.subarray(4, 4 + len).toString('latin1') : 'unknown'
}

/** OpenSSH-style fingerprint, e.g. "SHA256:n4b...". */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`
}

/** Host key algorithms to offer, those we can verify first (as OpenSSH orders them). */
export function preferredHostKeyAlgorithms(knownTypes: string[]): string[] {
  const all = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']
  const forType = (t: string) => (t === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [t])
  const first = knownTypes.flatMap(forType).filter((a) => all.includes(a))
  return [...new Set([...first, ...all])]
}
