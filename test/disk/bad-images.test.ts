// Corrupt, truncated and hostile images: each is refused with a one-line
// ImageFormatError (or another VdsnapError) that says what is wrong, and a
// seeded fuzz run checks that no mutation makes a reader hang, crash or
// throw anything but a VdsnapError.
import {execFileSync} from 'node:child_process'
import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {ImageFormatError, VdsnapError} from '../../src/errors.js'
import {openImage} from '../../src/disk/open.js'
import type {OpenOptions} from '../../src/disk/types.js'
import {MiB, makeDiskBytes, makeEncryptedQcow2, prng, QEMU_IMG, qemuImgAt, qemuIo, tempDir, writeRaw} from './image-fixtures.js'
import {GRAIN, type GrainContent, writeSeSparseDisk} from './sesparse-builder.js'

let dir: string
let cleanup: () => void

beforeAll(() => {
  ;({path: dir, cleanup} = tempDir('vdsnap-bad-'))
  writeRaw(join(dir, 'disk.raw'), makeDiskBytes(2 * MiB + 3 * 512, 11))
  qemuImgAt(dir, 'convert', '-f', 'raw', '-O', 'qcow2', 'disk.raw', 'good.qcow2')
  qemuImgAt(dir, 'convert', '-f', 'raw', '-O', 'qcow2', '-c', '-o', 'compression_type=zstd,cluster_size=4096', 'disk.raw', 'zstd.qcow2')
  qemuImgAt(dir, 'convert', '-f', 'raw', '-O', 'qcow2', '-o', 'extended_l2=on', 'disk.raw', 'ext.qcow2')
  qemuImgAt(dir, 'convert', '-f', 'raw', '-O', 'vmdk', 'disk.raw', 'good.vmdk')
  qemuImgAt(dir, 'convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', 'disk.raw', 'stream.vmdk')
  qemuImgAt(dir, 'convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=twoGbMaxExtentSparse', 'disk.raw', 'split.vmdk')
  qemuImgAt(dir, 'convert', '-f', 'raw', '-O', 'vdi', 'disk.raw', 'good.vdi')
  qemuImgAt(dir, 'convert', '-f', 'raw', '-O', 'vdi', '-o', 'static=on', 'disk.raw', 'static.vdi')
  const rnd = prng(5)
  const grains = new Map<number, GrainContent>([[0, Buffer.alloc(GRAIN, 1)], [1, 'zero'], [2, 'unmapped']])
  for (const g of [5, 9, 100, 4097]) grains.set(g, Buffer.from(Array.from({length: GRAIN}, () => (rnd() * 256) | 0)))
  writeSeSparseDisk(join(dir, 'se.vmdk'), {size: 17 * MiB, grains, grainBase: 4090})
})
afterAll(() => cleanup())

/** Copies `from` to a new file, applies `patch` to its bytes, returns the new path. */
function patched(from: string, name: string, patch: (b: Buffer) => Buffer | void): string {
  const buf = readFileSync(join(dir, from))
  const out = join(dir, name)
  writeFileSync(out, patch(buf) ?? buf)
  return out
}

async function readAll(path: string, options: OpenOptions = {}): Promise<void> {
  const img = await openImage(path, options)
  try {
    await img.allocatedRanges()
    const n = Math.min(img.virtualSize, 4 * MiB)
    const buf = Buffer.alloc(n)
    await img.read(buf, 0, n)
    if (img.virtualSize > n) await img.read(buf.subarray(0, 4096), img.virtualSize - 4096, 4096)
  } finally {
    await img.close()
  }
}

async function refused(path: string, pattern: RegExp, options: OpenOptions = {}): Promise<void> {
  const err = await readAll(path, options).then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(ImageFormatError)
  expect((err as Error).message).toMatch(pattern)
  expect((err as Error).message).not.toContain('\n')
}

