// One damaged manifest must not take the repository down: one flipped byte
// in one snapshot of disk "a" while disk "b" is intact. Listing commands skip
// it with a warning (exit 3) and go on for "b"; check names exactly what is
// lost; "repair snapshots" shows, then removes only the damaged manifest;
// "forget ID" removes a damaged snapshot.
import {createHash} from 'node:crypto'
import {existsSync, readFileSync, readdirSync, statSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {vdsnap, vdsnapJson} from '../helpers/cli.js'
import {makeExt4Image, randomAt, sha256File, tempDir} from '../helpers/images.js'

const MiB = 1024 * 1024

/** Every file under dir: relative name → size and SHA-256. */
function state(dir: string): Record<string, string> {
  const out: Record<string, string> = {}
  const walk = (d: string) => {
    for (const e of readdirSync(d, {withFileTypes: true})) {
      const p = join(d, e.name)
      if (e.isDirectory()) walk(p)
      else out[p.slice(dir.length + 1)] = `${statSync(p).size} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`
    }
  }
  if (existsSync(dir)) walk(dir)
  return out
}

function flipByte(path: string): void {
  const data = readFileSync(path)
  data[Math.floor(data.length / 2)]! ^= 0x10
  writeFileSync(path, data)
}

const warnings = (stderr: string) => stderr.split('\n').filter((l) => l.includes('warning:'))

describe('a damaged manifest', () => {
  const dir = tempDir()
  const repo = join(dir.path, 'repo')
  const other = join(dir.path, 'other')
  const imgA = join(dir.path, 'a.img')
  const imgB = join(dir.path, 'b.img')
  const env = {VDSNAP_REPOSITORY: repo, VDSNAP_PASSWORD: 'pw', VDSNAP_TO_PASSWORD: 'pw2'}
  let a1 = ''
  let a2 = ''
  let b1 = ''

  beforeAll(async () => {
    makeExt4Image(imgA, 8 * MiB)
    makeExt4Image(imgB, 8 * MiB)
    randomAt(imgB, 1 * MiB, 2 * MiB)
    expect((await vdsnap(['init', '--block-size', '64KiB'], env)).code).toBe(0)
    expect((await vdsnap(['init', '--block-size', '64KiB'], {VDSNAP_REPOSITORY: other, VDSNAP_PASSWORD: 'pw2'})).code).toBe(0)
    a1 = (await vdsnapJson(['backup', imgA, '--disk', 'a'], env)).snapshot
    randomAt(imgA, 2 * MiB, 64 * 1024)
    a2 = (await vdsnapJson(['backup', imgA, '--disk', 'a'], env)).snapshot
    b1 = (await vdsnapJson(['backup', imgB, '--disk', 'b'], env)).snapshot
    flipByte(join(repo, 'snapshots', a2))
  })
  afterAll(() => dir.cleanup())

  it('snapshots lists the rest with one warning naming it (exit 3); forget --dry-run and a policy on "b" work', async () => {
    const r = await vdsnap(['snapshots', '--json'], env)
    expect(r.code, r.stderr).toBe(3)
    expect(JSON.parse(r.stdout).map((s: {id: string}) => s.id).sort()).toEqual([a1, b1].sort())
    expect(warnings(r.stderr)).toHaveLength(1)
    expect(warnings(r.stderr)[0]).toMatch(new RegExp(`skipped snapshot ${a2.slice(0, 8)} in .*failed authentication`))
    const before = state(repo)
    const f = await vdsnap(['forget', '--disk', 'b', '--keep-last', '1', '--dry-run'], env)
    expect(f.code, f.stderr).toBe(3)
    expect(state(repo)).toEqual(before)
  })

  it('restore, backup and copy of the intact disk work (exit 3 with the warning)', async () => {
    const target = join(dir.path, 'b-restored.img')
    const r = await vdsnap(['restore', 'b@latest', '--to', target], env)
    expect(r.code, r.stderr).toBe(3)
    expect(warnings(r.stderr).join('\n')).toContain(a2.slice(0, 8))
    expect(sha256File(target)).toBe(sha256File(imgB))
    const b = await vdsnap(['backup', imgB, '--disk', 'b', '--json'], env)
    expect(b.code, b.stderr).toBe(3)
    expect(JSON.parse(b.stdout).snapshot).toMatch(/^[0-9a-f]{64}$/)
    const c = await vdsnap(['copy', '--to', other, '--disk', 'b', '--json'], env)
    expect(c.code, c.stderr).toBe(3)
    expect(JSON.parse(c.stdout).copied.length).toBe(2)
    // and a's intact older snapshot restores too
    const a = await vdsnap(['restore', a1, '--to', join(dir.path, 'a1.img')], env)
    expect(a.code, a.stderr).toBe(3)
  })

  it('a job run backs up and copies the intact disk, with the skipped manifest as a warning (exit 3)', async () => {
    const jobs = join(dir.path, 'jobs.yaml')
    writeFileSync(jobs, `jobs:\n  n:\n    repository: ${repo}\n    password: {env: VDSNAP_PASSWORD}\n    disks: [{path: ${imgB}, name: b}]\n    copies: [{repository: ${other}, password: {env: VDSNAP_TO_PASSWORD}}]\n    check: {every: never}\n`)
    const r = await vdsnap(['run', 'n', '--jobs', jobs, '--json'], {...env, VDSNAP_REPOSITORY: undefined})
    expect(r.code, r.stderr).toBe(3)
    const job = JSON.parse(r.stdout).jobs[0]
    expect(job.disks[0]).toMatchObject({ok: true})
    expect(job.disks[0].warnings.join('\n')).toContain(`skipped snapshot ${a2.slice(0, 8)}`)
    expect(job.copies[0]).toMatchObject({ok: true, copied: 1})
  })

  it('check names the lost snapshot and the intact ones; prune refuses and changes nothing', async () => {
    const r = await vdsnap(['check', '--json'], env)
    expect(r.code).toBe(6)
    const res = JSON.parse(r.stdout)
    expect(res.lost).toEqual([a2])
    expect(res.intact).toContain(a1)
    expect(res.intact).toContain(b1)
    expect(res.intact).not.toContain(a2)
    const text = await vdsnap(['check'], env)
    expect(text.stdout).toContain(`lost (cannot be restored): ${a2.slice(0, 8)}`)
    const before = state(repo)
    const p = await vdsnap(['prune'], env)
    expect(p.code).toBe(6)
    expect(state(repo)).toEqual(before)
  })

  it('repair snapshots shows, then removes only the damaged manifest', async () => {
    const before = state(repo)
    // counted here, not assumed: earlier tests may or may not have added backups
    const readable = Object.keys(before).filter((k) => k.startsWith('snapshots/') && k !== `snapshots/${a2}`).length
    const dry = await vdsnap(['repair', 'snapshots', '--dry-run'], env)
    expect(dry.stderr).toContain(`would remove damaged snapshot ${a2.slice(0, 8)}`)
    expect(state(repo)).toEqual(before)
    const r = await vdsnap(['repair', 'snapshots'], env)
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toContain(`removing damaged snapshot ${a2.slice(0, 8)}`)
    expect(r.stdout).toContain(`1 damaged snapshot removed, ${readable} readable snapshots untouched`)
    const after = state(repo)
    const gone = Object.keys(before).filter((k) => !(k in after))
    expect(gone).toEqual([`snapshots/${a2}`])
    for (const [k, v] of Object.entries(after)) if (!k.startsWith('locks/')) expect(before[k], k).toBe(v)
    const s = await vdsnap(['snapshots'], env)
    expect(s.code, s.stderr).toBe(0)
    expect(warnings(s.stderr)).toEqual([])
  })

  it('forget ID removes a damaged snapshot (and nothing else); check then names the deltas that rested on it', async () => {
    // this test makes its own delta on b1, and counts whatever earlier tests added
    randomAt(imgB, 3 * MiB, 64 * 1024)
    expect((await vdsnap(['backup', imgB, '--disk', 'b'], env)).code).toBeLessThanOrEqual(3)
    const listed = JSON.parse((await vdsnap(['snapshots', '--json'], env)).stdout) as {id: string; disk: string}[]
    const later = listed.filter((m) => m.disk === 'b' && m.id !== b1).map((m) => m.id) // every backup of "b" since b1 is a delta on it
    expect(later.length).toBeGreaterThanOrEqual(1)
    flipByte(join(repo, 'snapshots', b1))
    const before = state(repo)
    const dry = await vdsnap(['forget', b1.slice(0, 8), '--dry-run', '--json'], env)
    expect(JSON.parse(dry.stdout)).toMatchObject({damagedRemoved: [b1], removedCount: 1})
    const r = await vdsnap(['forget', b1.slice(0, 8)], env)
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toContain(`${b1.slice(0, 8)} (damaged) was removed`)
    expect(r.stdout).toContain('1 snapshot (1 damaged) removed')
    const after = state(repo)
    expect(Object.keys(before).filter((k) => !(k in after))).toEqual([`snapshots/${b1}`])
    const s = await vdsnapJson<{id: string; disk: string}[]>(['snapshots'], env)
    expect(s.filter((m) => m.disk === 'b').map((m) => m.id).sort()).toEqual([...later].sort())
    expect(s.map((m) => m.id).sort()).toEqual([a1, ...later].sort())
    // they rested on b1 and were lost with its manifest: check says so, and a1 is intact
    const c = await vdsnap(['check', '--json'], env)
    expect(c.code).toBe(6)
    expect(JSON.parse(c.stdout)).toMatchObject({lost: [...later].sort(), intact: [a1]})
  })
})
