import {execFileSync} from 'node:child_process'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {parseChangedRanges, rangesToBlocks} from '../../src/cbt/change-source.js'
import {tempDir} from '../helpers/images.js'

describe('change sources', () => {
  it('reads {offset,length} arrays and merges overlaps', () => {
    expect(parseChangedRanges('[{"offset":10,"length":5},{"offset":12,"length":10},{"offset":100,"length":1}]', 'f')).toEqual([
      {offset: 10, length: 12},
      {offset: 100, length: 1},
    ])
  })

  it('reads real qemu-img map output of an overlay: only the top layer counts', () => {
    const d = tempDir()
    try {
      const base = join(d.path, 'base.qcow2')
      const top = join(d.path, 'top.qcow2')
      execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', base, '8M'])
      execFileSync('qemu-io', ['-c', 'write -P 1 0 1M', base], {stdio: 'ignore'})
      execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top])
      execFileSync('qemu-io', ['-c', 'write -P 2 2M 64k', '-c', 'write -z 4M 64k', top], {stdio: 'ignore'})
      const map = execFileSync('qemu-img', ['map', '--output=json', top]).toString()
      expect(parseChangedRanges(map, 'map')).toEqual([
        {offset: 2 * 1048576, length: 65536},
        {offset: 4 * 1048576, length: 65536},
      ])
    } finally {
      d.cleanup()
    }
  })

  it('rejects what it cannot read', () => {
    expect(() => parseChangedRanges('{', 'f')).toThrow(/not JSON/)
    expect(() => parseChangedRanges('{"a":1}', 'f')).toThrow(/array/)
    expect(() => parseChangedRanges('[{"offset":-1,"length":2}]', 'f')).toThrow(/entry 0/)
  })

  it('maps byte ranges to the blocks they touch, clipped to the disk', () => {
    const m = rangesToBlocks([{offset: 65535, length: 2}, {offset: 10 * 65536, length: 1 << 30}], 65536, 11 * 65536 - 5)
    expect([...m.blocks()]).toEqual([0, 1, 10])
  })
})
