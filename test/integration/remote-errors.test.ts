// Remote setup mistakes through the CLI, on init as on every other command:
// an unknown SSH host key, wrong S3 credentials and a missing bucket each
// give one error line with the hint that fixes it and the documented exit
// code (7, I/O), and init creates nothing.
import {existsSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {oneLine, vdsnap} from '../helpers/cli.js'
import {makeExt4Image, tempDir} from '../helpers/images.js'
import {useRemoteServers} from '../helpers/remote-servers.js'
import {haveSshd} from '../helpers/sshd.js'

const MiB = 1024 * 1024

describe.skipIf(!haveSshd)('remote setup errors keep their exit code and hint', () => {
  const dir = tempDir()
  const img = join(dir.path, 'disk.img')
  const emptyKnownHosts = join(dir.path, 'known_hosts-empty')
  const servers = useRemoteServers('vdsnap-errors')
  beforeAll(() => {
    writeFileSync(emptyKnownHosts, '')
    makeExt4Image(img, 4 * MiB)
  })
  afterAll(() => dir.cleanup())

  const sftpRepo = (name: string) => servers.url('sftp', name)
  const scanLine = () => `ssh-keyscan -p ${servers.sshd.port} 127.0.0.1 >> ${emptyKnownHosts}`

  it('init with an unknown host key: exit 7, the ssh-keyscan line, no directory made', async () => {
    const r = await vdsnap(['init', '--ssh-key', servers.sshd.userKeyPath, '--known-hosts', emptyKnownHosts], {...servers.base, VDSNAP_REPOSITORY: sftpRepo('unknown')})
    expect(r.code).toBe(7)
    const line = oneLine(r.stderr)
    expect(line).toMatch(/host key of \[127\.0\.0\.1\]:\d+ is not known/)
    expect(line).toContain(scanLine())
    expect(line).toContain('cannot create a repository at')
    expect(existsSync(join(servers.sshd.rootDir, 'unknown'))).toBe(false)
  })

  it('backup with an unknown host key: the same line, exit 7', async () => {
    const env = {...servers.base, VDSNAP_REPOSITORY: sftpRepo('known')}
    expect((await vdsnap(['init', ...servers.flags('sftp')], env)).code).toBe(0)
    const r = await vdsnap(['backup', img, '--ssh-key', servers.sshd.userKeyPath, '--known-hosts', emptyKnownHosts], env)
    expect(r.code).toBe(7)
    expect(oneLine(r.stderr)).toContain(scanLine())
  })

  it('init with wrong S3 credentials: exit 7 and the credentials hint', async () => {
    const r = await vdsnap(['init'], {...servers.base, VDSNAP_REPOSITORY: `s3://${servers.s3.bucket}/creds`, AWS_ACCESS_KEY_ID: 'NOBODY', AWS_SECRET_ACCESS_KEY: 'wrong'})
    expect(r.code).toBe(7)
    expect(oneLine(r.stderr)).toMatch(/access denied.*check the AWS credentials/)
    expect(r.stderr).not.toMatch(/retry \d+ in/) // permanent: not retried
  })

  it('init with a missing bucket: exit 7 and "create the bucket"', async () => {
    const r = await vdsnap(['init'], {...servers.base, VDSNAP_REPOSITORY: 's3://no-such-bucket/x'})
    expect(r.code).toBe(7)
    expect(oneLine(r.stderr)).toMatch(/bucket no-such-bucket does not exist; create the bucket first/)
  })

  it('init on a non-empty location is still a usage error (exit 2)', async () => {
    const env = {...servers.base, VDSNAP_REPOSITORY: `s3://${servers.s3.bucket}/taken`}
    expect((await vdsnap(['init'], env)).code).toBe(0)
    const r = await vdsnap(['init'], env)
    expect(r.code).toBe(2)
    expect(oneLine(r.stderr)).toMatch(/exists and is not empty; choose another prefix/)
  })
})
