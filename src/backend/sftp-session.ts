// Opens one SSH connection with an SFTP channel, authenticating and checking
// the host key the way OpenSSH's client does:
//  - keys: the explicit key file if given (used alone, like `ssh -i` with
//    IdentitiesOnly), else the agent at SSH_AUTH_SOCK, then the IdentityFile
//    entries of ~/.ssh/config, or when there are none ~/.ssh/id_ed25519,
//    id_ecdsa, id_rsa (encrypted files are skipped: load them into the agent);
//  - host key: must be listed in known_hosts (see known-hosts.ts); unknown,
//    changed or revoked keys are refused with a one-line error saying how to
//    trust the host.
// Failures are classified here: refused host key and failed login are
// permanent; resets, timeouts and (once we have been connected before) a
// refused connection are retryable, so a restarting server is waited for.
import {readFile} from 'node:fs/promises'
import {homedir} from 'node:os'
import {join} from 'node:path'
import ssh2 from 'ssh2'
import type {AnyAuthMethod, Client as SshClient, SFTPWrapper, ServerHostKeyAlgorithm} from 'ssh2'
import {IoError, VdsnapError} from '../errors.js'
import {
  blobKeyType,
  checkHostKey,
  defaultKnownHostsPath,
  fingerprint,
  knownHostsName,
  knownKeyTypes,
  preferredHostKeyAlgorithms,
  readKnownHosts,
} from './known-hosts.js'
import {isTransientNetworkError} from './transient.js'

export interface SftpTarget {
  user: string
  host: string
  port: number
}

export interface SftpAuthOptions {
  /** Private key file; when set, the only identity offered. */
  sshKey?: string
  /**
   * Identity files from ~/.ssh/config (IdentityFile), tried after the agent
   * instead of the default ~/.ssh/id_* files, as OpenSSH does.
   */
  identityFiles?: string[]
  /** known_hosts file; default ~/.ssh/known_hosts. */
  knownHostsFile?: string
  /** Agent socket; default $SSH_AUTH_SOCK. */
  agentSocket?: string
  /** Handshake timeout; default 15 s. */
  readyTimeoutMs?: number
}

export interface SftpSession {
  client: SshClient
  sftp: SFTPWrapper
  /** Set once the connection closed or failed; the session must not be reused. */
  dead: boolean
  /** Resolves when the connection closes or fails; requests still pending then never get answers. */
  closed: Promise<void>
}

const DEFAULT_KEYS = ['id_ed25519', 'id_ecdsa', 'id_rsa']

function describe(t: SftpTarget): string {
  return `${t.user}@${t.host}:${t.port}`
}

/** Identities to offer, in OpenSSH's order; throws IoError (permanent) when there are none. */
async function authMethods(t: SftpTarget, opts: SftpAuthOptions): Promise<{methods: AnyAuthMethod[]; tried: string[]}> {
  const methods: AnyAuthMethod[] = []
  const tried: string[] = []
  const agent = opts.agentSocket ?? process.env.SSH_AUTH_SOCK
  if (opts.sshKey) {
    const text = await readFile(opts.sshKey).catch((e: unknown) => {
      throw new IoError(`cannot read SSH key ${opts.sshKey}: ${(e as Error).message}`, {cause: e})
    })
    const parsed = ssh2.utils.parseKey(text)
    if (!(parsed instanceof Error)) {
      methods.push({type: 'publickey', username: t.user, key: parsed})
      tried.push(`key ${opts.sshKey}`)
    } else if (!agent) {
      throw new IoError(`cannot use SSH key ${opts.sshKey}: ${parsed.message}`, {
        hint: `if it is passphrase-protected, load it with \`ssh-add ${opts.sshKey}\` and set SSH_AUTH_SOCK`,
      })
    }
    if (parsed instanceof Error && agent) {
      methods.push({type: 'agent', username: t.user, agent})
      tried.push('ssh-agent')
    }
    return {methods, tried}
  }
  if (agent) {
    methods.push({type: 'agent', username: t.user, agent})
    tried.push('ssh-agent')
  }
  const configured = opts.identityFiles ?? []
  for (const path of configured.length > 0 ? configured : DEFAULT_KEYS.map((name) => join(homedir(), '.ssh', name))) {
    const text = await readFile(path).catch(() => undefined)
    if (!text) continue
    const parsed = ssh2.utils.parseKey(text)
    if (parsed instanceof Error) continue
    methods.push({type: 'publickey', username: t.user, key: parsed})
    tried.push(`key ${path}`)
  }
  if (methods.length === 0) {
    const files = configured.length > 0 ? `${configured.join(', ')} (IdentityFile in ~/.ssh/config)` : '~/.ssh/id_ed25519, id_ecdsa or id_rsa'
    throw new IoError(`no SSH identity to log in to ${describe(t)}: no agent and no usable ${files}`, {
      hint: 'pass --ssh-key FILE or start ssh-agent and add a key',
    })
  }
  return {methods, tried}
}

