// Backup by QEMU dirty bitmap through qemu-nbd (`backup nbd+unix://… --bitmap`),
// the NBD row of the benchmark. bench.mjs imports the set-up helpers and times
// the two backups with its own runner; run alone it is a small sanity check:
//
//   node bench/nbd-bitmap.mjs BASE.img CHANGED.img CHANGED.ranges.json [WORKDIR]
//
// (images as bench/variants.mjs makes them). It times, each on a fresh copy of
// the lineage: the full backup of BASE through qemu-nbd, the backup by bitmap
// after CHANGED's ranges were written through qemu-io (so the bitmap records
// them), vdsnap's own --changed-blocks run over the same change, and restic's
// incremental of CHANGED.img when restic is installed; prints JSON.
//
// Set-up: BASE is converted to qcow2, a persistent bitmap "vdsnap" is added,
// the full backup is taken (it records the bitmap), then each changed range is
// copied from CHANGED into the qcow2 by qemu-io (write -s piece-file).
import {execFileSync, spawnSync} from 'node:child_process'
import {closeSync, mkdirSync, openSync, readFileSync, readSync, rmSync, writeFileSync} from 'node:fs'
import {dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'

export const BITMAP = 'vdsnap'

/** qcow2 copy of the raw base image with an empty persistent dirty bitmap. */
export function makeQcow2WithBitmap(base, qcow2) {
  rmSync(qcow2, {force: true})
  execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', base, qcow2])
  execFileSync('qemu-img', ['bitmap', '--add', qcow2, BITMAP])
}

/** Writes CHANGED's bytes at each range into the qcow2 through qemu-io, so the bitmap marks them. */
export function applyRanges(changed, rangesFile, qcow2, scratch) {
  const ranges = JSON.parse(readFileSync(rangesFile, 'utf8'))
  mkdirSync(scratch, {recursive: true})
  const fd = openSync(changed, 'r')
  const perCall = 256 // qemu-io commands per process: bounded command lines
  try {
    for (let i = 0; i < ranges.length; i += perCall) {
      const cmds = []
      for (const [k, r] of ranges.slice(i, i + perCall).entries()) {
        const piece = Buffer.alloc(r.length)
        readSync(fd, piece, 0, r.length, r.offset)
        const file = join(scratch, `piece-${k}`)
        writeFileSync(file, piece)
        cmds.push('-c', `write -q -s ${file} ${r.offset} ${r.length}`)
      }
      execFileSync('qemu-io', ['-f', 'qcow2', ...cmds, qcow2], {stdio: ['ignore', 'ignore', 'inherit']})
    }
  } finally {
    closeSync(fd)
    rmSync(scratch, {recursive: true, force: true})
  }
  return ranges.length
}

/** qemu-nbd serving the qcow2 read-only with the bitmap, on a unix socket; returns its URL and a stop function. */
export function startQemuNbd(qcow2, dir) {
  const socket = join(dir, 'qemu-nbd.sock')
  const pidFile = join(dir, 'qemu-nbd.pid')
  rmSync(socket, {force: true})
  execFileSync('qemu-nbd', ['--fork', '--pid-file', pidFile, '-r', '-t', '-f', 'qcow2', '-x', 'disk', '-B', BITMAP, '-k', socket, qcow2])
  const pid = Number(readFileSync(pidFile, 'utf8'))
  return {
    url: `nbd+unix:///disk?socket=${socket}`,
    stop() {
      try {
        process.kill(pid, 'SIGTERM')
      } catch {
        return
      }
      for (let i = 0; i < 200; i++) {
        try {
          process.kill(pid, 0)
        } catch {
          return
        }
        spawnSync('sleep', ['0.05'])
      }
      process.kill(pid, 'SIGKILL')
    },
  }
}

// ---------------------------------------------------------------- standalone sanity run

function wall(cmd, args, env, okCodes = [0]) {
  spawnSync('sync')
  const t0 = performance.now()
  const r = spawnSync(cmd, args, {env, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024})
  const s = (performance.now() - t0) / 1000
  if (!okCodes.includes(r.status)) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`)
  return {wall: +s.toFixed(3), stdout: r.stdout}
}

function main() {
  const [base, changed, rangesFile, workArg] = process.argv.slice(2)
  if (!base || !changed || !rangesFile) {
    console.error('usage: node bench/nbd-bitmap.mjs BASE.img CHANGED.img CHANGED.ranges.json [WORKDIR]')
    process.exit(2)
  }
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
  const bin = process.env.VDSNAP_BENCH_BIN || join(root, 'bin/run.js')
  const work = resolve(workArg || '/var/tmp/vdsnap-nbd-bench')
  rmSync(work, {recursive: true, force: true})
  mkdirSync(work, {recursive: true})
  const env = {...process.env, VDSNAP_PASSWORD: 'bench', RESTIC_PASSWORD: 'bench', RESTIC_CACHE_DIR: join(work, 'restic-cache')}
  const V = (label, args, ok) => {
    const r = wall('node', [bin, ...args, '--json'], env, ok)
    return {label, wall: r.wall, report: JSON.parse(r.stdout)}
  }
  const qcow2 = join(work, 'disk.qcow2')
  makeQcow2WithBitmap(base, qcow2)
  const repoNbd = join(work, 'repo-nbd')
  const repoCbt = join(work, 'repo-cbt')
  V('init', ['init', '--repo', repoNbd])
  let srv = startQemuNbd(qcow2, work)
  const fullNbd = V('full via qemu-nbd', ['backup', srv.url, '--repo', repoNbd, '--disk', 'bench', '--bitmap', BITMAP])
  srv.stop()
  // The --changed-blocks lineage: the same full, from the raw file.
  V('init', ['init', '--repo', repoCbt])
  const full = V('full from the file', ['backup', base, '--repo', repoCbt, '--disk', 'bench'])
  const pieces = applyRanges(changed, rangesFile, qcow2, join(work, 'pieces'))
  spawnSync('sh', ['-c', 'cat "$1" "$2" > /dev/null', 'warm', qcow2, changed])
  srv = startQemuNbd(qcow2, work)
  const bitmap = V('1% by bitmap via qemu-nbd', ['backup', srv.url, '--repo', repoNbd, '--disk', 'bench', '--bitmap', BITMAP])
  srv.stop()
  const cbt = V('1% by --changed-blocks', ['backup', changed, '--repo', repoCbt, '--disk', 'bench', '--changed-blocks', rangesFile])
  let restic = null
  if (spawnSync('restic', ['version']).status === 0) {
    const repo = join(work, 'repo-restic')
    const src = join(work, 'cur.img')
    wall('restic', ['init', '--repo', repo, '--repository-version', '2'], env)
    execFileSync('cp', ['--sparse=always', base, src])
    wall('restic', ['backup', '--repo', repo, '--host', 'bench', '--compression', 'auto', src], env)
    execFileSync('cp', ['--sparse=always', changed, src])
    spawnSync('sh', ['-c', 'cat "$1" > /dev/null', 'warm', src])
    restic = wall('restic', ['backup', '--repo', repo, '--host', 'bench', '--compression', 'auto', src], env).wall
  }
  const out = {
    date: new Date().toISOString(),
    base, changed, pieces,
    loadavg: readFileSync('/proc/loadavg', 'utf8').trim(),
    fullFile: full.wall,
    fullNbd: fullNbd.wall,
    incr1bitmap: bitmap.wall,
    incr1cbt: cbt.wall,
    restic1: restic,
    bitmapOverCbt: +(bitmap.wall / cbt.wall).toFixed(3),
    bitmapOverRestic: restic ? +(bitmap.wall / restic).toFixed(3) : null,
    bitmap: {changeSource: bitmap.report.changeSource, bytesRead: bitmap.report.bytesRead, bytesChanged: bitmap.report.bytesChanged, warnings: bitmap.report.warnings},
    cbt: {changeSource: cbt.report.changeSource, bytesRead: cbt.report.bytesRead, bytesChanged: cbt.report.bytesChanged},
  }
  // The backup by bitmap must find exactly the change the ranges describe.
  if (out.bitmap.changeSource !== 'bitmap' || out.bitmap.bytesChanged !== out.cbt.bytesChanged) {
    throw new Error(`the backup by bitmap disagrees with --changed-blocks: ${JSON.stringify(out)}`)
  }
  console.log(JSON.stringify(out, null, 2))
  if (!process.env.VDSNAP_BENCH_KEEP) rmSync(work, {recursive: true, force: true})
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main()
