// One style everywhere, through the CLI: times in snapshots, forget and key
// list in one format (UTC, or local with --local-time); one JSON name per
// fact across commands; an unknown command is a one-line usage error with a
// suggestion; counts take the singular for one.
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {oneLine, vdsnap, vdsnapJson} from '../helpers/cli.js'
import {makeExt4Image, randomAt, tempDir} from '../helpers/images.js'

const MiB = 1024 * 1024
const UTC = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/
const KOLKATA = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+05:30$/

/** The cell of `column` in each data row of a table printed by the CLI. */
function column(table: string, name: string): string[] {
  const [head, ...rows] = table.trimEnd().split('\n').filter((l) => /\s{2}/.test(l))
  const at = head!.indexOf(name)
  expect(at, `no ${name} column in:\n${table}`).toBeGreaterThanOrEqual(0)
  return rows.map((r) => r.slice(at).split(/\s{2,}/)[0]!.trim())
}

describe('one style everywhere', () => {
  const dir = tempDir()
  const repo = join(dir.path, 'repo')
  const img = join(dir.path, 'web.img')
  const env = {VDSNAP_REPOSITORY: repo, VDSNAP_PASSWORD: 'pw', TZ: 'Asia/Kolkata'}
  let first: any
  let second: any

  beforeAll(async () => {
    makeExt4Image(img, 4 * MiB)
    expect((await vdsnap(['init', '--block-size', '64KiB'], env)).code).toBe(0)
    first = await vdsnapJson(['backup', img], env)
    randomAt(img, 3 * MiB, 4096) // one block changes
    const r = await vdsnap(['backup', img], env)
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/, 1 block changed \(/)
    second = (await vdsnapJson<any[]>(['snapshots'], env))[1]
  })
  afterAll(() => dir.cleanup())

  it('snapshots, forget and key list print times alike: UTC by default, local with --local-time', async () => {
    const snaps = (await vdsnap(['snapshots'], env)).stdout
    const forget = (await vdsnap(['forget', '--keep-last', '1', '--dry-run'], env)).stdout
    const keys = (await vdsnap(['key', 'list'], env)).stdout
    const times = column(snaps, 'TIME')
    expect(times).toHaveLength(2)
    for (const t of [...times, ...column(forget, "TIME"), ...column(keys, "CREATED")]) expect(t, snaps + forget + keys).toMatch(UTC)
    expect(column(forget, 'TIME').sort()).toEqual([...times].sort()) // the same snapshot, the same string
    const local = [
      ...column((await vdsnap(['snapshots', '--local-time'], env)).stdout, 'TIME'),
      ...column((await vdsnap(['forget', '--keep-last', '1', '--dry-run', '--local-time'], env)).stdout, 'TIME'),
      ...column((await vdsnap(['key', 'list', '--local-time'], env)).stdout, 'CREATED'),
    ]
    expect(local).toHaveLength(5)
    for (const t of local) expect(t).toMatch(KOLKATA)
  })

  it('one JSON name per fact: snapshots says host, changedBlocks and newChunks like key list, backup and diff', async () => {
    expect(second.host).toBeTypeOf('string')
    expect(second).not.toHaveProperty('hostname')
    expect(second.stats).not.toHaveProperty('blocksChanged')
    expect(second.stats).not.toHaveProperty('blocksNew')
    expect(second.stats.changedBlocks).toBe(1)
    const firstDoc = (await vdsnapJson<any[]>(['snapshots'], env))[0]
    expect(firstDoc.stats.newChunks).toBe(first.newChunks)
    expect(firstDoc.stats.changedBlocks).toBe(first.changedBlocks)
    expect((await vdsnapJson(['diff', first.snapshot, second.id], env)).changedBlocks).toBe(1)
    expect((await vdsnapJson<any[]>(['key', 'list'], env))[0].host).toBe(second.host)
  })

  it('an unknown command is a one-line usage error (exit 2) with a suggestion; nothing in the repository changes', async () => {
    const r = await vdsnap(['snapshot'], env)
    expect(r.code).toBe(2)
    expect(oneLine(r.stderr)).toBe('vdsnap: error: "snapshot" is not a vdsnap command; did you mean "vdsnap snapshots"?')
    const k = await vdsnap(['key', 'lst', '--json'], env)
    expect(k.code).toBe(2)
    expect(JSON.parse(k.stdout)).toEqual({error: {message: '"key lst" is not a vdsnap command; did you mean "vdsnap key list"?', kind: 'usage', code: 'USAGE', exitCode: 2}})
    const far = await vdsnap(['frobnicate'], env)
    expect(far.code).toBe(2)
    expect(oneLine(far.stderr)).toBe('vdsnap: error: "frobnicate" is not a vdsnap command; "vdsnap --help" lists the commands')
    expect((await vdsnapJson<any[]>(['snapshots'], env)).length).toBe(2)
  })
})
