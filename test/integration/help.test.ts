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

  it('--quiet says what it keeps: warnings and errors, in --help and README alike', async () => {
    const r = await vdsnap(['backup', '--help'])
    expect(r.stdout).toMatch(/-q, --quiet\s+Print only warnings and errors \(no progress,\s+no success lines\)/)
    expect(r.stdout).not.toMatch(/nothing but errors/)
    expect(readFileSync(join(ROOT, 'README.md'), 'utf8')).toMatch(/`--quiet` \(print only\s+warnings and errors: no progress, no success lines\)/)
  })

  it('vdsnap --help lists the commands', async () => {
    const r = await vdsnap(['--help'])
    expect(r.code).toBe(0)
    for (const c of ['backup', 'restore', 'check', 'copy']) expect(r.stdout).toContain(c)
  })

  it('vdsnap --help (and vdsnap help) end with examples of real commands and flags', async () => {
    for (const argv of [['--help'], ['help']]) {
      const r = await vdsnap(argv)
      expect(r.code).toBe(0)
      const examples = r.stdout.split(/^EXAMPLES$/m)[1]
      expect(examples, `vdsnap ${argv.join(' ')} has no EXAMPLES section`).toBeDefined()
      expect(r.stdout.indexOf('COMMANDS')).toBeLessThan(r.stdout.indexOf('EXAMPLES'))
      const commands = [...examples!.matchAll(/^\s+\$ vdsnap (.*)$/gm)].map((m) => m[1]!)
      expect(commands.length).toBeGreaterThanOrEqual(5)
      for (const c of ['init', 'backup', 'restore', 'check']) expect(commands.some((line) => line.startsWith(`${c} `) || line === c), c).toBe(true)
      for (const line of commands) {
        const words = line.split(/\s+/)
        const id = ids.includes(`${words[0]}:${words[1]}`) ? `${words[0]}:${words[1]}` : words[0]!
        expect(ids, line).toContain(id)
        const flags = manifest.commands[id]!.flags
        for (const w of words) if (w.startsWith('--')) expect(Object.keys(flags), `${line}: ${w}`).toContain(w.slice(2).split('=')[0])
      }
    }
  })
})
