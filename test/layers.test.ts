// The layer rule (STYLE.md, "arrows point down"): every import in src/ and
// commands/ points to a lower layer of the table below or stays inside its
// own layer, and no import cycle exists anywhere. CI runs it with the rest
// of the suite.
//
// The table is the code as it is, bottom first. Why each layer sits where
// it does:
//  - errors: imported by everything, imports nothing.
//  - flow: semaphores, interrupt clean-up, durations; no I/O of its own.
//  - primitives: local atomic writes (fs), the chunk object codec and worker
//    pool (chunk), the NBD protocol (nbd); they know nothing of repositories.
//  - storage and images: backends (backend; they use fs), image readers and
//    writers (disk; nbd-image.ts uses the NBD client), overlays (overlay).
//    STYLE.md: disk/ and backend/ import nothing above them.
//  - cbt: the changed-block map and the change sources (ranges from disk).
//  - repository: config, keys, locks, indexes, chains, manifests, diff,
//    sessions, and the BlockSource that reads a snapshot in order for
//    restore, export and serving alike.
//  - formats: the archive layout, readers and writers (not its use cases).
//  - use cases: backup, restore, copy, check, prune, serve, and archive
//    export/import — pipelines over the layers below. Imports inside one
//    layer are allowed (today no use case imports another); the cycle
//    check keeps them from going round.
//  - jobs: runs use cases unattended (`vdsnap run`).
//  - cli: what commands share (base command, rendering, passwords).
//  - commands: thin oclif adapters, the top.
import {describe, expect, it} from 'vitest'
import {findCycles, graphFromSources, graphFromTree, layerOf, layerViolations, type Layer} from './helpers/import-graph.js'
import {ROOT} from './helpers/cli.js'

export const LAYERS: Layer[] = [
  {name: 'errors', paths: ['src/errors.ts']},
  {name: 'flow', paths: ['src/flow/']},
  {name: 'primitives', paths: ['src/fs/', 'src/chunk/', 'src/nbd/']},
  {name: 'storage and images', paths: ['src/backend/', 'src/disk/', 'src/overlay/']},
  {name: 'cbt', paths: ['src/cbt/']},
  {name: 'repository', paths: ['src/repo/']},
  {name: 'formats', paths: ['src/archive/']},
  {
    name: 'use cases',
    paths: ['src/backup/', 'src/restore/', 'src/copy/', 'src/check/', 'src/prune/', 'src/serve/', 'src/archive/export.ts', 'src/archive/import.ts'],
  },
  {name: 'jobs', paths: ['src/jobs/']},
  {name: 'cli', paths: ['src/cli/']},
  {name: 'commands', paths: ['commands/']},
]

describe('the layer rule', () => {
  it('holds for src/ and commands/: no import points up, no file is outside the table', () => {
    const graph = graphFromTree(ROOT, ['src', 'commands'])
    expect(graph.size).toBeGreaterThan(100) // the tree was read
    expect(layerViolations(graph, LAYERS)).toEqual([])
  })

  it('no import cycle exists in src/ and commands/', () => {
    expect(findCycles(graphFromTree(ROOT, ['src', 'commands']))).toEqual([])
  })
})

describe('the layer checker', () => {
  const layers: Layer[] = [
    {name: 'errors', paths: ['src/errors.ts']},
    {name: 'repository', paths: ['src/repo/']},
    {name: 'formats', paths: ['src/archive/']},
    {name: 'use cases', paths: ['src/restore/', 'src/archive/export.ts']},
    {name: 'cli', paths: ['src/cli/']},
  ]
  const clean = {
    'src/errors.ts': 'export class E extends Error {}',
    'src/repo/a.ts': "import {E} from '../errors.js'\nimport {c} from './c.js'\nexport const a = 1",
    'src/repo/c.ts': 'export const c = 2',
    'src/archive/tar.ts': "import type {E} from '../errors.js'\nexport const t = 1",
    'src/archive/export.ts': "import {t} from './tar.js'\nexport const x = 1",
    'src/restore/r.ts': "import {a} from '../repo/a.js'\nimport {x} from '../archive/export.js'",
    'src/cli/b.ts': "import {a} from '../repo/a.js'\nimport {r} from '../restore/r.js'\nimport {Command} from '@oclif/core'",
  }

  it('passes a tree whose arrows point down', () => {
    const g = graphFromSources(clean)
    expect(g.get('src/cli/b.ts')).toEqual(['src/repo/a.ts', 'src/restore/r.ts']) // packages are not files of ours
    expect(layerViolations(g, layers)).toEqual([])
    expect(findCycles(g)).toEqual([])
  })

  it('the most specific path wins: archive/export.ts is a use case, the rest of archive/ a format', () => {
    expect(layers[layerOf('src/archive/export.ts', layers)]!.name).toBe('use cases')
    expect(layers[layerOf('src/archive/tar.ts', layers)]!.name).toBe('formats')
    expect(layerOf('src/elsewhere/x.ts', layers)).toBe(-1)
  })

  it.each([
    ['a static import', "import {b} from '../cli/b.js'"],
    ['a type-only import', "import type {B} from '../cli/b.js'"],
    ['a re-export', "export {b} from '../cli/b.js'"],
    ['a dynamic import', "const m = await import('../cli/b.js')"],
  ])('fails on %s from a lower layer into a higher one', (_, line) => {
    const g = graphFromSources({...clean, 'src/repo/bad.ts': line})
    expect(layerViolations(g, layers)).toEqual(['src/repo/bad.ts (repository) imports src/cli/b.ts (cli, a higher layer)'])
  })

  it('fails on a format importing a use case (BlockSource was in restore/ once)', () => {
    const g = graphFromSources({...clean, 'src/archive/open.ts': "import {x} from './export.js'"})
    expect(layerViolations(g, layers)).toEqual(['src/archive/open.ts (formats) imports src/archive/export.ts (use cases, a higher layer)'])
  })

  it('fails on a file in no layer and on an import of a file that does not exist', () => {
    const g = graphFromSources({...clean, 'src/stray/s.ts': '', 'src/repo/d.ts': "import {z} from './gone.js'"})
    expect(layerViolations(g, layers)).toEqual(['src/stray/s.ts is in no layer: add its directory to the table', 'src/repo/d.ts imports src/repo/gone.js, which is not a source file'])
  })

  it('finds a cycle inside one layer, which the layer rule alone allows', () => {
    const g = graphFromSources({...clean, 'src/repo/c.ts': "import {d} from './d.js'", 'src/repo/d.ts': "import {a} from './a.js'"})
    expect(layerViolations(g, layers)).toEqual([])
    expect(findCycles(g)).toEqual([['src/repo/a.ts', 'src/repo/c.ts', 'src/repo/d.ts']])
  })

  it('finds a file that imports itself', () => {
    expect(findCycles(graphFromSources({'src/repo/x.ts': "import {x} from './x.js'"}))).toEqual([['src/repo/x.ts']])
  })
})
