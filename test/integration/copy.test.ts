// copy between local repositories with different keys: only missing chunks
// are sent, a second copy sends nothing, an incremental copy sends only the
// changed blocks, and a copy killed with -9 resumes without re-sending.
import {spawn} from 'node:child_process'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {BIN, vdsnap, vdsnapJson} from '../helpers/cli.js'
import {makeExt4Image, randomAt, sha256File, tempDir, countFiles} from '../helpers/images.js'

const MiB = 1024 * 1024

describe('copy between repositories', () => {
  const dir = tempDir()
  const a = join(dir.path, 'a')
  const b = join(dir.path, 'b')
  const c = join(dir.path, 'c')
  const img = join(dir.path, 'disk.img')
  const env = {VDSNAP_REPOSITORY: a, VDSNAP_PASSWORD: 'alpha', VDSNAP_TO_PASSWORD: 'beta'}

  beforeAll(async () => {
    makeExt4Image(img, 40 * MiB)
    randomAt(img, 8 * MiB, 24 * MiB)
    expect((await vdsnap(['init', '--block-size', '64KiB'], env)).code).toBe(0)
    expect((await vdsnap(['init', '--block-size', '64KiB'], {VDSNAP_REPOSITORY: b, VDSNAP_PASSWORD: 'beta'})).code).toBe(0)
    expect((await vdsnap(['init', '--block-size', '64KiB', '--no-encryption'], {VDSNAP_REPOSITORY: c})).code).toBe(0)
    await vdsnapJson(['backup', img, '--disk', 'vm'], env)
  })
  afterAll(() => dir.cleanup())

  it('a copy killed mid-way resumes without re-sending what arrived; a second copy sends nothing', async () => {
    const total = countFiles(join(a, 'chunks'))
    // Throttled to 1 MiB/s, the copy (about 26 MiB) cannot finish within
    // ~18 s of a quarter arriving: the kill lands mid-way however the
    // machine is loaded, not by winning a race against a fast copy.
    const child = spawn(process.execPath, [BIN, 'copy', '--to', b, '--limit-upload', '1MiB'], {env: {...process.env, ...env}, stdio: 'ignore'})
    const closed = new Promise((r) => child.on('close', r))
    const t0 = Date.now()
    while (countFiles(join(b, 'chunks')) < total / 4 && Date.now() - t0 < 120_000) await new Promise((r) => setTimeout(r, 20))
    child.kill('SIGKILL')
    await closed
    const arrived = countFiles(join(b, 'chunks'))
    expect(arrived).toBeGreaterThan(0)
    expect(arrived).toBeLessThan(total)
    expect((await vdsnapJson<any[]>(['snapshots'], {VDSNAP_REPOSITORY: b, VDSNAP_PASSWORD: 'beta'})).length).toBe(0)
    const res = await vdsnapJson(['copy', '--to', b], env)
    expect(res.copied.length).toBe(1)
    expect(res.chunksSent + res.chunksPresent).toBe(total)
    expect(res.chunksPresent).toBe(arrived)
    const again = await vdsnapJson(['copy', '--to', b], env)
    expect(again).toMatchObject({copied: [], chunksSent: 0, bytesSent: 0})
  })

  it('an incremental copy sends only the changed blocks, and every copy restores identically', async () => {
    randomAt(img, 2 * MiB, 300 * 1024) // 5 blocks of 64 KiB
    const snap = await vdsnapJson(['backup', img, '--disk', 'vm'], env)
    const res = await vdsnapJson(['copy', '--to', b, 'vm@latest'], env)
    expect(res.copied).toEqual([snap.snapshot])
    expect(res.chunksSent).toBe(snap.newChunks)
    expect(res.chunksSent).toBeLessThanOrEqual(6)
    // and on to a plaintext repository, then restore from the last one
    const envB = {VDSNAP_REPOSITORY: b, VDSNAP_PASSWORD: 'beta'}
    await vdsnapJson(['copy', '--to', c], envB)
    const out = join(dir.path, 'out.img')
    expect((await vdsnap(['restore', 'vm@latest', '--to', out], {VDSNAP_REPOSITORY: c})).code).toBe(0)
    expect(sha256File(out)).toBe(sha256File(img))
    const snaps = await vdsnapJson<any[]>(['snapshots'], {VDSNAP_REPOSITORY: c})
    expect(snaps.map((s) => s.indexKind)).toEqual(['full', 'delta'])
    expect((await vdsnap(['check', '--read-data'], {VDSNAP_REPOSITORY: c})).code).toBe(0)
  })

  it('refuses repositories with different block sizes', async () => {
    const d = join(dir.path, 'd')
    await vdsnap(['init', '--no-encryption', '--block-size', '1MiB'], {VDSNAP_REPOSITORY: d})
    const r = await vdsnap(['copy', '--to', d], env)
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/block sizes differ/)
  })
})
