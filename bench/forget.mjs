// forget + prune, vdsnap against restic, on one chain of 100 snapshots.
// `npm run bench:forget` (after `npm run bench` has built the image set).
//
// The disk: the first VDSNAP_FORGET_MIB (default 1024) MiB of the
// benchmark's base.img. 100 backups, each after ~1% of the disk's non-zero
// 64 KiB pieces were overwritten with seeded random data, into a fresh
// vdsnap repository and a fresh restic repository (both encrypted). Then,
// timed under /usr/bin/time -v, the same policy on both:
// `forget --keep-last 10 --keep-tag keep --prune`, with snapshot 50 tagged
// `keep`, so vdsnap merges chains in the middle and at the base, and both
// tools remove what 89 snapshots alone referenced. Untimed checks after:
// `vdsnap check` is clean and the newest snapshot restores byte-identical.
// Writes bench/results/forget.json; bench.mjs renders it in BENCHMARKS.md.
import {spawnSync} from 'node:child_process'
import {mkdirSync, openSync, readFileSync, readSync, rmSync, writeFileSync, writeSync, closeSync} from 'node:fs'
import {dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const benchDir = process.env.VDSNAP_BENCH_DIR || '/var/tmp/vdsnap-bench'
const vdsnapBin = process.env.VDSNAP_BENCH_BIN || join(root, 'bin/run.js')
const sizeMiB = Number(process.env.VDSNAP_FORGET_MIB ?? 1024)
const SNAPSHOTS = 100
const MiB = 1024 ** 2
const work = join(benchDir, 'forget')
const disk = join(work, 'disk.img')
const env = {...process.env, VDSNAP_PASSWORD: 'bench password', RESTIC_PASSWORD: 'bench password', RESTIC_CACHE_DIR: join(work, 'restic-cache')}
delete env.VDSNAP_REPOSITORY
delete env.RESTIC_REPOSITORY
const log = (...m) => console.error(`[forget ${new Date().toISOString().slice(11, 19)}]`, ...m)

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, {env, encoding: 'utf8', maxBuffer: 64 * MiB, ...opts})
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${(r.stderr ?? '').slice(-1500)}`)
  return r.stdout
}
function timed(label, cmd, args) {
  const tf = join(work, `${label}.time`)
  spawnSync('sync')
  const r = spawnSync('/usr/bin/time', ['-v', '-o', tf, cmd, ...args], {env, encoding: 'utf8', maxBuffer: 64 * MiB})
  if (r.status !== 0) throw new Error(`${label} failed (${r.status}): ${r.stderr.slice(-1500)}`)
  const t = readFileSync(tf, 'utf8')
  const f = (re) => t.match(re)?.[1]
  const wall = f(/Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)/).split(':').reduce((a, p) => a * 60 + Number(p), 0)
  const res = {wall, cpu: +(Number(f(/User time \(seconds\): ([\d.]+)/)) + Number(f(/System time \(seconds\): ([\d.]+)/))).toFixed(2), rss: Number(f(/Maximum resident set size \(kbytes\): (\d+)/)) * 1024}
  log(`${label}: ${wall.toFixed(2)} s, cpu ${res.cpu} s, peak RSS ${(res.rss / MiB).toFixed(0)} MiB`)
  return res
}
const du = (p) => Number(run('du', ['-sb', p]).split('\t')[0])

rmSync(work, {recursive: true, force: true})
mkdirSync(work, {recursive: true})
run('dd', [`if=${join(benchDir, 'images/base.img')}`, `of=${disk}`, 'bs=4M', `count=${sizeMiB / 4}`, 'conv=sparse', 'status=none'])

// The non-zero 64 KiB pieces, so each step changes data that is there.
const PIECE = 64 * 1024
const fd = openSync(disk, 'r+')
const pieces = []
const buf = Buffer.alloc(PIECE)
const zero = Buffer.alloc(PIECE)
for (let off = 0; off < sizeMiB * MiB; off += PIECE) {
  readSync(fd, buf, 0, PIECE, off)
  if (!buf.equals(zero)) pieces.push(off)
}
let seed = 4242
const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32)
const perStep = Math.max(1, Math.round(pieces.length / 100))
log(`${sizeMiB} MiB disk, ${pieces.length} non-zero pieces, ${perStep} overwritten per step`)

const vrepo = join(work, 'repo-vdsnap')
const rrepo = join(work, 'repo-restic')
run('node', [vdsnapBin, 'init', '--repo', vrepo, '-q'])
run('restic', ['init', '--repo', rrepo, '--repository-version', '2', '-q'])
const started = Date.now()
for (let i = 0; i < SNAPSHOTS; i++) {
  if (i > 0) {
    for (let k = 0; k < perStep; k++) {
      const off = pieces[Math.floor(rnd() * pieces.length)]
      for (let j = 0; j < PIECE; j++) buf[j] = Math.floor(rnd() * 256)
      writeSync(fd, buf, 0, PIECE, off)
    }
  }
  const tag = i === 50 ? ['--tag', 'keep'] : []
  run('node', [vdsnapBin, 'backup', disk, '--repo', vrepo, '--disk', 'bench', '-q', ...tag])
  run('restic', ['backup', '--repo', rrepo, '--host', 'bench', '--compression', 'auto', '-q', ...tag, disk])
  if (i % 10 === 9) log(`${i + 1} snapshots each (${((Date.now() - started) / 1000).toFixed(0)} s)`)
}
closeSync(fd)
const before = {vdsnap: du(vrepo), restic: du(rrepo)}
const policy = ['--keep-last', '10', '--keep-tag', 'keep', '--prune']
const v = timed('vdsnap forget --prune', 'node', [vdsnapBin, 'forget', '--repo', vrepo, ...policy, '-q'])
const r = timed('restic forget --prune', 'restic', ['forget', '--repo', rrepo, ...policy, '-q'])
const after = {vdsnap: du(vrepo), restic: du(rrepo)}

// Untimed: what is left is whole.
const left = JSON.parse(run('node', [vdsnapBin, 'snapshots', '--repo', vrepo, '--json'])).length
const leftRestic = JSON.parse(run('restic', ['snapshots', '--repo', rrepo, '--json'])).length
run('node', [vdsnapBin, 'check', '--repo', vrepo, '-q'])
const out = join(work, 'restored.img')
run('node', [vdsnapBin, 'restore', 'latest', '--repo', vrepo, '--to', out, '-q'])
const identical = spawnSync('cmp', ['-s', out, disk]).status === 0
rmSync(out, {force: true})

const result = {
  date: new Date().toISOString(),
  command: 'npm run bench:forget',
  diskMiB: sizeMiB,
  snapshots: SNAPSHOTS,
  policy: policy.join(' '),
  piecesPerStep: perStep,
  snapshotsLeft: {vdsnap: left, restic: leftRestic},
  repoBefore: before,
  repoAfter: after,
  vdsnap: v,
  restic: r,
  wallRatio: +(v.wall / r.wall).toFixed(2),
  cpuRatio: +(v.cpu / r.cpu).toFixed(2),
  rssRatio: +(v.rss / r.rss).toFixed(2),
  vdsnapCheckClean: true,
  newestRestoreIdentical: identical,
  load: readFileSync('/proc/loadavg', 'utf8').trim(),
}
mkdirSync(join(root, 'bench/results'), {recursive: true})
writeFileSync(join(root, 'bench/results/forget.json'), JSON.stringify(result, null, 2) + '\n')
console.log(JSON.stringify(result, null, 2))
rmSync(work, {recursive: true, force: true})