function hostKeyError(t: SftpTarget, file: string, status: string, blob: Buffer): IoError {
  const name = knownHostsName(t.host, t.port)
  const scan = `ssh-keyscan ${t.port === 22 ? '' : `-p ${t.port} `}${t.host} >> ${file}`
  const fp = `${blobKeyType(blob)} ${fingerprint(blob)}`
  if (status === 'changed') {
    return new IoError(`host key for ${name} has CHANGED (server offers ${fp}, ${file} lists another); refusing to connect`, {
      hint: `if the change is expected, run \`ssh-keygen -R '${name}' -f ${file}\` then \`${scan}\``,
    })
  }
  if (status === 'revoked') return new IoError(`host key ${fp} of ${name} is marked @revoked in ${file}; refusing to connect`)
  return new IoError(`host key of ${name} is not known (server offers ${fp}); refusing to connect`, {
    hint: `check the fingerprint with the server's administrator, then trust it with \`${scan}\``,
  })
}

/**
 * Connects, verifies the host key, logs in and opens the SFTP channel.
 * Throws IoError: permanent for host key and login failures, retryable for
 * transient network faults (and for a refused connection when `wasConnected`).
 */
export async function openSftpSession(t: SftpTarget, opts: SftpAuthOptions, wasConnected: boolean): Promise<SftpSession> {
  const knownFile = opts.knownHostsFile ?? defaultKnownHostsPath()
  const entries = await readKnownHosts(knownFile).catch((e: unknown) => {
    throw new IoError(`cannot read ${knownFile}: ${(e as Error).message}`, {cause: e})
  })
  const name = knownHostsName(t.host, t.port)
  const {methods, tried} = await authMethods(t, opts)
  const client = new ssh2.Client()
  let hostProblem: IoError | undefined
  const session = await new Promise<SftpSession>((resolve, reject) => {
    const fail = (err: unknown) => {
      client.end()
      reject(classifyConnectError(err, t, tried, hostProblem, wasConnected))
    }
    client.on('error', fail) // not once: a connection cut during the handshake can emit several errors
    client.once('ready', () => {
      // Many small SFTP requests and replies: Nagle's algorithm plus delayed
      // ACKs would add ~40 ms stalls (measured: 1 MiB loads at 11 MiB/s).
      client.setNoDelay(true)
      client.sftp((err, sftp) => {
        if (err) return fail(err)
        client.removeListener('error', fail)
        client.removeListener('close', closed)
        let markDead = () => {}
        const s: SftpSession = {client, sftp, dead: false, closed: new Promise<void>((r) => (markDead = r))}
        const die = () => {
          s.dead = true
          markDead()
        }
        client.on('error', die)
        client.on('close', die)
        sftp.on('close', die)
        sftp.on('error', die)
        resolve(s)
      })
    })
    const closed = () => fail(new Error('connection closed during login'))
    client.once('close', closed)
    client.connect({
      host: t.host,
      port: t.port,
      username: t.user,
      authHandler: methods,
      readyTimeout: opts.readyTimeoutMs ?? 15_000,
      keepaliveInterval: 10_000,
      keepaliveCountMax: 3,
      algorithms: {serverHostKey: preferredHostKeyAlgorithms(knownKeyTypes(entries, name)) as ServerHostKeyAlgorithm[]},
      hostVerifier: (blob: Buffer) => {
        const verdict = checkHostKey(entries, name, blob)
        if (verdict.status === 'match') return true
        hostProblem = hostKeyError(t, knownFile, verdict.status, blob)
        return false
      },
    })
  })
  return session
}

function classifyConnectError(
  err: unknown,
  t: SftpTarget,
  tried: string[],
  hostProblem: IoError | undefined,
  wasConnected: boolean,
): VdsnapError {
  if (hostProblem) return hostProblem
  if (err instanceof VdsnapError) return err
  const e = err as Error & {level?: string; code?: string}
  const where = describe(t)
  if (e.level === 'client-authentication') {
    return new IoError(`SFTP login to ${where} was refused (offered ${tried.join(', ')})`, {
      cause: err,
      hint: `check the user name and that the public key is in the server's authorized_keys, or pass --ssh-key FILE`,
    })
  }
  if (e.code === 'ECONNREFUSED') {
    return new IoError(`connection to ${where} refused`, {
      cause: err,
      retryable: wasConnected,
      hint: wasConnected ? undefined : `check that sshd is running on ${t.host} port ${t.port}`,
    })
  }
  if (e.code === 'ENOTFOUND') return new IoError(`cannot resolve host ${t.host}`, {cause: err, hint: 'check the repository location'})
  const transient = isTransientNetworkError(err) || e.level === 'client-timeout' || e.level === 'client-socket'
  return new IoError(`connecting to ${where}: ${e.message}`, {cause: err, retryable: transient || wasConnected})
}
