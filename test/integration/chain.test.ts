// End to end through the CLI: chains of at least 10 snapshots of a real
// ext4 image, for 64 KiB, default and 16 MiB blocks, plaintext and
// encrypted. Between snapshots blocks are rewritten, zeroed (including data
// written the step before), left alone for one step, and the disk grows
// twice (a new full); no size is a multiple of the block size. Every
// snapshot restores byte for byte; --delta-from equals a full restore;
// diff reports exactly the blocks that differ, computed here by comparing
// the image versions block by block.
import {copyFileSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {vdsnap, vdsnapJson} from '../helpers/cli.js'
import {fileSize, makeExt4Image, prng, randomAt, resize, tempDir, zeroAt} from '../helpers/images.js'

interface Case {
  name: string
  /** undefined: the repository default */
  blockSize?: number
  encrypted: boolean
  size: number
  steps: number
  syntheticEvery?: number
}

const KiB = 1024
const MiB = 1024 * KiB
const DEFAULT_BLOCK_SIZE = 512 * KiB // src/repo/config.ts
const GROW_AT = new Set([3, 8]) // the disk grows before these snapshots: a new full
const UNCHANGED_AT = 6 // nothing changes before this snapshot

// Both envelopes at both edge block sizes, and the default encrypted (the
// common case; plaintext at the default block size adds little but time).
const CASES: Case[] = [
  {name: 'plaintext, 64KiB blocks', blockSize: 64 * KiB, encrypted: false, size: 24 * MiB + 4096 + 17, steps: 10},
  {name: 'encrypted, 64KiB blocks', blockSize: 64 * KiB, encrypted: true, size: 24 * MiB + 8192 + 1, steps: 10},
  {name: 'encrypted, default blocks, synthetic full every 4', encrypted: true, size: 40 * MiB + 12345, steps: 10, syntheticEvery: 4},
  {name: 'plaintext, 16MiB blocks', blockSize: 16 * MiB, encrypted: false, size: 40 * MiB + 512, steps: 10},
  {name: 'encrypted, 16MiB blocks', blockSize: 16 * MiB, encrypted: true, size: 36 * MiB + 3, steps: 10},
]

/** Block numbers whose bytes differ; past the end of the shorter file every block differs. */
function changedBlocks(a: string, b: string, blockSize: number): number[] {
  const x = readFileSync(a)
  const y = readFileSync(b)
  const out: number[] = []
  for (let off = 0, i = 0; off < Math.max(x.length, y.length); off += blockSize, i++) {
    if (!x.subarray(off, off + blockSize).equals(y.subarray(off, off + blockSize))) out.push(i)
  }
  return out
}

/** Block numbers covered by byte ranges. */
function rangeBlocks(ranges: {offset: number; length: number}[], blockSize: number): number[] {
  const out: number[] = []
  for (const r of ranges) {
    expect(r.offset % blockSize).toBe(0)
    for (let off = r.offset; off < r.offset + r.length; off += blockSize) out.push(off / blockSize)
  }
  return out
}

describe.each(CASES)('snapshot chain: $name', (c) => {
  const dir = tempDir()
  const repo = join(dir.path, 'repo')
  const img = join(dir.path, 'disk.img')
  const env = {VDSNAP_REPOSITORY: repo, VDSNAP_PASSWORD: c.encrypted ? 'correct horse' : undefined}
  const blockSize = c.blockSize ?? DEFAULT_BLOCK_SIZE
  const versions: {id: string; copy: string; size: number}[] = []

  beforeAll(async () => {
    makeExt4Image(img, c.size - (c.size % 4096))
    resize(img, c.size) // odd tail, not a multiple of the block size
    const init = await vdsnap(
      [
        'init',
        ...(c.blockSize ? ['--block-size', String(c.blockSize)] : []),
        ...(c.encrypted ? [] : ['--no-encryption']),
        ...(c.syntheticEvery ? ['--synthetic-full-every', String(c.syntheticEvery)] : []),
      ],
      env,
    )
    expect(init.code, init.stderr).toBe(0)
    const rnd = prng(blockSize + c.steps + (c.encrypted ? 1 : 0))
    let written: {offset: number; length: number} | undefined
    for (let step = 0; step < c.steps; step++) {
      if (step > 0 && step !== UNCHANGED_AT) {
        const size = fileSize(img)
        // zero part of what the previous step wrote (surely not zero yet)
        if (written) zeroAt(img, written.offset, Math.min(written.length, 100 * KiB))
        // rewrite a few scattered ranges, zero one
        for (let k = 0; k < 3; k++) {
          const range = {offset: Math.floor(rnd() * (size - 200_000)), length: 1 + Math.floor(rnd() * 150_000)}
          randomAt(img, range.offset, range.length)
          if (k === 0) written = range
        }
        zeroAt(img, Math.floor(rnd() * (size - 300_000)), 256 * KiB)
        if (GROW_AT.has(step)) {
          resize(img, size + 3 * MiB + 999)
          randomAt(img, size + MiB, 5000) // data in the appended part
        }
      }
      const res = await vdsnapJson(['backup', img, '--disk', 'vm1', '--tag', `step${step}`], env)
      const copy = join(dir.path, `v${step}.img`)
      copyFileSync(img, copy)
      versions.push({id: res.snapshot, copy, size: fileSize(img)})
    }
    expect(versions.length).toBeGreaterThanOrEqual(10)
    for (const v of versions) expect(v.size % blockSize).not.toBe(0)
  })
  afterAll(() => dir.cleanup())

  it('restores every snapshot byte for byte', async () => {
    for (const [i, v] of versions.entries()) {
      const out = join(dir.path, `r${i}.img`)
      const r = await vdsnap(['restore', v.id.slice(0, 12), '--to', out], env)
      expect(r.code, r.stderr).toBe(0)
      expect(fileSize(out)).toBe(v.size)
      expect(readFileSync(out).equals(readFileSync(v.copy)), `snapshot ${i} differs from the source`).toBe(true)
    }
  })

  it('lists the chain: delta indexes, a new full where the disk grew, synthetic fulls', async () => {
    const snaps = await vdsnapJson<any[]>(['snapshots', '--disk', 'vm1'], env)
    expect(snaps.map((s) => s.id)).toEqual(versions.map((v) => v.id))
    expect(snaps[0].indexKind).toBe('full')
    expect(snaps.slice(1).some((s) => s.indexKind === 'delta')).toBe(true)
    for (const step of GROW_AT) {
      expect(versions[step]!.size).toBeGreaterThan(versions[step - 1]!.size)
      expect(snaps[step]).toMatchObject({indexKind: 'full', chainLength: 0, parent: null})
    }
    expect(snaps[UNCHANGED_AT].stats.changedBlocks).toBe(0)
    if (c.syntheticEvery) {
      expect(snaps.filter((s, i) => s.indexKind === 'full' && !GROW_AT.has(i) && i > 0).length).toBeGreaterThan(0)
      for (const s of snaps) expect(s.chainLength).toBeLessThan(c.syntheticEvery)
    }
  })

  it('--delta-from writes only differing blocks and equals a full restore', async () => {
    const pairs = versions.slice(0, -1).map((v, i) => [v, versions[i + 1]!] as const).filter(([a, b]) => a.size === b.size)
    expect(pairs.length).toBeGreaterThan(0)
    const [a, b] = pairs[pairs.length - 1]!
    const target = join(dir.path, 'rollback.img')
    copyFileSync(a.copy, target)
    const res = await vdsnapJson(['restore', b.id, '--to', target, '--delta-from', a.id], env)
    expect(readFileSync(target).equals(readFileSync(b.copy))).toBe(true)
    const expected = changedBlocks(a.copy, b.copy, blockSize)
    expect(res.blocksWritten + res.zeroBlocks).toBe(expected.length)
    // and rolling back the other way
    const back = await vdsnapJson(['restore', a.id, '--to', target, '--delta-from', b.id], env)
    expect(back.blocksWritten + back.zeroBlocks).toBe(expected.length)
    expect(readFileSync(target).equals(readFileSync(a.copy))).toBe(true)
  })

  it('diff reports exactly the blocks that differ, for neighbours, distant pairs, across growth and when nothing changed', async () => {
    const last = versions.length - 1
    const pairs: [number, number][] = [
      [0, 1], // one step of rewrites and zeroes
      [2, 3], // the disk grew (shrinking is in the unit test)
      [UNCHANGED_AT - 1, UNCHANGED_AT], // nothing changed
      [4, 7], // several steps apart, on one side of a growth
      [0, last], // the whole chain, across both growths
    ]
    let whole: any
    for (const [i, j] of pairs) {
      const [a, b] = [versions[i]!, versions[j]!]
      const expected = changedBlocks(a.copy, b.copy, blockSize)
      const d = await vdsnapJson(['diff', a.id, b.id, '--ranges'], env)
      const what = `diff ${i} ${j}`
      expect(rangeBlocks(d.ranges, blockSize), what).toEqual(expected)
      expect(d.changedBlocks, what).toBe(expected.length)
      expect(d.blockCount, what).toBe(Math.ceil(Math.max(a.size, b.size) / blockSize))
      const end = d.ranges.length ? d.ranges[d.ranges.length - 1].offset + d.ranges[d.ranges.length - 1].length : 0
      expect(end, what).toBeLessThanOrEqual(Math.max(a.size, b.size))
      expect(d.changedBytes, what).toBe(d.ranges.reduce((s: number, r: {length: number}) => s + r.length, 0))
      if (i === UNCHANGED_AT - 1) expect(expected, 'the unchanged step').toEqual([])
      else expect(expected.length, what).toBeGreaterThan(0)
      if (a.size !== b.size) expect(expected).toContain(Math.ceil(Math.max(a.size, b.size) / blockSize) - 1)
      whole = d
    }
    // the human form lists the same ranges, one per line
    const [a, b] = [versions[0]!, versions[last]!]
    const json = whole
    const text = await vdsnap(['diff', a.id.slice(0, 10), b.id.slice(0, 10), '--ranges'], env)
    expect(text.code, text.stderr).toBe(0)
    const lines = text.stdout.trim().split('\n')
    expect(lines[0]).toMatch(new RegExp(`^${a.id.slice(0, 8)} → ${b.id.slice(0, 8)}: ${json.changedBlocks} of ${json.blockCount} blocks changed .* in ${json.ranges.length} ranges? \\(disk grew from `))
    expect(lines.slice(1).map((l) => l.trim())).toEqual(json.ranges.map((r: {offset: number; length: number}) => `${r.offset}+${r.length}`))
  })

  it('check --read-data finds nothing wrong and stats add up', async () => {
    const chk = await vdsnapJson(['check', '--read-data'], env)
    expect(chk.findings).toEqual([])
    expect(chk.chunksRead).toBe(chk.chunksReferenced)
    const st = await vdsnapJson(['stats'], env)
    expect(st.snapshots).toBe(c.steps)
    expect(st.dedupRatio).toBeGreaterThan(1)
    expect(st.chunkCount).toBeGreaterThanOrEqual(chk.chunksReferenced)
  })
})
