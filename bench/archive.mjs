// Archives: export, portable export, restore --from-archive and import,
// against restic dump / dump --archive zip, borg export-tar, and `cat` of
// the repository's chunk files as the I/O limit, in one run on one disk.
// `npm run bench:archive` (after `npm run bench` has built the image set, or
// with VDSNAP_ARCHIVE_IMAGE=FILE). VDSNAP_ARCHIVE_MIB takes the first N MiB
// of the image only (quick checks). restic and borg rows are skipped when
// they are not installed. Writes bench/results/archive.json and prints a
// Markdown table with the ratios the issue sets as targets:
//   export to /dev/null ≥ 80% of cat's rate (time ratio ≤ 1.25),
//   restore --from-archive ≤ 1.2 × restore from the repository,
//   archive size within 1% of the chunks it holds.
import {spawnSync} from 'node:child_process'
import {mkdirSync, rmSync, writeFileSync, readFileSync, statSync} from 'node:fs'
import {dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const benchDir = process.env.VDSNAP_BENCH_DIR || '/var/tmp/vdsnap-bench'
const vdsnapBin = process.env.VDSNAP_BENCH_BIN || join(root, 'bin/run.js')
const image = process.env.VDSNAP_ARCHIVE_IMAGE || join(benchDir, 'images/base.img')
const sizeMiB = process.env.VDSNAP_ARCHIVE_MIB ? Number(process.env.VDSNAP_ARCHIVE_MIB) : null
const MiB = 1024 ** 2
const work = join(benchDir, 'archive')
const env = {...process.env, VDSNAP_PASSWORD: 'bench password', RESTIC_PASSWORD: 'bench password', BORG_PASSPHRASE: 'bench password', RESTIC_CACHE_DIR: join(work, 'restic-cache'), BORG_BASE_DIR: join(work, 'borg-home')}
for (const k of ['VDSNAP_REPOSITORY', 'RESTIC_REPOSITORY', 'BORG_REPO']) delete env[k]
const log = (...m) => console.error(`[archive ${new Date().toISOString().slice(11, 19)}]`, ...m)
const have = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, {env, encoding: 'utf8', maxBuffer: 64 * MiB, ...opts})
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${(r.stderr ?? '').slice(-1500)}`)
  return r.stdout
}
/** Wall and CPU time of a shell command line, under /usr/bin/time (or bare timing without it). */
function timed(label, line) {
  const tf = join(work, `${label.replace(/\W+/g, '_')}.time`)
  spawnSync('sync')
  const useTime = have('/usr/bin/time')
  const t0 = process.hrtime.bigint()
  const r = spawnSync(useTime ? '/usr/bin/time' : 'sh', useTime ? ['-v', '-o', tf, 'sh', '-c', line] : ['-c', line], {env, encoding: 'utf8', maxBuffer: 64 * MiB})
  const wall = Number(process.hrtime.bigint() - t0) / 1e9
  if (r.status !== 0) throw new Error(`${label} failed (${r.status}): ${r.stderr.slice(-1500)}`)
  let cpu = null
  if (useTime) {
    const t = readFileSync(tf, 'utf8')
    cpu = +(Number(t.match(/User time \(seconds\): ([\d.]+)/)[1]) + Number(t.match(/System time \(seconds\): ([\d.]+)/)[1])).toFixed(2)
  }
  log(`${label}: ${wall.toFixed(2)} s${cpu === null ? '' : `, cpu ${cpu} s`}`)
  return {wall: +wall.toFixed(3), cpu}
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

const rows = {}
const zip = join(work, 'disk.zip')
const V = `node ${vdsnapBin}`
rows.cat = timed('cat of the chunk files (I/O limit)', catChunks)
rows.exportNull = timed('vdsnap export --to /dev/null', `${V} export latest --repo ${repo} --to /dev/null -q`)
rows.exportFile = timed('vdsnap export --to FILE', `${V} export latest --repo ${repo} --to ${zip} -q`)
rows.portableNull = timed('vdsnap export --portable --to /dev/null', `${V} export latest --repo ${repo} --to /dev/null --portable -q`)
rows.restoreRepo = timed('vdsnap restore (repository)', `${V} restore latest --repo ${repo} --to ${work}/r1.img -q`)
rows.restoreArchive = timed('vdsnap restore --from-archive FILE', `${V} restore --from-archive ${zip} --to ${work}/r2.img -q`)
rows.restorePipe = timed('vdsnap restore --from-archive - (pipe)', `cat ${zip} | ${V} restore --from-archive - --to ${work}/r3.img -q`)
run('node', [vdsnapBin, 'init', '--repo', join(work, 'repo2'), '-q'])
rows.import = timed('vdsnap import (other keys: re-encoded)', `${V} import ${zip} --repo ${work}/repo2 -q`)
for (const r of ['r1', 'r2', 'r3']) run('cmp', [disk, join(work, `${r}.img`)])

if (have('restic')) {
  const rr = join(work, 'restic')
  run('restic', ['init', '--repo', rr, '-q'])
  run('restic', ['backup', '--repo', rr, '-q', disk])
  rows.resticDump = timed('restic dump latest FILE', `restic dump --repo ${rr} -q latest ${disk} > /dev/null`)
  rows.resticDumpZip = timed('restic dump --archive zip', `restic dump --repo ${rr} -q --archive zip latest / > /dev/null`)
}
if (have('borg')) {
  const br = join(work, 'borg')
  run('borg', ['init', '--encryption', 'repokey', br])
  run('borg', ['create', '--compression', 'zstd,3', `${br}::a`, disk])
  rows.borgExportTar = timed('borg export-tar', `borg export-tar ${br}::a - > /dev/null`)
}

const exp = JSON.parse(run('node', [vdsnapBin, 'export', 'latest', '--repo', repo, '--to', join(work, 'size.zip'), '--json']))
const sizes = {chunkFiles: du(chunks), chunkBytes: exp.chunkBytes, archiveBytes: statSync(zip).size, image: statSync(disk).size}
const ratios = {
  exportOverCat: +(rows.exportNull.wall / rows.cat.wall).toFixed(2),
  exportRateShareOfCat: +(rows.cat.wall / rows.exportNull.wall).toFixed(2),
  restoreArchiveOverRepo: +(rows.restoreArchive.wall / rows.restoreRepo.wall).toFixed(2),
  restorePipeOverRepo: +(rows.restorePipe.wall / rows.restoreRepo.wall).toFixed(2),
  archiveOverChunks: +(sizes.archiveBytes / sizes.chunkBytes).toFixed(4),
}
const result = {measured: new Date().toISOString(), image, sizeMiB, rows, sizes, ratios}
mkdirSync(join(root, 'bench/results'), {recursive: true})
writeFileSync(join(root, 'bench/results/archive.json'), JSON.stringify(result, null, 2) + '\n')
const lines = ['| step | wall s | CPU s |', '|---|---|---|', ...Object.entries(rows).map(([k, r]) => `| ${k} | ${r.wall.toFixed(2)} | ${r.cpu ?? ''} |`)]
lines.push('', `export rate / cat rate: ${ratios.exportRateShareOfCat} (target ≥ 0.80) · restore --from-archive / restore: ${ratios.restoreArchiveOverRepo} (pipe ${ratios.restorePipeOverRepo}; target ≤ 1.2) · archive / chunks: ${ratios.archiveOverChunks} (target ≤ 1.01)`)
console.log(lines.join('\n'))
