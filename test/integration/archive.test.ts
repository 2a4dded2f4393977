// Archives end to end through the CLI, with the real tools at the edges:
// Info-ZIP unzip (-t, -p), cmp, dd, sha256sum. A chain of three snapshots
// of a real ext4 image whose size is not a multiple of the block size, in a
// plaintext repository (64 KiB blocks) and an encrypted one (default
// blocks); the middle snapshot is exported, so the archive's index is
// resolved from a delta chain.
import {execFileSync, spawnSync} from 'node:child_process'
import {copyFileSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {crc32} from 'node:zlib'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {BIN, oneLine, vdsnap, vdsnapJson} from '../helpers/cli.js'
import {makeExt4Image, randomAt, resize, tempDir, zeroAt} from '../helpers/images.js'
import {entryData, entryNames, patchEntry} from '../helpers/zip-patch.js'

const MiB = 1024 * 1024
const tmp = tempDir('vdsnap-archive-')
const dir = tmp.path
const PW = 'archive-pw'

function sh(cmd: string, env: Record<string, string> = {}): {code: number; stdout: string; stderr: string} {
  const r = spawnSync('sh', ['-c', cmd], {cwd: dir, env: {...process.env, ...env}, encoding: 'utf8', maxBuffer: 64 * MiB})
  return {code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr}
}

function unzipTest(archive: string): string {
  const r = sh(`unzip -t ${archive}`)
  expect(r.code, r.stdout + r.stderr).toBe(0)
  expect(r.stdout).toContain('No errors detected')
  return r.stdout
}

interface Repo {
  name: string
  path: string
  env: Record<string, string>
  /** The middle snapshot's id and a copy of the image it holds. */
  snap: string
  image: string
}

const repos: Repo[] = []

async function makeRepo(name: string, encrypted: boolean, blockSize?: string): Promise<Repo> {
  const path = join(dir, `repo-${name}`)
  const env = {VDSNAP_PASSWORD: PW, VDSNAP_REPOSITORY: path}
  const init = ['init', ...(encrypted ? [] : ['--no-encryption']), ...(blockSize ? ['--block-size', blockSize] : [])]
  expect((await vdsnap(init, env)).code).toBe(0)
  const disk = join(dir, `disk-${name}.img`)
  makeExt4Image(disk, 12 * MiB)
  resize(disk, 12 * MiB + 4096 + 333) // not a multiple of any block size
  const ids: string[] = []
  for (let step = 0; step < 3; step++) {
    if (step > 0) {
      randomAt(disk, step * 2 * MiB + 4096, 300_000)
      zeroAt(disk, 7 * MiB, 65536 * step)
    }
    const res = await vdsnapJson(['backup', disk, '--disk', 'web'], env)
    ids.push(res.snapshot)
    if (step === 1) copyFileSync(disk, join(dir, `mid-${name}.img`))
  }
  return {name, path, env, snap: ids[1]!, image: join(dir, `mid-${name}.img`)}
}

beforeAll(async () => {
  repos.push(await makeRepo('plain', false, '64KiB'), await makeRepo('enc', true))
}, 240_000)

afterAll(() => tmp.cleanup())

describe.each(['plain', 'enc'])('%s repository', (name) => {
  const r = () => repos.find((x) => x.name === name)!
  const zip = () => join(dir, `${name}.zip`)

  it('exports a snapshot in the middle of a chain as a ZIP that unzip -t accepts, each chunk once, index before chunks', async () => {
    const res = await vdsnapJson(['export', r().snap, '--to', zip()], r().env)
    expect(res.kind).toBe('chunks')
    const out = unzipTest(zip())
    expect(out).toContain('manifest.json')
    const names = entryNames(readFileSync(zip()))
    const chunks = names.filter((n) => n.startsWith('chunks/'))
    expect(new Set(chunks).size).toBe(chunks.length)
    expect(chunks.length).toBe(res.chunks)
    expect(names.slice(0, 2)).toEqual(['manifest.json', 'README.txt'])
    expect(names.findIndex((n) => n.startsWith('indexes/'))).toBeLessThan(names.findIndex((n) => n.startsWith('chunks/')))
    expect(names.at(-1)).toBe('SHA256SUMS')
    expect(names.some((n) => n.startsWith('keys/'))).toBe(name === 'enc')
    const manifest = JSON.parse(sh(`unzip -p ${zip()} manifest.json`).stdout)
    expect(manifest).toMatchObject({vdsnapArchive: 1, disk: 'web', snapshot: r().snap, virtualSize: 12 * MiB + 4096 + 333, chunkCount: res.chunks})
    // What the archive adds to its chunks: per chunk a local and a central
    // header with the 74-byte name each (224 bytes), plus the head and end.
    // (At these test block sizes that is 1.5-2.5%; at the default block size
    // on the benchmark image it is under 1%: BENCHMARKS.md.)
    expect(res.archiveBytes - res.chunkBytes).toBeLessThan(res.chunks * 224 + 32 * 1024)
    expect(sh(`unzip -p ${zip()} SHA256SUMS`).stdout.split(' ')[0]).toBe(sh(`sha256sum ${r().image}`).stdout.split(' ')[0])
    // every entry's size and CRC are in its local header (no data descriptor): walk the local headers front to back
    const buf = readFileSync(zip())
    let at = 0
    let walked = 0
    while (buf.readUInt32LE(at) === 0x04034b50) {
      const [flags, method, crc, csize, size] = [buf.readUInt16LE(at + 6), buf.readUInt16LE(at + 8), buf.readUInt32LE(at + 14), buf.readUInt32LE(at + 18), buf.readUInt32LE(at + 22)]
      const data = at + 30 + buf.readUInt16LE(at + 26) + buf.readUInt16LE(at + 28)
      expect(flags & 8, names[walked]).toBe(0)
      expect([method, csize]).toEqual([0, size])
      expect(crc32(buf.subarray(data, data + size))).toBe(crc)
      at = data + size
      walked++
    }
    expect(walked).toBe(names.length)
  })

  it('the first export records the image SHA-256 in the repository; the next copies the chunk objects as stored, same entries; a damaged record is not trusted', async () => {
    const record = join(r().path, 'imagesums', r().snap)
    expect(existsSync(record)).toBe(true) // written by the first export, above
    const again = join(dir, `${name}-again.zip`)
    const res = await vdsnapJson(['export', r().snap, '--to', again], r().env)
    expect(res.imageSha256From).toBe('repository')
    const [a, b] = [readFileSync(zip()), readFileSync(again)]
    const names = entryNames(a).filter((n) => n !== 'manifest.json' && n !== 'README.txt') // the archive id differs
    expect(entryNames(b).filter((n) => n !== 'manifest.json' && n !== 'README.txt')).toEqual(names)
    for (const n of names.filter((x) => x.startsWith('chunks/') || x === 'SHA256SUMS')) {
      const [x, y] = [entryData(a, n), entryData(b, n)]
      expect(b.subarray(y.start, y.start + y.length).equals(a.subarray(x.start, x.start + x.length)), n).toBe(true)
    }
    unzipTest(again)
    expect(sh(`node ${BIN} restore --from-archive ${again} --to ${name}-again.raw -q && cmp ${name}-again.raw ${r().image}`, {VDSNAP_PASSWORD: PW}).code).toBe(0)
    // a flipped byte in the record: it fails its tag (checksum), export computes again and records it anew
    const good = readFileSync(record)
    const bad = Buffer.from(good)
    bad[bad.length - 5] ^= 1
    writeFileSync(record, bad)
    const recomputed = await vdsnapJson(['export', r().snap, '--to', join(dir, `${name}-again2.zip`)], r().env)
    expect(recomputed.imageSha256From).toBe('computed')
    expect(recomputed.imageSha256).toBe(res.imageSha256)
    expect((await vdsnapJson(['export', r().snap, '--to', join(dir, `${name}-again3.zip`)], r().env)).imageSha256From).toBe('repository')
    const verified = await vdsnapJson(['export', r().snap, '--to', join(dir, `${name}-again4.zip`), '--verify'], r().env)
    expect([verified.imageSha256From, verified.imageSha256]).toEqual(['computed', res.imageSha256])
  })

  it('restores byte for byte from the archive file, with no repository', async () => {
    const to = join(dir, `${name}-file.raw`)
    const res = await vdsnapJson(['restore', '--from-archive', zip(), '--to', to], {VDSNAP_PASSWORD: PW, VDSNAP_REPOSITORY: ''})
    expect(res.imageSha256).toMatch(/^[0-9a-f]{64}$/)
    expect(sh(`cmp ${to} ${r().image}`).code).toBe(0)
  })

  it('restores byte for byte from a pipe, to a file, to stdout and to qcow2', async () => {
    const env = {VDSNAP_PASSWORD: PW}
    expect(sh(`cat ${zip()} | node ${BIN} restore --from-archive - --to ${name}-pipe.raw -q`, env).code).toBe(0)
    expect(sh(`cmp ${name}-pipe.raw ${r().image}`).code).toBe(0)
    const toStdout = sh(`cat ${zip()} | node ${BIN} restore --from-archive - --to - -q | cmp - ${r().image}`, env)
    expect(toStdout.code, toStdout.stderr + toStdout.stdout).toBe(0)
    expect(sh(`cat ${zip()} | node ${BIN} restore --from-archive - --to ${name}.qcow2 --format qcow2 -q`, env).code).toBe(0)
    expect(sh(`qemu-img compare -f qcow2 -F raw ${name}.qcow2 ${r().image}`).code).toBe(0)
  })

  it('check --archive verifies every chunk and the image SHA-256, from a file and a pipe', async () => {
    const res = await vdsnapJson(['check', '--archive', zip()], {VDSNAP_PASSWORD: PW})
    expect(res.chunksVerified).toBeGreaterThan(0)
    const pipe = sh(`node ${BIN} check --archive - --json < ${zip()}`, {VDSNAP_PASSWORD: PW})
    expect(pipe.code, pipe.stderr).toBe(0)
    expect(JSON.parse(pipe.stdout).imageSha256).toBe(res.imageSha256)
  })

  it('unzipped with unzip, the archive is a one-snapshot repository', async () => {
    const into = join(dir, `${name}-unzipped`)
    execFileSync('unzip', ['-q', zip(), '-d', into])
    const to = join(dir, `${name}-unzipped.raw`)
    expect((await vdsnap(['restore', 'latest', '--to', to, '--repo', into], {VDSNAP_PASSWORD: PW})).code).toBe(0)
    expect(sh(`cmp ${to} ${r().image}`).code).toBe(0)
  })

  it('--portable: unzip -p gives the disk image, sha256sum -c passes, restore --from-archive from file and pipe', async () => {
    const p = join(dir, `${name}-portable.zip`)
    const res = await vdsnap(['export', r().snap, '--to', p, '--portable'], r().env)
    expect(res.code, res.stderr).toBe(0)
    expect(res.stderr.includes('plaintext')).toBe(name === 'enc')
    unzipTest(p)
    expect(sh(`unzip -p ${p} web.raw | cmp - ${r().image}`).code).toBe(0)
    const x = join(dir, `${name}-px`)
    expect(sh(`unzip -q ${p} -d ${x} && cd ${x} && sha256sum -c SHA256SUMS`).code).toBe(0)
    expect(sh(`node ${BIN} restore --from-archive ${p} --to ${name}-pf.raw -q && cmp ${name}-pf.raw ${r().image}`).code).toBe(0)
    expect(sh(`cat ${p} | node ${BIN} restore --from-archive - --to ${name}-pp.raw -q && cmp ${name}-pp.raw ${r().image}`).code).toBe(0)
  })

  it('--archive-format tar: GNU tar lists it, restore from the file and a pipe; a portable tar extracts with tar -xSf as a sparse image', async () => {
    const t = join(dir, `${name}.tar`)
    expect((await vdsnap(['export', r().snap, '--to', t, '--archive-format', 'tar'], r().env)).code).toBe(0)
    const list = sh(`tar -tvf ${t}`)
    expect(list.code, list.stderr).toBe(0)
    expect(list.stdout).toMatch(/manifest\.json[\s\S]*indexes\/[\s\S]*chunks\/[\s\S]*SHA256SUMS/)
    expect(sh(`node ${BIN} restore --from-archive ${t} --to ${name}-tar.raw -q && cmp ${name}-tar.raw ${r().image}`, {VDSNAP_PASSWORD: PW}).code).toBe(0)
    expect(sh(`cat ${t} | node ${BIN} restore --from-archive - --to ${name}-tarp.raw -q && cmp ${name}-tarp.raw ${r().image}`, {VDSNAP_PASSWORD: PW}).code).toBe(0)
    const pt = join(dir, `${name}-portable.tar`)
    expect((await vdsnap(['export', r().snap, '--to', pt, '--archive-format', 'tar', '--portable', '--record-size', '512KiB'], r().env)).code).toBe(0)
    expect(readFileSync(pt).length % (512 * 1024)).toBe(0)
    const x = join(dir, `${name}-tx`)
    const ex = sh(`mkdir ${x} && tar -xSf ${pt} -C ${x} && cmp ${x}/web.raw ${r().image} && cd ${x} && sha256sum -c SHA256SUMS`)
    expect(ex.code, ex.stdout + ex.stderr).toBe(0)
    // sparse: the zeroed range and the ext4 free space are holes
    expect(statSync(join(x, 'web.raw')).blocks * 512).toBeLessThan(statSync(r().image).size)
    expect(sh(`dd if=${pt} bs=512k 2>/dev/null | node ${BIN} restore --from-archive - --to ${name}-ptp.raw -q && cmp ${name}-ptp.raw ${r().image}`).code).toBe(0)
    const bad = readFileSync(t)
    // a byte in the middle of a chunk's data (which follows its 512-byte header block)
    const line = list.stdout.split('\n').find((l) => l.includes('chunks/'))!.trim().split(/\s+/)
    const [size, chunk] = [Number(line[2]), line.at(-1)!]
    bad[bad.indexOf(Buffer.from(chunk)) + 512 + Math.floor(size / 2)] ^= 0x10
    writeFileSync(join(dir, `bad-${name}.tar`), bad)
    const refused = sh(`node ${BIN} restore --from-archive bad-${name}.tar --to never-tar.raw`, {VDSNAP_PASSWORD: PW})
    expect(refused.code, refused.stderr).toBe(6)
    expect(oneLine(refused.stderr)).toMatch(/chunks\//)
    expect(existsSync(join(dir, 'never-tar.raw'))).toBe(false)
  })

  it('tape: --record-size 256KiB through dd bs=256k iflag=fullblock (whole records only) and back through dd into restore --from-archive -', async () => {
    const tape = join(dir, `${name}.tape`)
    // dd reads a pipe in short pieces; iflag=fullblock (the documented recipe) makes every record whole
    const w = sh(`node ${BIN} export ${r().snap} --to - --record-size 256KiB -q | dd bs=256k iflag=fullblock of=${tape}`, r().env)
    expect(w.code, w.stderr).toBe(0)
    const records = readFileSync(tape).length / (256 * 1024)
    expect(Number.isInteger(records) && records > 0).toBe(true)
    expect(w.stderr).toContain(`${records}+0 records out`)
    unzipTest(tape)
    const back = sh(`dd if=${tape} bs=256k 2>/dev/null | node ${BIN} restore --from-archive - --to ${name}-tape.raw -q && cmp ${name}-tape.raw ${r().image}`, {VDSNAP_PASSWORD: PW})
    expect(back.code, back.stderr).toBe(0)
  })
})

describe('import', () => {
  const enc = () => repos.find((x) => x.name === 'enc')!
  const plain = () => repos.find((x) => x.name === 'plain')!

  it('into a fresh repository with another password: re-encrypted, restores byte for byte, later backups chain onto it', async () => {
    const repo = join(dir, 'repo-other')
    const env = {VDSNAP_PASSWORD: 'other-pw', VDSNAP_REPOSITORY: repo, VDSNAP_ARCHIVE_PASSWORD: PW}
    expect((await vdsnap(['init'], env)).code).toBe(0)
    const res = await vdsnapJson(['import', join(dir, 'enc.zip')], env)
    expect(res).toMatchObject({snapshot: enc().snap, alreadyPresent: false, reencrypted: true})
    expect(res.chunksStored).toBeGreaterThan(0)
    // the chunk objects differ from the archive's: other keys, other ids
    const archived = new Set(entryNames(readFileSync(join(dir, 'enc.zip'))).filter((n) => n.startsWith('chunks/')).map((n) => n.slice(-64)))
    const stored = readdirSync(join(repo, 'chunks'), {recursive: true}).map(String).filter((n) => /[0-9a-f]{64}$/.test(n)).map((n) => n.slice(-64))
    expect(stored.length).toBe(res.chunksStored)
    expect(stored.some((id) => archived.has(id))).toBe(false)
    const to = join(dir, 'imported.raw')
    expect((await vdsnap(['restore', enc().snap, '--to', to], env)).code).toBe(0)
    expect(sh(`cmp ${to} ${enc().image}`).code).toBe(0)
    const again = await vdsnapJson(['import', join(dir, 'enc.zip')], env)
    expect(again.alreadyPresent).toBe(true)
    const disk = join(dir, 'after-import.img')
    copyFileSync(enc().image, disk)
    randomAt(disk, 3 * 1024 * 1024, 100_000)
    const next = await vdsnapJson(['backup', disk, '--disk', 'web', '--allow-source-change'], env)
    const snaps = await vdsnapJson(['snapshots'], env)
    const m = (Array.isArray(snaps) ? snaps : snaps.snapshots).find((s: {id: string}) => s.id === next.snapshot)
    expect(m.parent).toBe(enc().snap)
    expect((await vdsnap(['restore', next.snapshot, '--to', join(dir, 'after-import.raw')], env)).code).toBe(0)
    expect(sh(`cmp after-import.raw ${disk}`).code).toBe(0)
  })

  it('from a pipe into a repository with the same (no) keys: the chunk objects are stored as they are in the archive', async () => {
    const repo = join(dir, 'repo-plain2')
    const env = {VDSNAP_REPOSITORY: repo}
    expect((await vdsnap(['init', '--no-encryption', '--block-size', '64KiB'], env)).code).toBe(0)
    const r = sh(`node ${BIN} import - --json < plain.zip`, env)
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({reencrypted: false, snapshot: plain().snap})
    const buf = readFileSync(join(dir, 'plain.zip'))
    for (const name of entryNames(buf).filter((n) => n.startsWith('chunks/')).slice(0, 5)) {
      const {start, length} = entryData(buf, name)
      expect(readFileSync(join(repo, name)).equals(buf.subarray(start, start + length))).toBe(true)
    }
    expect(sh(`node ${BIN} restore latest --to plain-imported.raw -q && cmp plain-imported.raw ${plain().image}`, env).code).toBe(0)
  })

  it('a corrupt archive (flipped byte in the index) leaves the repository as it was', async () => {
    const repo = join(dir, 'repo-untouched')
    const env = {VDSNAP_REPOSITORY: repo, VDSNAP_PASSWORD: PW}
    expect((await vdsnap(['init', '--no-encryption', '--block-size', '64KiB'], env)).code).toBe(0)
    const buf = readFileSync(join(dir, 'plain.zip'))
    patchEntry(buf, entryNames(buf).find((n) => n.startsWith('indexes/'))!, (d) => (d[70] = d[70]! ^ 1), true)
    writeFileSync(join(dir, 'bad-import.zip'), buf)
    // files only: taking the shared lock leaves an empty locks/ directory, as every command does
    const files = () => readdirSync(repo, {recursive: true}).map(String).filter((n) => statSync(join(repo, n)).isFile()).sort()
    const before = files()
    const r = await vdsnap(['import', join(dir, 'bad-import.zip')], env)
    expect(r.code).toBe(6)
    expect(oneLine(r.stderr)).toMatch(/indexes\/.*(checksum|corrupt)/)
    expect(files()).toEqual(before)
  })
})

describe('--split volumes', () => {
  // 4 MiB of incompressible data in a plaintext repository of 64 KiB blocks: four volumes of 1280 KiB
  const image = join(dir, 'vol-disk.img')
  const env = {VDSNAP_REPOSITORY: join(dir, 'repo-volsrc')}
  let snap = ''
  beforeAll(async () => {
    execFileSync('truncate', ['-s', String(5 * MiB + 333), image])
    randomAt(image, 0, 4 * MiB)
    expect((await vdsnap(['init', '--no-encryption', '--block-size', '64KiB'], env)).code).toBe(0)
    snap = (await vdsnapJson(['backup', image, '--disk', 'vol'], env)).snapshot
  }, 120_000)

  it('each volume passes unzip -t alone with its manifest and number; restore, check and import take them in any order; a missing volume and a volume of another archive are named', async () => {
    const r = {snap, image, env}
    const base = join(dir, 'vol.zip')
    const res = await vdsnapJson(['export', r.snap, '--to', base, '--split', '1280KiB', '--record-size', '64KiB'], r.env)
    expect(res.volumes.length).toBeGreaterThanOrEqual(3) // a missing middle volume below
    res.volumes.forEach((v: string, i: number) => {
      expect(statSync(v).size).toBeLessThanOrEqual(1280 * 1024)
      expect(statSync(v).size % 65536).toBe(0)
      unzipTest(v)
      expect(JSON.parse(sh(`unzip -p ${v} manifest.json`).stdout)).toMatchObject({volume: i + 1, snapshot: r.snap})
    })
    const shuffled = [...res.volumes].reverse()
    const to = join(dir, 'vol.raw')
    expect((await vdsnap(['restore', '--from-archive', ...shuffled, '--to', to], {VDSNAP_PASSWORD: PW})).code).toBe(0)
    expect(sh(`cmp ${to} ${r.image}`).code).toBe(0)
    expect((await vdsnap(['check', '--archive', ...shuffled], {VDSNAP_PASSWORD: PW})).code).toBe(0)
    const repo = join(dir, 'repo-vol')
    expect((await vdsnap(['init', '--repo', repo, '--block-size', '64KiB'], {VDSNAP_PASSWORD: 'vol-pw'})).code).toBe(0)
    const imp = await vdsnap(['import', ...shuffled, '--repo', repo], {VDSNAP_PASSWORD: 'vol-pw'})
    expect(imp.code, imp.stderr).toBe(0)
    expect(sh(`node ${BIN} restore latest --repo ${repo} --to vol-imported.raw -q && cmp vol-imported.raw ${r.image}`, {VDSNAP_PASSWORD: 'vol-pw'}).code).toBe(0)

    const without2 = res.volumes.filter((_: string, i: number) => i !== 1)
    const missing = await vdsnap(['restore', '--from-archive', ...without2, '--to', join(dir, 'never-vol.raw')], {VDSNAP_PASSWORD: PW})
    expect(missing.code).toBe(6)
    expect(oneLine(missing.stderr)).toContain(`volume ${base}.002 of ${res.volumes.length} is missing`)
    const other = await vdsnapJson(['export', r.snap, '--to', join(dir, 'other.zip'), '--split', '1280KiB'], r.env)
    const mixed = await vdsnap(['restore', '--from-archive', res.volumes[0], other.volumes[1], ...res.volumes.slice(2), '--to', join(dir, 'never-vol.raw')], {VDSNAP_PASSWORD: PW})
    expect(mixed.code).toBe(6)
    expect(oneLine(mixed.stderr)).toMatch(/other\.zip\.002 is a volume of another archive/)
    const alone = await vdsnap(['restore', '--from-archive', res.volumes[0], '--to', join(dir, 'never-vol.raw')], {VDSNAP_PASSWORD: PW})
    expect(alone.code).toBe(2)
    expect(oneLine(alone.stderr)).toMatch(/is volume 1 of a split archive; give every volume/)
    expect(existsSync(join(dir, 'never-vol.raw'))).toBe(false)
  })

  it('--archive-format tar: each volume is a tar GNU tar lists alone, with its manifest and number; restore (file and check) takes them in any order; missing, foreign and --to - are refused', async () => {
    const base = join(dir, 'vol.tar')
    const res = await vdsnapJson(['export', snap, '--to', base, '--archive-format', 'tar', '--split', '1280KiB', '--record-size', '64KiB'], env)
    expect(res.volumes.length).toBeGreaterThanOrEqual(3)
    res.volumes.forEach((v: string, i: number) => {
      expect(statSync(v).size).toBeLessThanOrEqual(1280 * 1024)
      expect(statSync(v).size % 65536).toBe(0)
      const list = sh(`tar -tvf ${v}`)
      expect(list.code, list.stderr).toBe(0)
      expect(list.stdout).toMatch(/manifest\.json[\s\S]*indexes\/[\s\S]*chunks\//)
      expect(list.stdout.includes('SHA256SUMS')).toBe(i === res.volumes.length - 1)
      expect(JSON.parse(sh(`tar -xOf ${v} manifest.json`).stdout)).toMatchObject({volume: i + 1, snapshot: snap})
      expect(sh(`tar -xOf ${v} README.txt`).stdout).toContain(`volume ${i + 1} of a split archive`)
    })
    const shuffled = [res.volumes[1], ...res.volumes.slice(2).reverse(), res.volumes[0]]
    const to = join(dir, 'vol-tar.raw')
    const restored = await vdsnap(['restore', '--from-archive', ...shuffled, '--to', to])
    expect(restored.code, restored.stderr).toBe(0)
    expect(sh(`cmp ${to} ${image}`).code).toBe(0)
    expect((await vdsnap(['check', '--archive', ...shuffled])).code).toBe(0)
    const repo = join(dir, 'repo-voltar')
    expect((await vdsnap(['init', '--repo', repo, '--no-encryption', '--block-size', '64KiB'])).code).toBe(0)
    const imp = await vdsnap(['import', ...shuffled, '--repo', repo])
    expect(imp.code, imp.stderr).toBe(0)
    expect(sh(`node ${BIN} restore latest --repo ${repo} --to vol-tar-imported.raw -q && cmp vol-tar-imported.raw ${image}`).code).toBe(0)

    const never = join(dir, 'never-voltar.raw')
    const n = res.volumes.length
    const withoutMiddle = await vdsnap(['restore', '--from-archive', ...res.volumes.filter((_: string, i: number) => i !== 1), '--to', never])
    expect(withoutMiddle.code).toBe(6)
    expect(oneLine(withoutMiddle.stderr)).toContain(`volume ${base}.002 of ${n} is missing`)
    const withoutLast = await vdsnap(['restore', '--from-archive', ...res.volumes.slice(0, -1), '--to', never])
    expect(withoutLast.code).toBe(6)
    expect(oneLine(withoutLast.stderr)).toMatch(/the last volume of .*vol\.tar .*is missing/)
    const other = await vdsnapJson(['export', snap, '--to', join(dir, 'other.tar'), '--archive-format', 'tar', '--split', '1280KiB'], env)
    const mixed = await vdsnap(['restore', '--from-archive', res.volumes[0], other.volumes[1], ...res.volumes.slice(2), '--to', never])
    expect(mixed.code).toBe(6)
    expect(oneLine(mixed.stderr)).toMatch(/other\.tar\.002 is a volume of another archive/)
    const alone = await vdsnap(['restore', '--from-archive', res.volumes[1], '--to', never])
    expect(alone.code).toBe(2)
    expect(oneLine(alone.stderr)).toMatch(/is volume 2 of a split archive; give every volume/)
    expect(existsSync(never)).toBe(false)
    const piped = await vdsnap(['export', snap, '--to', '-', '--archive-format', 'tar', '--split', '1280KiB'], env)
    expect(piped.code).toBe(2)
    expect(oneLine(piped.stderr)).toMatch(/--split writes volume files.*not -/)
  })
})

describe('the recorded image SHA-256', () => {
  it('forget removes it with the snapshot', async () => {
    const env = {VDSNAP_REPOSITORY: join(dir, 'repo-sums')}
    const image = join(dir, 'sums-disk.img')
    execFileSync('truncate', ['-s', String(2 * MiB), image])
    randomAt(image, 0, 512 * 1024)
    expect((await vdsnap(['init', '--no-encryption', '--block-size', '64KiB'], env)).code).toBe(0)
    const first = (await vdsnapJson(['backup', image, '--disk', 'sums'], env)).snapshot
    randomAt(image, MiB, 4096)
    const second = (await vdsnapJson(['backup', image, '--disk', 'sums'], env)).snapshot
    for (const s of [first, second]) expect((await vdsnapJson(['export', s, '--to', join(dir, `sums-${s.slice(0, 8)}.zip`)], env)).imageSha256From).toBe('computed')
    const sums = () => readdirSync(join(env.VDSNAP_REPOSITORY, 'imagesums')).sort()
    expect(sums()).toEqual([first, second].sort())
    expect((await vdsnap(['forget', first], env)).code).toBe(0)
    expect(sums()).toEqual([second])
    expect((await vdsnapJson(['export', second, '--to', join(dir, 'sums-after.zip')], env)).imageSha256From).toBe('repository')
  })
})

describe('durability', () => {
  it('export to a file fsyncs the archive before renaming it into place, and its directory after (strace)', async () => {
    const r = repos.find((x) => x.name === 'plain')!
    const to = join(dir, 'durable.zip')
    const log = join(dir, 'durable.strace')
    const res = sh(`strace -f -y -qq -o ${log} -e trace=fsync,fdatasync,rename,renameat,renameat2 node ${BIN} export ${r.snap} --to ${to} -q`, r.env)
    expect(res.code, res.stderr).toBe(0)
    const lines = readFileSync(log, 'utf8').split('\n')
    const renamed = lines.findIndex((l) => /rename/.test(l) && l.includes('.durable.zip.vdsnap-') && l.includes(`${to}"`) && / = 0$/.test(l))
    expect(renamed, lines.join('\n')).toBeGreaterThan(0)
    expect(lines.slice(0, renamed).some((l) => /^\d+ +f(data)?sync\(\d+<[^>]*\/\.durable\.zip\.vdsnap-[0-9a-f]+>\) = 0$/.test(l)), 'file fsync before the rename').toBe(true)
    expect(lines.slice(renamed + 1).some((l) => l.match(/^\d+ +fsync\(\d+<([^>]*)>\) = 0$/)?.[1] === dir), 'directory fsync after the rename').toBe(true)
  })
})

describe('bad archives: one line, the documented exit code, nothing written', () => {
  const enc = () => repos.find((x) => x.name === 'enc')!
  const plain = () => repos.find((x) => x.name === 'plain')!

  /** Restores `archive` from the file and from a pipe; both must fail alike and leave no target. */
  async function refused(archive: string, code: number, pattern: RegExp, password = PW): Promise<void> {
    const before = readdirSync(dir).sort()
    const to = join(dir, 'never.raw')
    const file = await vdsnap(['restore', '--from-archive', archive, '--to', to], {VDSNAP_PASSWORD: password})
    expect(file.code, file.stderr).toBe(code)
    expect(oneLine(file.stderr)).toMatch(pattern)
    const pipe = sh(`node ${BIN} restore --from-archive - --to ${to} < ${archive}`, {VDSNAP_PASSWORD: password})
    expect(pipe.code, pipe.stderr).toBe(code)
    expect(oneLine(pipe.stderr)).toMatch(pattern)
    const check = await vdsnap(['check', '--archive', archive], {VDSNAP_PASSWORD: password})
    expect(check.code, check.stderr).toBe(code)
    expect(existsSync(to)).toBe(false)
    expect(readdirSync(dir).sort()).toEqual(before)
  }

  function variant(from: string, label: string, change: (buf: Buffer) => void): string {
    const buf = readFileSync(from)
    change(buf)
    const path = join(dir, `bad-${label}.zip`)
    writeFileSync(path, buf)
    return path
  }

  const chunkOf = (buf: Buffer) => entryNames(buf).find((n) => n.startsWith('chunks/'))!
  const flip = (at: number) => (d: Buffer) => {
    d[at] = d[at]! ^ 0x40
  }

  it('a flipped byte in a chunk entry: its CRC, and with the CRC forged, its digest (plaintext) or GCM tag (encrypted)', async () => {
    for (const r of [plain(), enc()]) {
      const zip = join(dir, `${r.name}.zip`)
      await refused(variant(zip, `${r.name}-chunk`, (b) => patchEntry(b, chunkOf(b), flip(200), false)), 6, /chunks\/[0-9a-f]{2}\/[0-9a-f]{64}.*(CRC|corrupt)/)
      await refused(variant(zip, `${r.name}-chunk-forged`, (b) => patchEntry(b, chunkOf(b), flip(200), true)), 6, /chunks\/[0-9a-f]{2}\/[0-9a-f]{16}/)
    }
  })

  it('a flipped byte in the index and in the manifest', async () => {
    const zip = join(dir, 'enc.zip')
    await refused(variant(zip, 'index', (b) => patchEntry(b, entryNames(b).find((n) => n.startsWith('indexes/'))!, flip(40), false)), 6, /indexes\/.*CRC/)
    await refused(variant(zip, 'index-forged', (b) => patchEntry(b, entryNames(b).find((n) => n.startsWith('indexes/'))!, flip(40), true)), 6, /indexes\/.*(authentication|corrupt)/)
    await refused(variant(zip, 'manifest', (b) => patchEntry(b, 'manifest.json', flip(30), false)), 6, /manifest\.json.*CRC/)
    const sizeForged = variant(zip, 'manifest-forged', (b) =>
      patchEntry(b, 'manifest.json', (d) => d.write(d.toString('latin1').replace(/"virtualSize": (\d)/, (_m, c: string) => `"virtualSize": ${(Number(c) + 1) % 10}`), 'latin1'), true),
    )
    await refused(sizeForged, 6, /manifest\.json .*corrupt/)
  })

  it('an archive of a newer format version is refused before anything is written', async () => {
    const zip = join(dir, 'plain.zip')
    const newer = variant(zip, 'newer', (b) => patchEntry(b, 'manifest.json', (d) => d.write(d.toString('latin1').replace('"vdsnapArchive": 1', '"vdsnapArchive": 7'), 'latin1'), true))
    await refused(newer, 6, /archive format 7; this vdsnap reads format 1.*newer vdsnap/)
  })

  it('a truncated archive', async () => {
    const zip = join(dir, 'plain.zip')
    const buf = readFileSync(zip)
    const half = join(dir, 'bad-truncated.zip')
    writeFileSync(half, buf.subarray(0, Math.floor(buf.length * 0.6)))
    await refused(half, 6, /truncated|cut short/)
    // cut inside the central directory: the local entries are all there
    const tail = join(dir, 'bad-truncated-tail.zip')
    writeFileSync(tail, buf.subarray(0, buf.length - 400))
    await refused(tail, 6, /truncated|not a readable ZIP|cut short/)
  })

  it('the wrong password: exit 5', async () => {
    await refused(join(dir, 'enc.zip'), 5, /wrong password: no key slot of .* opens with it/, 'not-the-password')
  })

  it('restore --from-archive refuses a flag it would ignore (--overlay, snapshot selection, repository locking): exit 2 naming it, nothing written', async () => {
    const to = join(dir, 'never.raw')
    const flags = [['--overlay', join(dir, 'ov.qcow2')], ['--host', 'web1'], ['--source', '/dev/vg0/web'], ['--tag', 'nightly'], ['--no-lock'], ['--lock-wait', '5s']]
    for (const flag of flags) {
      const res = await vdsnap(['restore', '--from-archive', join(dir, 'plain.zip'), '--to', to, ...flag], {VDSNAP_PASSWORD: PW})
      expect(res.code, `${flag[0]}: ${res.stderr}`).toBe(2)
      expect(oneLine(res.stderr)).toContain(`${flag[0]} does not apply to --from-archive`)
      expect(existsSync(to)).toBe(false)
    }
  })

  it('a chunk entry of the plaintext archive sits where the CRC check alone would pass: the image SHA-256 is still checked', async () => {
    // Swap two chunk entries' data (same length, CRCs forged): each entry
    // now fails its own digest. Shows the reader never trusts names alone.
    const zip = join(dir, 'plain.zip')
    const swapped = variant(zip, 'swapped', (b) => {
      const [a, c] = entryNames(b).filter((n) => n.startsWith('chunks/'))
      const da = entryData(b, a!)
      const dc = entryData(b, c!)
      const len = Math.min(da.length, dc.length)
      const x = Buffer.from(b.subarray(da.start, da.start + len))
      patchEntry(b, a!, (d) => b.copy(d, 0, dc.start, dc.start + len), true)
      patchEntry(b, c!, (d) => x.copy(d), true)
    })
    await refused(swapped, 6, /chunks\/|SHA-256/)
  })
})

describe('ZIP64: a sparse disk of more than 4 GiB', () => {
  it('the portable entry passes 4 GiB: unzip -t (Debian) passes, unzip -p gives the image back; the chunk archive restores from a pipe', async () => {
    const repo = join(dir, 'repo-big')
    const env = {VDSNAP_REPOSITORY: repo}
    expect((await vdsnap(['init', '--no-encryption'], env)).code).toBe(0)
    const disk = join(dir, 'big.raw')
    const size = 4 * 1024 ** 3 + 3 * MiB + 12345
    execFileSync('truncate', ['-s', String(size), disk])
    randomAt(disk, 100 * MiB, 2 * MiB)
    randomAt(disk, 4097 * MiB, MiB)
    expect((await vdsnap(['backup', disk, '--disk', 'big'], env)).code).toBe(0)
    const zip = join(dir, 'big.zip')
    const res = await vdsnapJson(['export', 'latest', '--to', zip, '--portable'], env)
    expect(res.virtualSize).toBe(size)
    const t = sh(`unzip -t ${zip}`)
    expect(t.code, t.stdout + t.stderr).toBe(0)
    expect(t.stdout).not.toMatch(/bomb|overlap/)
    expect(sh(`unzip -p ${zip} big.raw | cmp - ${disk}`).code).toBe(0)
    const chunks = join(dir, 'big-chunks.zip')
    expect((await vdsnap(['export', 'latest', '--to', chunks], env)).code).toBe(0)
    unzipTest(chunks)
    const back = sh(`cat ${chunks} | node ${BIN} restore --from-archive - --to big-back.raw -q && cmp big-back.raw ${disk}`)
    expect(back.code, back.stderr).toBe(0)
  }, 900_000)
})

describe('job file: exports', () => {
  it('run exports the newest snapshot of each disk to the path template, then not again until due; the archive restores', async () => {
    const plain = repos.find((x) => x.name === 'plain')!
    const jobs = join(dir, 'jobs.yaml')
    const tape = join(dir, 'tape')
    writeFileSync(
      jobs,
      [
        'jobs:',
        '  monthly:',
        `    repository: ${plain.path}`,
        '    disks:',
        `      - path: ${join(dir, `disk-${plain.name}.img`)}`, // the path the disk's snapshots were taken from
        '        name: web',
        '    exports:',
        `      - to: ${tape}/{disk}-{date}-{snapshot}.zip`,
        '        every: 4w',
        '        record-size: 64KiB',
        '    check:',
        '      every: never',
        '',
      ].join('\n'),
    )
    execFileSync('mkdir', ['-p', tape])
    const first = sh(`node ${BIN} run monthly --jobs ${jobs} --json`)
    expect(first.code, first.stderr).toBe(0)
    const summary = JSON.parse(first.stdout)
    const ex = summary.jobs[0].exports
    expect(ex).toHaveLength(1)
    expect(ex[0]).toMatchObject({disk: 'web', ok: true})
    expect(ex[0].to).toMatch(new RegExp(`web-\\d{4}-\\d{2}-\\d{2}-${summary.jobs[0].disks[0].snapshot.slice(0, 8)}\\.zip$`))
    expect(readFileSync(ex[0].to).length % 65536).toBe(0)
    unzipTest(ex[0].to)
    expect(sh(`node ${BIN} restore --from-archive ${ex[0].to} --to job-export.raw -q && cmp job-export.raw ${join(dir, `disk-${plain.name}.img`)}`).code).toBe(0)
    const second = sh(`node ${BIN} run monthly --jobs ${jobs} --json`)
    expect(second.code, second.stderr).toBe(0)
    expect(JSON.parse(second.stdout).jobs[0].exports ?? []).toHaveLength(0)
    expect(readdirSync(tape)).toHaveLength(1)
  })
})
