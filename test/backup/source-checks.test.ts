// What counts as another source for a disk's lineage (sourceChanges):
// path, host and a stable identity present on both sides. Manifests written
// before identities were recorded have none: nothing to compare.
import {describe, expect, it} from 'vitest'
import {sourceChanges} from '../../src/backup/source-checks.js'
import type {Manifest, SourceFacts} from '../../src/repo/manifest.js'

const facts = (path: string, identity?: string): SourceFacts => ({path, format: 'vhd', size: 1, mtimeMs: 1, ...(identity ? {identity} : {})})
const chained = (path: string, identity: string | undefined, base: string): SourceFacts => ({
  ...facts(path, identity),
  layers: [{path, size: 1, mtimeMs: 1}, {path: base, size: 1, mtimeMs: 1}],
})
const previous = (source: SourceFacts, hostname = 'kvm1'): Manifest =>
  ({version: 1, id: 'ab'.repeat(32), disk: 'web', hostname, source} as unknown as Manifest)

describe('sourceChanges', () => {
  it.each([
    ['same path, host and identity', previous(facts('/a', 'vhd:01')), facts('/a', 'vhd:01'), 'kvm1', []],
    ['an old manifest without identity: nothing to compare', previous(facts('/a')), facts('/a', 'vhd:01'), 'kvm1', []],
    ['a format without identity now', previous(facts('/a', 'vhd:01')), facts('/a'), 'kvm1', []],
    ['another path', previous(facts('/a')), facts('/b'), 'kvm1', ['source /a → /b']],
    ['another host', previous(facts('/a')), facts('/a'), 'kvm2', ['host kvm1 → kvm2']],
    ['another identity', previous(facts('/a', 'vhd:01')), facts('/a', 'vhd:02'), 'kvm1', ['image identity vhd:01 → vhd:02']],
    ['an overlay on the image backed up last (its own identity)', previous(facts('/base', 'vhd:01')), chained('/top', 'vhd:02', '/base'), 'kvm1', []],
    ['the base after the overlay was committed', previous(chained('/top', 'vhd:02', '/base')), facts('/base', 'vhd:01'), 'kvm1', []],
    ['an overlay on another image', previous(facts('/a')), chained('/top', undefined, '/b'), 'kvm1', ['source /a → /top']],
  ])('%s', (_name, prev, now, host, expected) => {
    expect(sourceChanges(prev, now, host)).toEqual(expected)
  })
})
