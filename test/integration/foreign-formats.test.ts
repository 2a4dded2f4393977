// Images in formats vdsnap does not read (point 18 of issue 8): before the
// signature check each was stored as raw container bytes with exit 0 and the
// wrong disk size. Now `backup` exits 6 naming the format found and leaves
// the repository as it was; --format raw still stores the bytes when that
// is what the user wants; and real raw disks whose first sectors are real
// (ext4, MBR, GPT, NTFS) are never refused.
import {execFileSync} from 'node:child_process'
import {readFileSync, writeFileSync} from 'node:fs'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {oneLine, vdsnap, vdsnapJson} from '../helpers/cli.js'
import {makeExt4Image} from '../helpers/images.js'
import {treeDigest} from '../helpers/tree-digest.js'
import {formatWorkspace, initRepo, MiB} from './format-fixtures.js'

const ws = formatWorkspace('vdsnap-foreign-')
const {at, env, qemuImg} = ws

/** A 1 MiB payload followed by an Apple UDIF "koly" trailer (TN1150 / UDIF layout: magic, version 4, header size 512, all big-endian). */
function makeDmg(path: string): void {
  const koly = Buffer.alloc(512)
  koly.write('koly', 0, 'latin1')
  koly.writeUInt32BE(4, 4)
  koly.writeUInt32BE(512, 8)
  koly.writeUInt32BE(1, 12) // flags: flattened
  writeFileSync(path, Buffer.concat([Buffer.alloc(MiB, 0x5a), koly]))
}

/** A Proxmox VMA archive head: "VMA\0", version 1 (BE), a uuid, then header data; padded like a real archive. */
function makeVma(path: string): void {
  const head = Buffer.alloc(12288)
  head.write('VMA\0', 0, 'latin1')
  head.writeUInt32BE(1, 4)
  head.fill(0xab, 8, 24)
  writeFileSync(path, Buffer.concat([head, Buffer.alloc(MiB, 1)]))
}

/** A Bochs growing image head: magic, type and subtype strings at their offsets. */
function makeBochs(path: string): void {
  const head = Buffer.alloc(512)
  head.write('Bochs Virtual HD Image\0', 0, 'latin1')
  head.write('Redolog\0', 32, 'latin1')
  head.write('Growing\0', 48, 'latin1')
  writeFileSync(path, Buffer.concat([head, Buffer.alloc(MiB)]))
}

const FOREIGN: [file: string, format: string, make: () => void][] = [
  ['a.hdd', 'Parallels', () => qemuImg('create', '-q', '-f', 'parallels', 'a.hdd', '8M')],
  [
    'old.hdd',
    'Parallels',
    () => {
      const b = readFileSync(at('a.hdd'))
      b.write('WithoutFreeSpace', 0, 'latin1') // the pre-2 TiB magic qemu also reads
      writeFileSync(at('old.hdd'), b)
    },
  ],
  ['a.qcow', 'qcow version 1', () => qemuImg('create', '-q', '-f', 'qcow', 'a.qcow', '8M')],
  ['a.qed', 'QED', () => qemuImg('create', '-q', '-f', 'qed', 'a.qed', '8M')],
  ['a.dmg', 'Apple DMG', () => makeDmg(at('a.dmg'))],
  ['a.vma', 'Proxmox VMA', () => makeVma(at('a.vma'))],
  ['a.bochs', 'Bochs', () => makeBochs(at('a.bochs'))],
]

beforeAll(async () => {
  await initRepo(ws)
  for (const [, , make] of FOREIGN) make()
  // Real raw disks: their first sectors are boot code, partition tables and file system headers.
  makeExt4Image(at('ext4.img'), 8 * MiB)
  execFileSync('truncate', ['-s', '8M', at('mbr.img'), at('gpt.img'), at('ntfs.img')])
  execFileSync('sfdisk', ['-q', at('mbr.img')], {input: 'label: dos\n,4M,83\n,,7\n', stdio: ['pipe', 'ignore', 'pipe']})
  execFileSync('sgdisk', ['-n', '1:2048:+4M', '-t', '1:8300', '-n', '2:0:0', at('gpt.img')], {stdio: 'ignore'})
  execFileSync('mkntfs', ['-q', '-F', '-f', '-L', 'vdsnap', at('ntfs.img')], {stdio: 'ignore'})
}, 120_000)
afterAll(() => ws.cleanup())

describe('a source in a format vdsnap does not read', () => {
  it.each(FOREIGN)('%s (%s) is refused with exit 6, naming the format, and the repository is unchanged', async (file, format) => {
    const before = treeDigest(env.VDSNAP_REPOSITORY!)
    const r = await vdsnap(['backup', at(file), '--disk', 'foreign'], env)
    expect(r.code, r.stderr).toBe(6)
    const line = oneLine(r.stderr)
    expect(line).toContain(at(file))
    expect(line).toContain(`is a ${format} image, a format vdsnap does not read`)
    expect(line).toContain('--format raw')
    expect(treeDigest(env.VDSNAP_REPOSITORY!)).toEqual(before)
  })

  it('--format raw forces it: the container bytes are stored as a raw disk of the file size', async () => {
    const res = await vdsnapJson(['backup', at('a.hdd'), '--disk', 'forced', '--format', 'raw'], env)
    expect(res.virtualSize).toBe(readFileSync(at('a.hdd')).length)
    const out = await ws.restoreRaw('forced@latest', at('forced.out'))
    expect(readFileSync(out).equals(readFileSync(at('a.hdd')))).toBe(true)
  })
})

describe('real raw disks are never refused', () => {
  it.each(['ext4.img', 'mbr.img', 'gpt.img', 'ntfs.img'])('%s is backed up as raw', async (file) => {
    const res = await vdsnapJson(['backup', at(file), '--disk', `raw-${file.split('.')[0]}`], env)
    expect(res.virtualSize).toBe(8 * MiB)
    const info = await vdsnapJson(['info', at(file)], env)
    expect(info.format).toBe('raw')
  })
})
