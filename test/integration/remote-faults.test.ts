// Server faults in the middle of a run, through the CLI against real
// servers on 127.0.0.1:
//  - copy local → sftp with sshd killed (and restarted), or with the TCP
//    connection cut, half-way: the re-run completes, check --read-data is
//    clean on the destination, the copy restores byte-identical and the
//    source is untouched;
//  - S3 behind a proxy that answers requests with 503 SlowDown / 500
//    InternalError: a bounded number of faults is ridden out by the real
//    AWS SDK plus our retry wrapper (backup and restore byte-identical);
//    faults that never stop end the backup with one error line and exit 7
//    within the retry budget, leaving no snapshot.
import {spawn} from 'node:child_process'
import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {BIN, vdsnap, vdsnapJson, type RunResult} from '../helpers/cli.js'
import {startGateProxy} from '../helpers/gate-proxy.js'
import {startFaultProxy} from '../helpers/fault-proxy.js'
import {makeExt4Image, randomAt, sha256File, tempDir, countFiles} from '../helpers/images.js'
import {S3RVER_ENV, startS3, type TestS3} from '../helpers/s3.js'
import {haveSshd, startSshd, type TestSshd} from '../helpers/sshd.js'

const MiB = 1024 * 1024

function errorLines(r: RunResult): string[] {
  return r.stderr.trim().split('\n').filter((l) => l.startsWith('vdsnap: error'))
}

/** Starts the CLI in the background; `done` resolves with its exit code (killed after `limitMs`). */
function background(args: string[], env: Record<string, string | undefined>, limitMs = 240_000) {
  const child = spawn(process.execPath, [BIN, ...args], {env: {...process.env, ...env} as NodeJS.ProcessEnv, stdio: ['ignore', 'ignore', 'pipe']})
  let stderr = ''
  child.stderr!.on('data', (d) => (stderr += d))
  const done = new Promise<RunResult>((r) => {
    const t = setTimeout(() => child.kill('SIGKILL'), limitMs)
    child.on('close', (code) => (clearTimeout(t), r({code: code ?? -1, stdout: '', stderr})))
  })
  return {done}
}

