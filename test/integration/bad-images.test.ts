// Bad disk images through the CLI: for representative corruptions (see
// test/disk/bad-images.test.ts for the readers' full list), `vdsnap backup`
// and `vdsnap info` exit 6 (data error: corrupt or unsupported image) with
// one error line naming the file and what is wrong, and the repository is
// left exactly as it was.
import {createHash} from 'node:crypto'
import {readdirSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {join, relative} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {makeDiskBytes, makeEncryptedQcow2} from '../disk/image-fixtures.js'
import {vdsnap, vdsnapJson} from '../helpers/cli.js'
import {formatWorkspace, initRepo, MiB} from './format-fixtures.js'

const ws = formatWorkspace('vdsnap-bad-cli-')
const {at, env, qemuImg} = ws
/** Status lines on stderr without a TTY: a timestamp, then what is being done. */
const STATUS_LINE = /^\d{4}-\d\d-\d\dT[\d:.]+Z /

beforeAll(async () => {
  writeFileSync(at('disk.raw'), makeDiskBytes(2 * MiB + 3 * 512, 11))
  for (const f of ['qcow2', 'vmdk', 'vpc']) qemuImg('convert', '-f', 'raw', '-O', f, 'disk.raw', `good.${f}`)
  await initRepo(ws)
  await vdsnapJson(['backup', at('disk.raw'), '--disk', 'bad'], env) // so a bad run would have a parent to build on
})
afterAll(() => ws.cleanup())

/** Every file of the repository with a digest of its content. */
function repoState(): string[] {
  const out: string[] = []
  const walk = (d: string) => {
    for (const e of readdirSync(d)) {
      const p = join(d, e)
      if (statSync(p).isDirectory()) walk(p)
      else out.push(`${relative(env.VDSNAP_REPOSITORY!, p)} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`)
    }
  }
  walk(env.VDSNAP_REPOSITORY!)
  return out.sort()
}

/** A copy of `from` with `patch` applied to its bytes. */
function patched(from: string, name: string, patch: (b: Buffer) => Buffer | void): string {
  const buf = readFileSync(at(from))
  writeFileSync(at(name), patch(buf) ?? buf)
  return at(name)
}

const CASES: [string, () => string, RegExp, string[]?][] = [
  ['truncated qcow2 header', () => patched('good.qcow2', 'truncated.qcow2', (b) => b.subarray(0, 60)), /file is too short for a qcow2 header/],
  ['wrong magic, format forced', () => patched('good.qcow2', 'magic.img', (b) => void b.write('XXXX', 0)), /bad magic/, ['--format', 'qcow2']],
  [
    'missing backing file (relative name)',
    () => (qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', 'gone-base.qcow2', '-F', 'qcow2', 'orphan.qcow2', '2M'), at('orphan.qcow2')),
    /backing file "gone-base\.qcow2" not found/,
  ],
  [
    'missing backing file (absolute path)',
    () => (qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', '/nonexistent-vdsnap-dir/base.qcow2', '-F', 'qcow2', 'orphan-abs.qcow2', '2M'), at('orphan-abs.qcow2')),
    /backing file "\/nonexistent-vdsnap-dir\/base\.qcow2" not found/,
  ],
  [
    'qcow2 L2 table past the end of the file',
    () => patched('good.qcow2', 'l2-eof.qcow2', (b) => void b.writeUInt32BE(0x80000100, b.readUInt32BE(44))),
    /L2 table of L1 entry 0 .*past the end of the file/,
  ],
  [
    'VHD BAT entry past the end of the file',
    () => patched('good.vpc', 'bat-eof.vhd', (b) => void b.writeUInt32BE(0x00ffff00, b.readUInt32BE(512 + 20))),
    /block 0 \(BAT entry 16776960\) .*past the end of the file/,
  ],
  ['VMDK grain directory past the end of the file', () => patched('good.vmdk', 'gd-eof.vmdk', (b) => void b.writeUInt32LE(0x7fffff, 56)), /grain directory .*past the end of the file/],
  [
    'VMDK grain table looping onto the grain directory',
    () =>
      patched('good.vmdk', 'gt-loop.vmdk', (b) => {
        const gd = b.readUInt32LE(56)
        b.writeUInt32LE(gd, gd * 512)
      }),
    /grain table 0 .*overlaps the grain directory: the metadata loops back on itself/,
  ],
  // Issue 8 point 20: fields qemu refuses (or reads otherwise) that vdsnap used to accept.
  [
    'VMDK numGTEsPerGT not 512 (one flipped byte at offset 44)',
    () => patched('good.vmdk', 'gtes.vmdk', (b) => void (b[44] ^= 0x01)),
    /513 entries per grain table \(numGTEsPerGT\) where the format has 512/,
  ],
  [
    'qcow2 incompatible feature bit 40',
    () => patched('good.qcow2', 'incompat40.qcow2', (b) => void b.writeUInt32BE(0x100, 72)),
    /unknown incompatible feature bits 0x10000000000/,
  ],
  [
    'qcow2 refcount table not cluster-aligned',
    () => patched('good.qcow2', 'reftable.qcow2', (b) => void b.writeUInt32BE(b.readUInt32BE(52) + 512, 52)),
    /refcount table offset \d+ is not cluster-aligned/,
  ],
  [
    'VMDK compression algorithm without the compressed flag',
    () => patched('good.vmdk', 'algo.vmdk', (b) => void b.writeUInt16LE(1, 77)),
    /grain compression algorithm 1 is set but the compressed flag is not/,
  ],
  [
    'encrypted qcow2',
    () => {
      makeEncryptedQcow2(at('enc.qcow2'))
      return at('enc.qcow2')
    },
    /encrypted qcow2 images \(crypt method LUKS\) are not supported/,
  ],
]

describe('bad images through the CLI: exit 6, one line naming the file and the fault, repository untouched', () => {
  it.each(CASES)('%s', async (_name, make, fault, flags = []) => {
    const img = make()
    const before = repoState()
    const backup = await vdsnap(['backup', img, '--disk', 'bad', ...flags], env)
    expect(backup.code, backup.stderr).toBe(6)
    const lines = backup.stderr.split('\n').filter((l) => l && !STATUS_LINE.test(l))
    expect(lines).toHaveLength(1)
    const info = await vdsnap(['info', img, ...flags], env)
    expect(info.code, info.stderr).toBe(6)
    expect(info.stderr.trimEnd().split('\n')).toEqual(lines)
    expect(lines[0]!.startsWith(`vdsnap: error: ${img}: `), lines[0]).toBe(true)
    expect(lines[0]).toMatch(fault)
    expect(repoState()).toEqual(before)
  })
})
