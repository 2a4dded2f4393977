// `vdsnap run` against remote repositories (s3rver and OpenSSH's sshd on
// 127.0.0.1): storage settings from the job file, and from run's flags, reach
// the repository and its copy.
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {vdsnap, vdsnapJson} from '../helpers/cli.js'
import {makeExt4Image, randomAt, sha256File, tempDir} from '../helpers/images.js'
import {useRemoteServers} from '../helpers/remote-servers.js'
import {S3RVER_ENV, type TestS3} from '../helpers/s3.js'
import {haveSshd, type TestSshd} from '../helpers/sshd.js'

const MiB = 1024 * 1024
const dir = tempDir()
afterAll(() => dir.cleanup())

describe.skipIf(!haveSshd)('run: storage settings from the job file and from the flags (s3rver, sshd)', () => {
  const servers = useRemoteServers('vdsnap-jobs')
  let s3: TestS3
  let sshd: TestSshd
  const img = join(dir.path, 's.img')
  // no endpoint, agent or ssh files from the environment: only what the job file or the flags say
  const env = {...S3RVER_ENV, AWS_ENDPOINT_URL: undefined, AWS_ENDPOINT_URL_S3: undefined, SSH_AUTH_SOCK: undefined, VDSNAP_PASSWORD: 'pw', VDSNAP_REPOSITORY: undefined}
  let s3Repo = ''
  let sftpRepo = ''

  beforeAll(async () => {
    s3 = servers.s3
    sshd = servers.sshd
    s3Repo = servers.url('s3', 'jobs')
    sftpRepo = servers.url('sftp', 'copy')
    makeExt4Image(img, 4 * MiB)
    expect((await vdsnap(['init', '--repo', s3Repo, '--block-size', '64KiB', '--s3-endpoint', s3.endpoint], env)).code).toBe(0)
    expect((await vdsnap(['init', '--repo', sftpRepo, '--block-size', '64KiB', ...servers.flags('sftp')], env)).code).toBe(0)
  })

  it('a job whose s3:// repository and sftp:// copy get their endpoint, key and known_hosts from the job file', async () => {
    const jobs = join(dir.path, 'storage.yaml')
    writeFileSync(jobs, `jobs:
  remote:
    repository: ${s3Repo}
    storage: {s3-endpoint: "${s3.endpoint}", s3-path-style: true, connections: 4}
    disks: [{path: ${img}, name: s}]
    copies:
      - repository: ${sftpRepo}
        storage: {ssh-key: ${sshd.userKeyPath}, known-hosts: ${sshd.knownHostsPath}, limit-upload: 64MiB}
    retention: {keep-last: 1}
    check: {every: run, parts: 1}
`)
    const r = await vdsnap(['run', 'remote', '--jobs', jobs, '--json'], env)
    expect(r.code, r.stderr).toBe(0)
    const job = JSON.parse(r.stdout).jobs[0]
    expect(job.disks[0].ok).toBe(true)
    expect(job.copies).toEqual([expect.objectContaining({ok: true, copied: 1})])
    expect(job.retention.ok).toBe(true)
    expect(job.check).toMatchObject({ok: true, detail: {subset: '1/1'}})
    const copied = await vdsnapJson<any[]>(['snapshots', '--repo', sftpRepo, '--ssh-key', sshd.userKeyPath, '--known-hosts', sshd.knownHostsPath], env)
    expect(copied.map((m) => m.id)).toEqual([job.disks[0].snapshot])
  })

  it('the storage flags of run apply to every repository of the run, copies included', async () => {
    const jobs = join(dir.path, 'storage-flags.yaml')
    writeFileSync(jobs, `jobs:\n  bare:\n    repository: ${s3Repo}\n    disks: [{path: ${img}, name: f}]\n    copies: [{repository: ${sftpRepo}}]\n    check: {every: never}\n`)
    randomAt(img, 1 * MiB, 100_000)
    const r = await vdsnap(['run', 'bare', '--jobs', jobs, '--json', '--s3-endpoint', s3.endpoint, '--ssh-key', sshd.userKeyPath, '--known-hosts', sshd.knownHostsPath], env)
    expect(r.code, r.stderr).toBe(0)
    const job = JSON.parse(r.stdout).jobs[0]
    expect(job.copies[0]).toMatchObject({ok: true, copied: 1})
    const restored = join(dir.path, 's-restored.img')
    expect((await vdsnap(['restore', job.disks[0].snapshot, '--to', restored, '--repo', sftpRepo, '--ssh-key', sshd.userKeyPath, '--known-hosts', sshd.knownHostsPath], env)).code).toBe(0)
    expect(sha256File(restored)).toBe(sha256File(img))
  })
})
