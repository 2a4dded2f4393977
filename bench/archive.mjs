// Archives (issue 10's "Figures"): export to /dev/null (the first export of
// a snapshot, which decodes and hashes the image, and a later one, which
// copies the stored chunk objects), export to a file, portable export,
// restore --from-archive (file and pipe) against restore from the
// repository, and import; against `restic dump latest FILE`, `restic dump
// --archive zip`, `borg export-tar`, and `cat` of the repository's chunk
// files as the I/O limit, in one run on one disk.
//
//   npm run bench:archive             (also run by `npm run bench`)
//   VDSNAP_ARCHIVE_IMAGE=FILE         another image (default: base.img of the image set)
//   VDSNAP_ARCHIVE_MIB=N              the first N MiB of it only (quick checks)
//
// Writes bench/results/archive.json; `node bench/archive-render.mjs` prints
// the BENCHMARKS.md section from it (bench.mjs renders it with the rest).
// restic and borg rows are skipped when they are not installed. Every
// restore is compared with the image (cmp) before a figure is kept.
import {spawnSync} from 'node:child_process'
import {mkdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {availableParallelism, cpus, loadavg} from 'node:os'
import {dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'
import {renderArchive} from './archive-render.mjs'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const benchDir = process.env.VDSNAP_BENCH_DIR || '/var/tmp/vdsnap-bench'
const vdsnapBin = process.env.VDSNAP_BENCH_BIN || join(root, 'bin/run.js')
const image = process.env.VDSNAP_ARCHIVE_IMAGE || join(benchDir, 'images/base.img')
const sizeMiB = process.env.VDSNAP_ARCHIVE_MIB ? Number(process.env.VDSNAP_ARCHIVE_MIB) : null
const MiB = 1024 ** 2
const work = join(benchDir, 'archive')
const env = {...process.env, VDSNAP_PASSWORD: 'bench password', RESTIC_PASSWORD: 'bench password', BORG_PASSPHRASE: 'bench password', RESTIC_CACHE_DIR: join(work, 'restic-cache'), BORG_BASE_DIR: join(work, 'borg-home')}
for (const k of ['VDSNAP_REPOSITORY', 'RESTIC_REPOSITORY', 'BORG_REPO', 'VDSNAP_ARCHIVE_PASSWORD']) delete env[k]
const log = (...m) => console.error(`[archive ${new Date().toISOString().slice(11, 19)}]`, ...m)
const have = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0
const useTime = have('/usr/bin/time')

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, {env, encoding: 'utf8', maxBuffer: 64 * MiB, ...opts})
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${(r.stderr ?? '').slice(-1500)}`)
  return r.stdout
}

/** Wall, CPU (user + system, children included) and peak RSS of a shell command line, under GNU time. */
function timed(label, line) {
  const tf = join(work, `${label.replace(/\W+/g, '_')}.time`)
  spawnSync('sync')
  const t0 = process.hrtime.bigint()
  const r = spawnSync(useTime ? '/usr/bin/time' : 'sh', useTime ? ['-v', '-o', tf, 'sh', '-c', line] : ['-c', line], {env, encoding: 'utf8', maxBuffer: 64 * MiB})
  const wall = Number(process.hrtime.bigint() - t0) / 1e9
  if (r.status !== 0) throw new Error(`${label} failed (${r.status}): ${r.stderr.slice(-1500)}`)
  let cpu = null
  let rss = null
  if (useTime) {
    const t = readFileSync(tf, 'utf8')
    cpu = +(Number(t.match(/User time \(seconds\): ([\d.]+)/)[1]) + Number(t.match(/System time \(seconds\): ([\d.]+)/)[1])).toFixed(2)
    rss = Number(t.match(/Maximum resident set size \(kbytes\): (\d+)/)[1]) * 1024
  }
  log(`${label}: ${wall.toFixed(2)} s${cpu === null ? '' : `, cpu ${cpu} s`}`)
  return {label, command: line, wall: +wall.toFixed(3), cpu, rss}
}
const du = (p) => Number(run('du', ['-sb', p]).split('\t')[0])

rmSync(work, {recursive: true, force: true})
mkdirSync(work, {recursive: true})
const disk = join(work, 'disk.img')
if (sizeMiB) run('dd', [`if=${image}`, `of=${disk}`, 'bs=1M', `count=${sizeMiB}`, 'conv=sparse', 'status=none'])
else run('cp', ['--sparse=always', image, disk])
const repo = join(work, 'repo')
run('node', [vdsnapBin, 'init', '--repo', repo, '-q'])
run('node', [vdsnapBin, 'backup', disk, '--repo', repo, '--disk', 'disk', '-q'])
const chunks = join(repo, 'chunks')
const catChunks = `find ${chunks} -type f -print0 | xargs -0 cat > /dev/null`
run('sh', ['-c', catChunks]) // warm: every row reads from the page cache alike

const V = `node ${vdsnapBin}`
const zip = join(work, 'disk.zip')
const rows = {}
rows.cat = timed('cat of the chunk files (I/O limit)', catChunks)
// The first export of a snapshot decodes every chunk and hashes the image (then records the hash).
rows.exportFirst = timed('vdsnap export --to /dev/null, first (decode + image SHA-256)', `rm -rf ${repo}/imagesums && ${V} export latest --repo ${repo} --to /dev/null -q`)
rows.exportNull = timed('vdsnap export --to /dev/null (image SHA-256 recorded: copy)', `${V} export latest --repo ${repo} --to /dev/null -q`)
rows.exportFile = timed('vdsnap export --to FILE', `${V} export latest --repo ${repo} --to ${zip} -q`)
rows.portableNull = timed('vdsnap export --portable --to /dev/null', `${V} export latest --repo ${repo} --to /dev/null --portable -q`)
rows.restoreRepo = timed('vdsnap restore (repository)', `${V} restore latest --repo ${repo} --to ${work}/r1.img -q`)
rows.restoreArchive = timed('vdsnap restore --from-archive FILE', `${V} restore --from-archive ${zip} --to ${work}/r2.img -q`)
rows.restorePipe = timed('vdsnap restore --from-archive - (pipe)', `cat ${zip} | ${V} restore --from-archive - --to ${work}/r3.img -q`)
run('node', [vdsnapBin, 'init', '--repo', join(work, 'repo2'), '-q'])
rows.import = timed('vdsnap import (another key: re-encoded)', `${V} import ${zip} --repo ${work}/repo2 -q`)
for (const r of ['r1', 'r2', 'r3']) {
  run('cmp', [disk, join(work, `${r}.img`)])
  rmSync(join(work, `${r}.img`))
}

if (have('restic')) {
  const rr = join(work, 'restic')
  run('restic', ['init', '--repo', rr, '-q'])
  run('restic', ['backup', '--repo', rr, '-q', disk])
  rows.resticDump = timed('restic dump latest FILE', `restic dump --repo ${rr} -q latest ${disk} > /dev/null`)
  rows.resticDumpZip = timed('restic dump --archive zip', `restic dump --repo ${rr} -q --archive zip latest / > /dev/null`)
} else log('restic is not installed: its rows are skipped')
if (have('borg')) {
  const br = join(work, 'borg')
  run('borg', ['init', '--encryption', 'repokey', br])
  run('borg', ['create', '--compression', 'zstd,3', `${br}::a`, disk])
  rows.borgExportTar = timed('borg export-tar', `borg export-tar ${br}::a - > /dev/null`)
} else log('borg is not installed: its row is skipped')

const exp = JSON.parse(run('node', [vdsnapBin, 'export', 'latest', '--repo', repo, '--to', join(work, 'size.zip'), '--json']))
const sizes = {image: statSync(disk).size, chunkFiles: du(chunks), chunks: exp.chunks, chunkBytes: exp.chunkBytes, archiveBytes: statSync(zip).size}
const ratio = (a, b) => (a && b ? +(a / b).toFixed(3) : null)
const ratios = {
  // export's rate as a share of cat's (same bytes): target ≥ 0.80
  exportRateShareOfCat: ratio(rows.cat.wall, rows.exportNull.wall),
  exportFirstRateShareOfCat: ratio(rows.cat.wall, rows.exportFirst.wall),
  exportCpuOverCat: ratio(rows.exportNull.cpu, rows.cat.cpu),
  // target ≤ 1.2
  restoreArchiveOverRepo: ratio(rows.restoreArchive.wall, rows.restoreRepo.wall),
  restorePipeOverRepo: ratio(rows.restorePipe.wall, rows.restoreRepo.wall),
  restoreArchiveCpuOverRepo: ratio(rows.restoreArchive.cpu, rows.restoreRepo.cpu),
  // target ≤ 1.01
  archiveOverChunks: ratio(sizes.archiveBytes, sizes.chunkBytes),
}
const machine = {cpus: availableParallelism(), model: cpus()[0]?.model ?? '', loadAverage: loadavg().map((x) => +x.toFixed(2)), node: process.version}
const result = {measured: new Date().toISOString(), image, sizeMiB, machine, rows, sizes, ratios}
mkdirSync(join(root, 'bench/results'), {recursive: true})
writeFileSync(join(root, 'bench/results/archive.json'), JSON.stringify(result, null, 2) + '\n')
rmSync(work, {recursive: true, force: true})
console.log(renderArchive(result).join('\n'))
