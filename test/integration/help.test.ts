// Every command documents itself: --help lists its flags and examples.
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {ROOT, vdsnap} from '../helpers/cli.js'

const manifest = JSON.parse(readFileSync(join(ROOT, 'oclif.manifest.json'), 'utf8')) as {commands: Record<string, {examples?: string[]; flags: Record<string, unknown>}>}
const ids = Object.keys(manifest.commands)

describe('help', () => {
  it('the manifest lists the core commands', () => {
    for (const id of ['init', 'backup', 'snapshots', 'diff', 'restore', 'check', 'info', 'unlock', 'stats', 'key:add', 'key:passwd', 'key:list', 'copy']) {
      expect(ids).toContain(id)
    }
  })

  it.each(ids)('%s --help shows flags and examples', async (id) => {
    expect(manifest.commands[id]!.examples?.length ?? 0).toBeGreaterThan(0)
    const r = await vdsnap([...id.split(':'), '--help'])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/EXAMPLES/)
    expect(r.stdout).toMatch(/--repo/)
  })

  it('vdsnap --help lists the commands', async () => {
    const r = await vdsnap(['--help'])
    expect(r.code).toBe(0)
    for (const c of ['backup', 'restore', 'check', 'copy']) expect(r.stdout).toContain(c)
  })
})
