// check's plain-text summary: counts read as English ("1 snapshot", not "1 snapshots").
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {vdsnap} from '../helpers/cli.js'
import {randomAt, tempDir} from '../helpers/images.js'
import {execFileSync} from 'node:child_process'

describe('check summary line', () => {
  const dir = tempDir()
  afterAll(() => dir.cleanup())

  it('uses the singular for one snapshot and one chunk, the plural otherwise', async () => {
    const env = {VDSNAP_REPOSITORY: join(dir.path, 'repo')}
    const img = join(dir.path, 'one-block.img')
    execFileSync('truncate', ['-s', String(64 * 1024), img])
    randomAt(img, 0, 64 * 1024)
    expect((await vdsnap(['init', '--no-encryption', '--block-size', '64KiB'], env)).code).toBe(0)
    expect((await vdsnap(['backup', img], env)).code).toBe(0)
    const one = await vdsnap(['check'], env)
    expect(one.code, one.stderr).toBe(0)
    expect(one.stdout).toMatch(/^1 snapshot, 1 chunk referenced, .*0 stale locks: no errors$/m)
    expect((await vdsnap(['backup', img, '--full'], env)).code).toBe(0)
    expect((await vdsnap(['check'], env)).stdout).toMatch(/^2 snapshots, 1 chunk referenced/m)
  })
})