async function until(cond: () => boolean, limitMs: number): Promise<void> {
  const t0 = Date.now()
  while (!cond()) {
    if (Date.now() - t0 > limitMs) throw new Error(`condition not met within ${limitMs} ms`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe.skipIf(!haveSshd)('copy to sftp with the server killed or the connection cut half-way', () => {
  const dir = tempDir()
  const img = join(dir.path, 'disk.img')
  const local = join(dir.path, 'local')
  const envLocal = {VDSNAP_REPOSITORY: local, VDSNAP_PASSWORD: 'src', VDSNAP_TO_PASSWORD: 'dst', SSH_AUTH_SOCK: undefined}
  let sshd: TestSshd
  let snapshot = ''
  let sourceChunks = 0

  beforeAll(async () => {
    sshd = await startSshd()
    makeExt4Image(img, 24 * MiB)
    randomAt(img, 2 * MiB, 18 * MiB) // incompressible: ~290 chunks of 64 KiB to send
    expect((await vdsnap(['init', '--block-size', '64KiB'], envLocal)).code).toBe(0)
    snapshot = (await vdsnapJson(['backup', img, '--disk', 'vm'], envLocal)).snapshot
    sourceChunks = countFiles(join(local, 'chunks'))
  })
  afterAll(async () => {
    await sshd?.stop()
    dir.cleanup()
  })

  async function initDest(name: string, port: number, knownHosts: string): Promise<{url: string; flags: string[]; path: string}> {
    const url = `sftp://${sshd.user}@127.0.0.1:${port}${sshd.rootDir}/${name}`
    const flags = ['--ssh-key', sshd.userKeyPath, '--known-hosts', knownHosts]
    const r = await vdsnap(['init', '--block-size', '64KiB', ...flags], {VDSNAP_REPOSITORY: url, VDSNAP_PASSWORD: 'dst', SSH_AUTH_SOCK: undefined})
    expect(r.code, r.stderr).toBe(0)
    return {url, flags, path: join(sshd.rootDir, name)}
  }

  /** The re-run completes; the destination checks clean and restores byte-identical; the source is as it was. */
  async function verifyAfter(dest: {url: string; flags: string[]}, first: RunResult): Promise<void> {
    expect([0, 7], `first copy: ${first.stderr}`).toContain(first.code)
    if (first.code !== 0) expect(errorLines(first)).toHaveLength(1)
    const again = await vdsnapJson(['copy', '--to', dest.url, ...dest.flags], envLocal)
    expect(again.copied.length + again.skipped.length).toBe(1)
    const envDest = {VDSNAP_REPOSITORY: dest.url, VDSNAP_PASSWORD: 'dst', SSH_AUTH_SOCK: undefined}
    expect((await vdsnapJson<any[]>(['snapshots', ...dest.flags], envDest)).map((s) => s.id)).toEqual([snapshot])
    expect((await vdsnapJson(['check', '--read-data', ...dest.flags], envDest)).findings).toEqual([])
    const out = join(dir.path, `restored-${Date.now()}.img`)
    const r = await vdsnap(['restore', snapshot, '--to', out, ...dest.flags], envDest)
    expect(r.code, r.stderr).toBe(0)
    expect(sha256File(out)).toBe(sha256File(img))
    // nothing lost on the source
    expect(countFiles(join(local, 'chunks'))).toBe(sourceChunks)
    expect((await vdsnapJson(['check', '--read-data'], envLocal)).findings).toEqual([])
    expect((await vdsnapJson<any[]>(['snapshots'], envLocal)).map((s) => s.id)).toEqual([snapshot])
  }

  it('sshd killed mid-copy and restarted: the copy rides it out or fails with exit 7; the re-run completes', async () => {
    const dest = await initDest('killed', sshd.port, sshd.knownHostsPath)
    const copy = background(['copy', '--to', dest.url, '--limit-upload', '3MiB', ...dest.flags], envLocal)
    await until(() => countFiles(join(dest.path, 'chunks')) >= sourceChunks / 4, 120_000)
    const arrived = countFiles(join(dest.path, 'chunks'))
    await sshd.kill()
    await new Promise((r) => setTimeout(r, 1000))
    await sshd.start()
    const first = await copy.done
    expect(arrived).toBeLessThan(sourceChunks) // really cut in the middle
    await verifyAfter(dest, first)
  }, 300_000)

  it('the connection cut mid-copy (server still up): the copy reconnects and completes in the same run', async () => {
    // The gate proxy holds the upload after 6 MiB, so the cut provably lands
    // mid-copy however fast or loaded the machine is; new connections then
    // pass freely, as after a network blip.
    const proxy = await startGateProxy(sshd.port)
    const kh = join(dir.path, 'known_hosts-proxy')
    writeFileSync(kh, readFileSync(sshd.knownHostsPath, 'utf8').replace(`]:${sshd.port} `, `]:${proxy.port} `))
    try {
      const dest = await initDest('dropped', proxy.port, kh)
      const stalled = proxy.stallAfter(6 * MiB)
      const copy = background(['copy', '--to', dest.url, ...dest.flags], envLocal)
      await stalled
      const arrived = countFiles(join(dest.path, 'chunks'))
      expect(arrived).toBeLessThan(sourceChunks)
      proxy.dropConnections()
      const first = await copy.done
      expect(first.code, first.stderr).toBe(0)
      expect(first.stderr).toMatch(/connection lost.*retry 1/)
      await verifyAfter(dest, first)
    } finally {
      await proxy.close()
    }
  }, 300_000)
})

describe('S3 with injected 5xx and throttling over HTTP', () => {
  const dir = tempDir()
  const img = join(dir.path, 'disk.img')
  let s3: TestS3

  beforeAll(async () => {
    s3 = await startS3('vdsnap-faults')
    makeExt4Image(img, 16 * MiB)
    randomAt(img, 1 * MiB, 6 * MiB)
  })
  afterAll(async () => {
    await s3?.stop()
    dir.cleanup()
  })

  const envFor = (endpoint: string, prefix: string) => ({
    ...S3RVER_ENV,
    AWS_ENDPOINT_URL: undefined,
    AWS_ENDPOINT_URL_S3: endpoint,
    VDSNAP_REPOSITORY: `s3://${s3.bucket}/${prefix}`,
    VDSNAP_PASSWORD: 'pw',
  })

  it('a bounded number of SlowDown / InternalError answers is retried: backup and restore succeed byte-identical', async () => {
    const proxy = await startFaultProxy(s3.port)
    try {
      const env = envFor(proxy.endpoint, 'bounded')
      expect((await vdsnap(['init', '--block-size', '256KiB'], env)).code).toBe(0)
      proxy.setPolicy({every: 4, max: 12})
      const b = await vdsnap(['backup', img, '--disk', 'vm', '--json'], env)
      expect(b.code, b.stderr).toBe(0)
      const afterBackup = proxy.injected
      expect(afterBackup).toBeGreaterThan(0)
      expect(b.stderr).toMatch(/(SlowDown|InternalError).*retry 1/)
      proxy.setPolicy({every: 3, max: 12})
      const out = join(dir.path, 'restored.img')
      const r = await vdsnap(['restore', JSON.parse(b.stdout).snapshot, '--to', out], env)
      expect(r.code, r.stderr).toBe(0)
      expect(proxy.injected).toBeGreaterThan(afterBackup)
      expect(sha256File(out)).toBe(sha256File(img))
      proxy.setPolicy(null)
      expect((await vdsnapJson(['check', '--read-data'], env)).findings).toEqual([])
    } finally {
      await proxy.close()
    }
  }, 180_000)

  it('faults that never stop: one error line, exit 7 within the retry budget, no snapshot', async () => {
    const proxy = await startFaultProxy(s3.port)
    try {
      const env = envFor(proxy.endpoint, 'endless')
      expect((await vdsnap(['init', '--block-size', '256KiB'], env)).code).toBe(0)
      const before = await vdsnapJson<any[]>(['snapshots'], env)
      // every chunk upload is refused; the lock, listings and reads still work
      proxy.setPolicy({every: 1, max: Infinity, match: (q) => q.method === 'PUT' && q.path.includes('/chunks/')})
      const t0 = Date.now()
      const b = await vdsnap(['backup', img, '--disk', 'vm'], env)
      const elapsed = Date.now() - t0
      expect(b.code, b.stderr).toBe(7)
      const lines = errorLines(b)
      expect(lines).toHaveLength(1)
      expect(lines[0]).toMatch(/writing chunks\/.*(SlowDown|InternalError)/)
      expect(elapsed).toBeLessThan(120_000) // 8 attempts, backoff capped: about 30 s at worst
      expect(proxy.injected).toBeGreaterThanOrEqual(8)
      proxy.setPolicy(null)
      expect(await vdsnapJson<any[]>(['snapshots'], env)).toEqual(before)
      expect((await vdsnapJson(['unlock'], env)).removed).toEqual([]) // the lock was released
      expect((await vdsnapJson(['check'], env)).findings).toEqual([])
    } finally {
      await proxy.close()
    }
  }, 240_000)
})
