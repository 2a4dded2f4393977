// SIGINT and SIGTERM through the CLI, each sent at a known point (the lock
// written and a chunk stored, or the restore's temporary file created,
// with the transfer slowed by a bandwidth limit so it is still running):
// exit 130 / 143, one line, no lock and no temporary file left, nothing
// committed. A second signal while the clean-up hangs (the S3 server
// stopped with SIGSTOP) exits at once.
import {spawn, type ChildProcess} from 'node:child_process'
import {existsSync, mkdirSync, readdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {ListObjectsV2Command, S3Client} from '@aws-sdk/client-s3'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {BIN, vdsnap, vdsnapJson} from '../helpers/cli.js'
import {randomAt, tempDir} from '../helpers/images.js'
import {S3RVER_ENV, startS3, type TestS3} from '../helpers/s3.js'

const MiB = 1024 * 1024
const dir = tempDir()
afterAll(() => dir.cleanup())

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Every file under `root` (relative paths), dot files included. */
function allFiles(root: string): string[] {
  if (!existsSync(root)) return []
  return readdirSync(root, {recursive: true, withFileTypes: true})
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(root.length + 1))
}

interface Running {
  child: ChildProcess
  done: Promise<{code: number | null; signal: string | null; stderr: string}>
}

function start(args: string[], env: Record<string, string | undefined> = {}): Running {
  const child = spawn(process.execPath, [BIN, ...args], {env: {...process.env, ...env} as NodeJS.ProcessEnv, stdio: ['ignore', 'pipe', 'pipe']})
  const err: Buffer[] = []
  child.stdout!.resume()
  child.stderr!.on('data', (d) => err.push(d))
  const done = new Promise<{code: number | null; signal: string | null; stderr: string}>((r) =>
    child.on('close', (code, signal) => r({code, signal, stderr: Buffer.concat(err).toString()})),
  )
  return {child, done}
}

/** Waits (bounded: 2 minutes) until `ready()` holds; fails if the process ended first. */
async function until(r: Running, ready: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 6000 && !ready(); i++) {
    if (r.child.exitCode !== null) throw new Error(`ended (exit ${r.child.exitCode}) before ${what}: ${(await r.done).stderr}`)
    await sleep(20)
  }
  expect(ready(), what).toBe(true)
}

describe('interrupting a local backup and restore', () => {
  const repo = join(dir.path, 'repo')
  const img = join(dir.path, 's.img')
  const env = {VDSNAP_REPOSITORY: repo, VDSNAP_PASSWORD: undefined}
  const chunks = () => allFiles(join(repo, 'chunks')).filter((f) => !f.includes('.tmp-')).length
  const locks = () => allFiles(join(repo, 'locks'))

  beforeAll(async () => {
    writeFileSync(img, Buffer.alloc(0))
    randomAt(img, 0, 6 * MiB)
    expect((await vdsnap(['init', '--no-encryption', '--block-size', '64KiB'], env)).code).toBe(0)
  })

  it('SIGINT during a backup: exit 130, one line, no lock, no temporary file, no snapshot', async () => {
    const r = start(['backup', img, '--disk', 's', '--quiet', '--limit-upload', '256KiB'], env)
    await until(r, () => locks().length === 1 && chunks() >= 1, 'the lock is written and a chunk stored')
    r.child.kill('SIGINT')
    const res = await r.done
    expect(res.code).toBe(130)
    expect(res.stderr).toBe('vdsnap: error: interrupted by SIGINT: stopped; locks released and temporary files removed (run the command again to finish)\n')
    expect(locks()).toEqual([])
    expect(allFiles(repo).filter((f) => f.includes('.tmp-'))).toEqual([])
    expect(allFiles(join(repo, 'snapshots'))).toEqual([])
    // the repository takes the next command at once: no stale lock to wait for or unlock
    const snap = await vdsnapJson(['backup', img, '--disk', 's'], env)
    expect(snap.snapshot).toMatch(/^[0-9a-f]{64}$/)
  })

  it('SIGTERM during a restore: exit 143, one line, neither the target nor its temporary file, no lock', async () => {
    const target = join(dir.path, 'out', 's.img')
    mkdirSync(join(dir.path, 'out'))
    const r = start(['restore', 's@latest', '--to', target, '--quiet', '--limit-download', '256KiB'], env)
    await until(r, () => locks().length === 1 && allFiles(join(dir.path, 'out')).length === 1, 'the lock and the temporary target exist')
    r.child.kill('SIGTERM')
    const res = await r.done
    expect(res.code).toBe(143)
    expect(res.stderr).toBe('vdsnap: error: interrupted by SIGTERM: stopped; locks released and temporary files removed (run the command again to finish)\n')
    expect(allFiles(join(dir.path, 'out'))).toEqual([])
    expect(locks()).toEqual([])
  })
})

describe('a second signal while the clean-up hangs', () => {
  let s3: TestS3
  const img = join(dir.path, 's3.img')

  beforeAll(async () => {
    s3 = await startS3()
    writeFileSync(img, Buffer.alloc(0))
    randomAt(img, 0, 4 * MiB)
  })
  afterAll(async () => {
    process.kill(s3.pid, 'SIGCONT')
    await s3.stop()
  })

  it('exits at once with the second signal\'s code and says the lock may be left', async () => {
    const env = {...S3RVER_ENV, VDSNAP_PASSWORD: undefined, VDSNAP_REPOSITORY: `s3://${s3.bucket}/sig`}
    const flags = ['--s3-endpoint', s3.endpoint]
    expect((await vdsnap(['init', '--no-encryption', '--block-size', '64KiB', ...flags], env)).code).toBe(0)
    const r = start(['backup', img, '--disk', 's', '--quiet', '--limit-upload', '256KiB', ...flags], env)
    const client = new S3Client({endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: {accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER'}})
    const count = async (prefix: string) => (await client.send(new ListObjectsV2Command({Bucket: s3.bucket, Prefix: prefix}))).KeyCount ?? 0
    let ready = false
    for (let i = 0; i < 1200 && !ready && r.child.exitCode === null; i++) {
      ready = (await count('sig/locks/')) === 1 && (await count('sig/chunks/')) >= 1
      if (!ready) await sleep(50)
    }
    expect(ready, 'the lock is written and a chunk stored').toBe(true)
    client.destroy()
    process.kill(s3.pid, 'SIGSTOP') // every request now hangs, the lock's removal too
    try {
      r.child.kill('SIGINT')
      // nothing can finish the clean-up now; the second signal must end it
      await sleep(500)
      expect(r.child.exitCode).toBeNull()
      r.child.kill('SIGTERM')
      const res = await r.done
      expect(res.code).toBe(143)
      expect(res.stderr).toBe('vdsnap: error: interrupted again by SIGTERM: exiting without finishing the clean-up; run "vdsnap unlock" once no vdsnap process uses the repository\n')
    } finally {
      process.kill(s3.pid, 'SIGCONT')
    }
    // whether the lock's DELETE, queued in the stopped server's socket, lands is up to the server: either way unlock leaves none
    expect((await vdsnap(['unlock', ...flags], env)).code).toBe(0)
    expect((await vdsnapJson(['check', ...flags], env)).staleLocks).toBe(0)
  })
})