describe('corrupt qcow2', () => {
  it('truncated header', () => refused(patched('good.qcow2', 't1.qcow2', (b) => b.subarray(0, 60)), /too short/))
  it('wrong magic (forced format)', () => refused(patched('good.qcow2', 't2.qcow2', (b) => void b.write('XXXX', 0)), /bad magic/, {format: 'qcow2'}))
  it('cluster bits out of range', () => refused(patched('good.qcow2', 't3.qcow2', (b) => void b.writeUInt32BE(31, 20)), /cluster bits/))
  it('absurd virtual size', async () => {
    await refused(patched('good.qcow2', 't4.qcow2', (b) => void b.writeUInt32BE(0x00400000, 24)), /virtual size is too large/)
    await refused(patched('good.qcow2', 't5.qcow2', (b) => void b.writeUInt32BE(0x00100000, 24)), /L1 table has 1 entries, too few/)
  })
  it('L1 table past EOF', () => refused(patched('good.qcow2', 't6.qcow2', (b) => void b.writeUInt32BE(0x100, 40)), /L1 table.*past the end/))
  it('L2 table past EOF', () =>
    refused(
      patched('good.qcow2', 't7.qcow2', (b) => void b.writeUInt32BE(0x80000100, b.readUInt32BE(44))),
      /L2 table of L1 entry 0.*past the end/,
    ))
  it('an L2 table mapping a cluster onto itself, and one shared by two L1 entries, do not hang', async () => {
    const loop = patched('good.qcow2', 't8.qcow2', (b) => {
      const l1 = b.readUInt32BE(44)
      const l2 = b.readUInt32BE(l1 + 4)
      b.writeUInt32BE(0x80000000, l2)
      b.writeUInt32BE(l2, l2 + 4)
    })
    await readAll(loop)
    const big = join(dir, 'shared.qcow2')
    execFileSync(QEMU_IMG, ['create', '-f', 'qcow2', big, '2G'], {stdio: 'ignore'})
    qemuIo(big, 'qcow2', 'write -P 1 0 64k')
    const shared = patched('shared.qcow2', 't9.qcow2', (b) => {
      const l1 = b.readUInt32BE(44)
      b.copy(b, l1 + 8, l1, l1 + 8)
    })
    const img = await openImage(shared)
    const head = Buffer.alloc(512)
    await img.read(head, 512 * MiB, 512)
    expect(head[0]).toBe(1)
    await img.close()
  })
  it('a data cluster past EOF', () =>
    refused(
      patched('good.qcow2', 't10.qcow2', (b) => {
        const l2 = b.readUInt32BE(b.readUInt32BE(44) + 4)
        b.writeUInt32BE(0x80000010, l2)
      }),
      /data cluster .* past the end/,
    ))
  it('unknown incompatible feature bits', () =>
    refused(patched('good.qcow2', 't11.qcow2', (b) => void b.writeUInt32BE(0x100, 76)), /unknown incompatible feature bits 0x100/))
  it('the dirty bit alone still reads', async () => readAll(patched('good.qcow2', 't12.qcow2', (b) => void b.writeUInt32BE(1, 76))))
  it('encrypted images', () => {
    const enc = join(dir, 'enc.qcow2')
    makeEncryptedQcow2(enc)
    return refused(enc, /encrypted qcow2 images \(crypt method LUKS\) are not supported/)
  })
  it('a backing chain that loops', async () => {
    execFileSync(QEMU_IMG, ['create', '-f', 'qcow2', '-u', '-b', 'loop-b.qcow2', '-F', 'qcow2', join(dir, 'loop-a.qcow2'), '1M'], {stdio: 'ignore'})
    execFileSync(QEMU_IMG, ['create', '-f', 'qcow2', '-u', '-b', 'loop-a.qcow2', '-F', 'qcow2', join(dir, 'loop-b.qcow2'), '1M'], {stdio: 'ignore'})
    await refused(join(dir, 'loop-a.qcow2'), /loop/)
  })
})

describe('corrupt VMDK', () => {
  it('truncated sparse header', () => refused(patched('good.vmdk', 'v1.vmdk', (b) => b.subarray(0, 200)), /too short/))
  it('absurd capacity', () => refused(patched('good.vmdk', 'v2.vmdk', (b) => void b.writeUInt32LE(0x7fffffff, 16)), /capacity|too large/))
  it('GD past EOF', () => refused(patched('good.vmdk', 'v3.vmdk', (b) => void b.writeUInt32LE(0x7fffff, 56)), /grain directory.*past the end/))
  it('GT past EOF', () =>
    refused(
      patched('good.vmdk', 'v4.vmdk', (b) => void b.writeUInt32LE(0x7fffff, b.readUInt32LE(56) * 512)),
      /grain table 0.*past the end/,
    ))
  it('a grain table that is the grain directory (a loop in the metadata)', () =>
    refused(
      patched('good.vmdk', 'v8.vmdk', (b) => {
        const gd = b.readUInt32LE(56)
        b.writeUInt32LE(gd, gd * 512)
      }),
      /grain table 0 at byte \d+ overlaps the grain directory: the metadata loops back on itself/,
    ))
  it('a grain that points into its own grain table', () =>
    refused(
      patched('good.vmdk', 'v9.vmdk', (b) => {
        const gt = b.readUInt32LE(b.readUInt32LE(56) * 512)
        b.writeUInt32LE(gt, gt * 512)
      }),
      /grain 0 at byte \d+ overlaps a grain table .*loops back on itself/,
    ))
  it('a grain that points into the embedded descriptor', () =>
    refused(
      patched('good.vmdk', 'v10.vmdk', (b) => {
        const gt = b.readUInt32LE(b.readUInt32LE(56) * 512)
        b.writeUInt32LE(2, gt * 512)
      }),
      /grain 0 at byte 1024 overlaps the embedded descriptor/,
    ))
  it('bad grain size', () => refused(patched('good.vmdk', 'v5.vmdk', (b) => void b.writeUInt32LE(100, 20)), /grain size/))
  it('missing extent file', () =>
    refused(
      patched('split.vmdk', 'v7.vmdk', (b) => Buffer.from(b.toString('latin1').replace('split-s001', 'gone-s001'), 'latin1')),
      /extent file "gone-s001.vmdk" not found/,
    ))
  it('unparseable extent line', () =>
    refused(patched('split.vmdk', 'v6.vmdk', (b) => Buffer.from(b.toString('latin1').replace('SPARSE', 'SPARSE?'), 'latin1')), /cannot parse extent line/))
})

