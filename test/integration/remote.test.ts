// Every command against real servers on 127.0.0.1: OpenSSH's sshd (SFTP)
// and s3rver (S3): a chain of backups, byte-identical restores, check
// --read-data, copy local → sftp → s3 and a restore from the last; a server
// killed in the middle of a backup; wrong credentials failing fast.
import {spawn} from 'node:child_process'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {BIN, vdsnap, vdsnapJson} from '../helpers/cli.js'
import {countFiles, makeExt4Image, randomAt, sha256File, tempDir} from '../helpers/images.js'
import {S3RVER_ENV, startS3, type TestS3} from '../helpers/s3.js'
import {haveSshd, startSshd, type TestSshd} from '../helpers/sshd.js'

const MiB = 1024 * 1024

describe.skipIf(!haveSshd)('remote repositories end to end', () => {
  const dir = tempDir()
  const img = join(dir.path, 'disk.img')
  const local = join(dir.path, 'local')
  let sshd: TestSshd
  let s3: TestS3
  let sftpUrl = ''
  let s3Url = ''
  let base: Record<string, string | undefined> = {}

  beforeAll(async () => {
    sshd = await startSshd()
    s3 = await startS3('vdsnap-e2e')
    sftpUrl = `sftp://${sshd.user}@127.0.0.1:${sshd.port}${sshd.rootDir}/repo`
    s3Url = `s3://${s3.bucket}/backups/vm`
    base = {
      ...S3RVER_ENV,
      SSH_AUTH_SOCK: undefined,
      AWS_ENDPOINT_URL: undefined,
      AWS_ENDPOINT_URL_S3: s3.endpoint,
      VDSNAP_PASSWORD: 'pw',
    }
    makeExt4Image(img, 12 * MiB)
  })
  afterAll(async () => {
    await sshd?.stop()
    await s3?.stop()
    dir.cleanup()
  })

  const sshFlags = () => ['--ssh-key', sshd.userKeyPath, '--known-hosts', sshd.knownHostsPath]

  it.each(['sftp', 's3'] as const)('%s: init, backup chain, restore, diff, check, stats, key list, unlock', async (kind) => {
    const repo = kind === 'sftp' ? sftpUrl : s3Url
    const flags = kind === 'sftp' ? sshFlags() : []
    const env = {...base, VDSNAP_REPOSITORY: repo}
    const init = await vdsnap(['init', '--block-size', '256KiB', ...flags], env)
    expect(init.code, init.stderr).toBe(0)
    const ids: string[] = []
    const hashes: string[] = []
    for (let i = 0; i < 3; i++) {
      if (i > 0) randomAt(img, i * 3 * MiB, 300_000)
      ids.push((await vdsnapJson(['backup', img, '--disk', 'vm', ...flags], env)).snapshot)
      hashes.push(sha256File(img))
    }
    for (const [i, id] of ids.entries()) {
      const out = join(dir.path, `${kind}-${i}.img`)
      const r = await vdsnap(['restore', id, '--to', out, ...flags], env)
      expect(r.code, r.stderr).toBe(0)
      expect(sha256File(out)).toBe(hashes[i])
    }
    expect((await vdsnapJson(['diff', ids[0]!, ids[1]!, ...flags], env)).changedBlocks).toBeGreaterThan(0)
    expect((await vdsnapJson(['check', '--read-data', ...flags], env)).findings).toEqual([])
    expect((await vdsnapJson(['stats', ...flags], env)).snapshots).toBe(3)
    expect((await vdsnapJson<any[]>(['key', 'list', ...flags], env)).length).toBe(1)
    expect((await vdsnapJson(['unlock', ...flags], env)).removed).toEqual([])
  })

  it('copy local → sftp → s3, then restore from s3', async () => {
    const envLocal = {...base, VDSNAP_REPOSITORY: local}
    await vdsnap(['init', '--block-size', '256KiB'], envLocal)
    await vdsnapJson(['backup', img, '--disk', 'cp'], envLocal)
    const sftpRepo = `${sftpUrl}-copy`
    const s3Repo = `${s3Url}-copy`
    expect((await vdsnap(['init', '--block-size', '256KiB', ...sshFlags()], {...base, VDSNAP_REPOSITORY: sftpRepo})).code).toBe(0)
    expect((await vdsnap(['init', '--block-size', '256KiB'], {...base, VDSNAP_REPOSITORY: s3Repo})).code).toBe(0)
    const c1 = await vdsnapJson(['copy', '--to', sftpRepo, ...sshFlags()], envLocal)
    expect(c1.copied.length).toBe(1)
    const c2 = await vdsnapJson(['copy', '--from', sftpRepo, '--to', s3Repo, ...sshFlags()], base)
    expect(c2.copied).toEqual(c1.copied)
    const out = join(dir.path, 'from-s3.img')
    expect((await vdsnap(['restore', 'cp@latest', '--to', out], {...base, VDSNAP_REPOSITORY: s3Repo})).code).toBe(0)
    expect(sha256File(out)).toBe(sha256File(img))
  })

  it('sshd killed mid-backup: the run fails or retries, nothing is lost, the rerun completes and check is clean', async () => {
    const repo = `${sftpUrl}-kill`
    const env = {...base, VDSNAP_REPOSITORY: repo}
    await vdsnap(['init', '--block-size', '64KiB', ...sshFlags()], env)
    const first = await vdsnapJson(['backup', img, '--disk', 'k', ...sshFlags()], env)
    randomAt(img, 0, 10 * MiB)
    // 10 MiB of new random data at 1 MiB/s: once the first new chunk is on
    // the server, the backup is seconds away from its end whatever the
    // machine's load, so the kill lands mid-upload (was: a 1.2 s timer, which
    // a fast backup could outrun and then test nothing).
    const chunksOnServer = () => countFiles(join(sshd.rootDir, 'repo-kill', 'chunks'))
    const before = chunksOnServer()
    const child = spawn(process.execPath, [BIN, 'backup', img, '--disk', 'k', '--limit-upload', '1MiB', ...sshFlags()], {env: {...process.env, ...env} as NodeJS.ProcessEnv, stdio: ['ignore', 'ignore', 'pipe']})
    let stderr = ''
    child.stderr!.on('data', (d) => (stderr += d))
    // Listen before anything is awaited: the backup may fail (connection
    // refused) while the server is down, long before it is back.
    let exited = false
    const closed = new Promise<number>((r) => child.on('close', (c) => ((exited = true), r(c ?? -1))))
    for (const t0 = Date.now(); !exited && chunksOnServer() === before && Date.now() - t0 < 120_000; ) await new Promise((r) => setTimeout(r, 20))
    expect(exited, `the backup ended before it stored a chunk: ${stderr}`).toBe(false)
    const arrived = chunksOnServer()
    await sshd.kill()
    expect(arrived - before).toBeLessThan(160) // 10 MiB = 160 new 64 KiB chunks: really cut in the middle
    await new Promise((r) => setTimeout(r, 1000))
    await sshd.start()
    // it must end by itself (retries are bounded to 2 minutes), never hang
    const killer = setTimeout(() => child.kill('SIGKILL'), 180_000)
    const code = await closed
    clearTimeout(killer)
    expect([0, 7], `backup after the server restart: ${stderr}`).toContain(code)
    const again = await vdsnapJson(['backup', img, '--disk', 'k', ...sshFlags()], env)
    const out = join(dir.path, 'after-kill.img')
    expect((await vdsnap(['restore', again.snapshot, '--to', out, ...sshFlags()], env)).code).toBe(0)
    expect(sha256File(out)).toBe(sha256File(img))
    const snaps = await vdsnapJson<any[]>(['snapshots', ...sshFlags()], env)
    expect(snaps[0].id).toBe(first.snapshot)
    expect((await vdsnapJson(['check', '--read-data', ...sshFlags()], env)).findings).toEqual([])
  }, 300_000)

  it('wrong credentials fail fast (no retry) with one-line errors', async () => {
    const r = await vdsnap(['snapshots', '--known-hosts', sshd.knownHostsPath, '--ssh-key', join(dir.path, 'missing-key')], {...base, VDSNAP_REPOSITORY: sftpUrl})
    expect(r.code).not.toBe(0)
    expect(r.stderr.trim().split('\n').filter((l) => l.startsWith('vdsnap: error')).length).toBe(1)
    expect(r.code).toBe(7)
    expect(r.stderr).not.toMatch(/retry \d+ in/) // fast: a permanent error, not retried with backoff
    // s3rver checks access key ids (not signatures): an unknown one is refused
    const s = await vdsnap(['snapshots'], {...base, VDSNAP_REPOSITORY: s3Url, AWS_ACCESS_KEY_ID: 'NOBODY', AWS_SECRET_ACCESS_KEY: 'wrong'})
    expect(s.code).toBe(7)
    expect(s.stderr).toMatch(/vdsnap: error: .*access denied/)
    expect(s.stderr).not.toMatch(/retry \d+ in/)
    expect(s.stderr.trim().split('\n').filter((l) => l.startsWith('vdsnap: error')).length).toBe(1)
  })
})
