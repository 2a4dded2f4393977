// OpenSSH's sshd and s3rver on 127.0.0.1 for one describe block of remote
// integration tests: started before its tests, stopped after them, with the
// CLI environment, repository URLs and flags each backend needs.
import {afterAll, beforeAll} from 'vitest'
import {S3RVER_ENV, startS3, useTestCredentials, type TestS3} from './s3.js'
import {startSshd, type TestSshd} from './sshd.js'

export const REMOTE_KINDS = ['sftp', 's3'] as const
export type RemoteKind = (typeof REMOTE_KINDS)[number]
export type Env = Record<string, string | undefined>

export interface RemoteServers {
  readonly sshd: TestSshd
  readonly s3: TestS3
  /** The CLI's environment: s3rver's credentials and endpoint, no ssh-agent, password "pw". */
  readonly base: Env
  /** The URL of repository `name` on the backend. */
  url(kind: RemoteKind, name: string): string
  /** The flags the backend needs on every command (sftp: the test key and known_hosts). */
  flags(kind: RemoteKind): string[]
  /** openStorage options reaching either server from this process. */
  storageOptions(): {sshKey: string; knownHostsFile: string; s3Endpoint: string}
}

/**
 * Registers beforeAll/afterAll hooks in the calling describe block that start
 * and stop both servers (s3rver with bucket `bucket`). `setCredentials` also
 * points this process's AWS SDK at s3rver, for tests that write objects
 * themselves.
 */
export function useRemoteServers(bucket: string, opts: {setCredentials?: boolean} = {}): RemoteServers {
  let sshd: TestSshd | undefined
  let s3: TestS3 | undefined
  let base: Env = {}
  beforeAll(async () => {
    if (opts.setCredentials) useTestCredentials()
    sshd = await startSshd()
    s3 = await startS3(bucket)
    base = {...S3RVER_ENV, SSH_AUTH_SOCK: undefined, AWS_ENDPOINT_URL: undefined, AWS_ENDPOINT_URL_S3: s3.endpoint, VDSNAP_PASSWORD: 'pw'}
  })
  afterAll(async () => {
    await sshd?.stop()
    await s3?.stop()
  })
  const started = <T>(v: T | undefined, what: string): T => {
    if (v === undefined) throw new Error(`${what} is not running: use it inside a test of the describe block that called useRemoteServers`)
    return v
  }
  return {
    get sshd() {
      return started(sshd, 'sshd')
    },
    get s3() {
      return started(s3, 's3rver')
    },
    get base() {
      return base
    },
    url(kind, name) {
      const d = this.sshd
      return kind === 'sftp' ? `sftp://${d.user}@127.0.0.1:${d.port}${d.rootDir}/${name}` : `s3://${this.s3.bucket}/${name}`
    },
    flags(kind) {
      return kind === 'sftp' ? ['--ssh-key', this.sshd.userKeyPath, '--known-hosts', this.sshd.knownHostsPath] : []
    },
    storageOptions() {
      return {sshKey: this.sshd.userKeyPath, knownHostsFile: this.sshd.knownHostsPath, s3Endpoint: this.s3.endpoint}
    },
  }
}