describe('corrupt VDI', () => {
  const bmapOf = (b: Buffer) => b.readUInt32LE(340)
  it('truncated header', () => refused(patched('good.vdi', 'd1.vdi', (b) => b.subarray(0, 300)), /too short for a VDI header/, {format: 'vdi'}))
  it('an older header version', () => refused(patched('good.vdi', 'd2.vdi', (b) => void b.writeUInt32LE(0x00010000, 68)), /VDI header version 1\.0 is not supported/))
  it('absurd disk size', () => refused(patched('good.vdi', 'd3.vdi', (b) => void b.writeUInt32LE(0x7fffffff, 372)), /disk size|too large/))
  it('disk size larger than its blocks', () => refused(patched('good.vdi', 'd4.vdi', (b) => void b.writeUInt32LE(1, 384)), /larger than its 1 blocks/))
  it('block map past EOF', () => refused(patched('good.vdi', 'd5.vdi', (b) => void b.writeUInt32LE(0x7ffffe00, 340)), /block map.*past the end|overlaps the block map/))
  it('a block map entry past the blocks', () =>
    refused(patched('good.vdi', 'd6.vdi', (b) => void b.writeUInt32LE(1000, bmapOf(b))), /block map entry 0 points to slot 1000/))
  it('a data block past EOF', () =>
    refused(patched('good.vdi', 'd7.vdi', (b) => b.subarray(0, b.readUInt32LE(344) + 4096)), /block \d+ \(slot \d+\).*past the end/))
  it('an undo image', () => refused(patched('good.vdi', 'd8.vdi', (b) => void b.writeUInt32LE(3, 76)), /undo images are not supported/))
  it('a differencing image with a null parent UUID', () =>
    refused(patched('good.vdi', 'd9.vdi', (b) => void b.writeUInt32LE(4, 76)), /no parent UUID/))
  it('bad sector size and block extra', async () => {
    await refused(patched('good.vdi', 'd10.vdi', (b) => void b.writeUInt32LE(4096, 360)), /sector size 4096/)
    await refused(patched('good.vdi', 'd11.vdi', (b) => void b.writeUInt32LE(512, 380)), /block extra/)
  })
})

describe('corrupt seSparse', () => {
  const se = (name: string, patch: (b: Buffer) => Buffer | void) => {
    patched('se-sesparse.vmdk', `${name}-sesparse.vmdk`, patch)
    return patched('se.vmdk', `${name}.vmdk`, (b) => Buffer.from(b.toString('latin1').replace('se-sesparse', `${name}-sesparse`), 'latin1'))
  }
  const gdAt = (b: Buffer) => Number(b.readBigUInt64LE(128)) * 512
  const gtAt = (b: Buffer) => Number(b.readBigUInt64LE(144)) * 512
  it('bad const header magic', () => refused(se('s1', (b) => void b.writeUInt32LE(0xdeadbeef, 0)), /bad const header magic/))
  it('unsupported version and grain size', async () => {
    await refused(se('s2', (b) => void b.writeUInt32LE(3, 12)), /unsupported seSparse version 0x300000001/)
    await refused(se('s3', (b) => void b.writeUInt32LE(16, 24)), /grain size 16 sectors is not 8/)
  })
  it('a dirty journal', () => refused(se('s4', (b) => void b.writeUInt32LE(1, 512 + 24)), /dirty \(its journal needs replaying\)/))
  it('grain directory too short, or past EOF', async () => {
    await refused(se('s5', (b) => void b.writeUInt32LE(0, 136)), /grain directory has 0 entries, the capacity needs 2/)
    await refused(se('s6', (b) => void b.writeUInt32LE(0x7fffff, 128)), /grain directory.*past the end/)
  })
  it('a corrupt grain directory entry and a grain table past EOF', async () => {
    await refused(se('s7', (b) => void b.writeUInt32LE(0x20000000, gdAt(b) + 4)), /grain directory entry 0 is corrupt/)
    await refused(se('s8', (b) => void b.writeUInt32LE(0x7fffff, gdAt(b))), /grain table 0.*past the end/)
  })
  it('grain entries: unknown type, stray bits, past EOF', async () => {
    await refused(se('s9', (b) => void b.writeUInt32LE(0x70000000, gtAt(b) + 4)), /unknown entry type 7/)
    await refused(se('s10', (b) => {
      const t = gtAt(b)
      for (let j = 0; j < 4096; j++) if (b.readBigUInt64LE(t + j * 8) === 0n) return void b.writeUInt32LE(5, t + j * 8)
    }), /unallocated entry with stray bits/)
    await refused(se('s11', (b) => {
      const t = gtAt(b)
      for (let j = 0; j < 8192; j++) if (b.readUInt32LE(t + j * 8 + 4) >>> 28 === 3) return void b.writeUInt32LE(0x3000ffff, t + j * 8 + 4)
    }), /points past the end of the file/)
  })
})

/** Where a VDI's block map or a seSparse extent's GD and GTs lie (start, end), for the fuzz run. */
function tableSpan(name: string, b: Buffer): [number, number] | undefined {
  if (name.endsWith('.vdi')) return [512, b.readUInt32LE(344)]
  if (name.endsWith('-sesparse.vmdk')) return [Number(b.readBigUInt64LE(128)) * 512, Number(b.readBigUInt64LE(192)) * 512]
  return undefined
}

describe('fuzzing', () => {
  it('seeded mutations: every open+read succeeds or throws a VdsnapError, quickly', async () => {
    // VDSNAP_FUZZ_ITERATIONS / VDSNAP_FUZZ_SEED widen the run by hand; the suite uses the defaults.
    const iterations = Number(process.env.VDSNAP_FUZZ_ITERATIONS ?? 300)
    const rnd = prng(Number(process.env.VDSNAP_FUZZ_SEED ?? 20240601))
    const tableRnd = prng(Number(process.env.VDSNAP_FUZZ_SEED ?? 20240601) + 1)
    const names = ['good.qcow2', 'zstd.qcow2', 'ext.qcow2', 'good.vmdk', 'stream.vmdk', 'good.vdi', 'static.vdi', 'se-sesparse.vmdk']
    const bases = names.map((f) => readFileSync(join(dir, f)))
    // a seSparse extent is fuzzed behind its descriptor, which names fuzz-sesparse.vmdk
    writeFileSync(join(dir, 'fuzz-se.vmdk'), readFileSync(join(dir, 'se.vmdk'), 'latin1').replace('se-sesparse', 'fuzz-sesparse'))
    let refusedCount = 0
    for (let i = 0; i < iterations; i++) {
      const base = bases[i % bases.length]!
      let buf = Buffer.from(base)
      const hits = 1 + Math.floor(rnd() * 8)
      for (let k = 0; k < hits; k++) {
        const inHeader = rnd() < 0.5
        const pos = inHeader ? Math.floor(rnd() * 512) : Math.floor(rnd() * buf.length)
        buf[pos] = rnd() < 0.3 ? 0xff : (rnd() * 256) | 0
      }
      // VDI and seSparse tables (block map; GD and GTs) are small and right after the header:
      // hit them on purpose, from a generator of their own so the other formats' mutations stay as they were.
      const tables = tableSpan(names[i % bases.length]!, base)
      if (tables) for (let k = 0, n = 1 + Math.floor(tableRnd() * 4); k < n; k++) {
        buf[tables[0] + Math.floor(tableRnd() * (tables[1] - tables[0]))] = tableRnd() < 0.3 ? 0xff : (tableRnd() * 256) | 0
      }
      if (rnd() < 0.1) buf = buf.subarray(0, Math.floor(rnd() * buf.length))
      const se = names[i % bases.length] === 'se-sesparse.vmdk'
      writeFileSync(join(dir, se ? 'fuzz-sesparse.vmdk' : 'fuzz.img'), buf)
      const t0 = Date.now()
      try {
        await readAll(join(dir, se ? 'fuzz-se.vmdk' : 'fuzz.img'))
      } catch (e) {
        if (!(e instanceof VdsnapError)) throw new Error(`iteration ${i}: ${(e as Error).name}: ${(e as Error).message}`)
        refusedCount++
      }
      // a generous bound that only a hang (or a loop in metadata) can exceed
      expect(Date.now() - t0, `iteration ${i}`).toBeLessThan(60_000)
    }
    expect(refusedCount).toBeGreaterThan(0)
  })
})
