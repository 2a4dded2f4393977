// The benchmark: vdsnap side by side with restic and borg on the image set
// built by bench/images.sh, in one run on one machine. Writes BENCHMARKS.md
// and bench/results/latest.json.
//
// Usage: node bench/bench.mjs [--block-sizes] [--repeat N] [--no-others] [--out FILE]
//   --block-sizes  also measure vdsnap with block sizes 256 KiB .. 4 MiB
//   --repeat N     run the main sequence N times (fresh repositories) and keep each
//                  step's fastest pass (default 1; the machine is shared and noisy)
//   --no-others    vdsnap only (no restic/borg; ratios left empty) — for quick checks
//   --no-nbd       skip the backups through qemu-nbd (full, and 1% by dirty bitmap)
//   --render-only  rewrite BENCHMARKS.md from bench/results/latest.json (no measuring)
// Environment: VDSNAP_BENCH_DIR (default /var/tmp/vdsnap-bench), VDSNAP_BENCH_BIN
// (the vdsnap launcher to run; bench/run.sh passes a frozen copy of the build).
//
// Every timed command runs under /usr/bin/time -v (wall clock, peak RSS).
// Page cache: we cannot drop caches reliably, so every input is read once
// (cat > /dev/null) right before the timed runs that use it, and `sync` runs
// between timed steps so no tool pays for another one's write-back.
import {execFileSync, spawnSync} from 'node:child_process'
import {closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {cpus, totalmem} from 'node:os'
import {dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'
import {BITMAP, applyRanges, makeQcow2WithBitmap, startQemuNbd} from './nbd-bitmap.mjs'
import {renderArchive} from './archive-render.mjs'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const args = process.argv.slice(2)
const withBlockSizes = args.includes('--block-sizes')
const withOthers = !args.includes('--no-others')
const withNbd = !args.includes('--no-nbd')
const repeatIdx = args.indexOf('--repeat')
const repeat = repeatIdx >= 0 ? Math.max(1, Math.min(10, Number(args[repeatIdx + 1]) || 1)) : 1
const outIdx = args.indexOf('--out')
const mdOut = outIdx >= 0 ? resolve(args[outIdx + 1]) : join(root, 'BENCHMARKS.md')
const benchDir = process.env.VDSNAP_BENCH_DIR || '/var/tmp/vdsnap-bench'
const imgDir = join(benchDir, 'images')
const work = join(benchDir, 'work')
const vdsnapBin = process.env.VDSNAP_BENCH_BIN || join(root, 'bin/run.js')
const commandLine = process.env.VDSNAP_BENCH_CMD || `node bench/bench.mjs ${args.join(' ')}`.trim()

const PASSWORD = 'bench password'
const env = {
  ...process.env,
  VDSNAP_PASSWORD: PASSWORD,
  RESTIC_PASSWORD: PASSWORD,
  RESTIC_CACHE_DIR: join(work, 'restic-cache'),
  BORG_PASSPHRASE: PASSWORD,
  BORG_BASE_DIR: join(work, 'borg-home'),
  BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes',
  BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes',
  BORG_DISPLAY_PASSPHRASE: 'no',
}
delete env.VDSNAP_REPOSITORY
delete env.VDSNAP_PASSWORD_FILE
delete env.VDSNAP_PASSWORD_COMMAND
delete env.RESTIC_REPOSITORY
delete env.BORG_REPO

const log = (...m) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}]`, ...m)
const GiB = 1024 ** 3
const MiB = 1024 ** 2

// ---------------------------------------------------------------- helpers

function sh(cmd, cmdArgs, opts = {}) {
  return execFileSync(cmd, cmdArgs, {encoding: 'utf8', env, maxBuffer: 64 * MiB, ...opts})
}
function tryOut(cmd, cmdArgs) {
  try {
    return sh(cmd, cmdArgs, {stdio: ['ignore', 'pipe', 'pipe']}).trim()
  } catch {
    return null
  }
}
function duBytes(path) {
  return Number(sh('du', ['-sb', path]).split('\t')[0])
}
function allocatedBytes(path) {
  return Number(sh('du', ['-B1', '--', path]).split('\t')[0])
}
function countFiles(dir) {
  let n = 0
  const stack = [dir]
  for (let guard = 0; stack.length > 0 && guard < 10_000_000; guard++) {
    const d = stack.pop()
    for (const e of readdirSync(d, {withFileTypes: true})) {
      if (e.isDirectory()) stack.push(join(d, e.name))
      else n++
    }
  }
  return n
}
function syncDisks() {
  spawnSync('sync', [], {stdio: 'ignore'})
}
/** Reads a file once (untimed) so every tool starts with the same warm page cache. */
function warm(path) {
  spawnSync('sh', ['-c', 'cat "$1" > /dev/null', 'warm', path], {stdio: 'inherit'})
}
/** Reads only the given byte ranges (for the 64 GiB sparse image: its data pieces). */
function warmPieces(path, pieces) {
  for (const [offset, length] of pieces) {
    spawnSync('dd', [`if=${path}`, 'of=/dev/null', 'bs=4M', `skip=${offset / (4 * MiB)}`, `count=${length / (4 * MiB)}`, 'status=none'])
  }
}
function copySparse(from, to) {
  rmSync(to, {force: true})
  sh('cp', ['--sparse=always', from, to])
  syncDisks()
}

/**
 * Runs one command under /usr/bin/time -v. Returns wall seconds, peak RSS
 * (bytes), user/sys seconds, exit code, stdout. Throws when the exit code is
 * not in `okCodes`.
 */
let runNo = 0
function timed(label, cmd, cmdArgs, {cwd, okCodes = [0], stdoutFile} = {}) {
  runNo++
  const logs = join(work, 'logs')
  mkdirSync(logs, {recursive: true})
  const base = join(logs, `${String(runNo).padStart(3, '0')}-${label.replace(/[^a-z0-9]+/gi, '_')}`)
  const timeFile = `${base}.time`
  const outPath = stdoutFile ?? `${base}.out`
  const outFd = openSync(outPath, 'w')
  const errFd = openSync(`${base}.err`, 'w')
  syncDisks()
  const load1 = Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0])
  log(`${label}: ${cmd} ${cmdArgs.join(' ')}`)
  const r = spawnSync('/usr/bin/time', ['-v', '-o', timeFile, cmd, ...cmdArgs], {
    cwd,
    env,
    stdio: ['ignore', outFd, errFd],
  })
  closeSync(outFd)
  closeSync(errFd)
  const t = readFileSync(timeFile, 'utf8')
  const field = (re) => {
    const m = t.match(re)
    return m ? m[1] : null
  }
  const wallText = field(/Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)/)
  const wall = wallText.split(':').reduce((acc, p) => acc * 60 + Number(p), 0)
  const res = {
    wall,
    rss: Number(field(/Maximum resident set size \(kbytes\): (\d+)/)) * 1024,
    user: Number(field(/User time \(seconds\): ([\d.]+)/)),
    sys: Number(field(/System time \(seconds\): ([\d.]+)/)),
    exit: r.status,
    load1,
  }
  res.cpu = +(res.user + res.sys).toFixed(2)
  log(`${label}: ${wall.toFixed(2)} s, cpu ${res.cpu} s, peak RSS ${(res.rss / MiB).toFixed(0)} MiB, exit ${r.status} (load ${load1})`)
  if (!okCodes.includes(r.status)) {
    const err = readFileSync(`${base}.err`, 'utf8').slice(-2000)
    throw new Error(`${label} failed (exit ${r.status}): ${err}`)
  }
  if (!stdoutFile) res.stdout = readFileSync(outPath, 'utf8')
  return res
}
const strip = ({stdout, ...rest}) => rest

// ---------------------------------------------------------------- tools

const vdsnap = {
  name: 'vdsnap',
  init(repo, extra = []) {
    return timed('vdsnap init', 'node', [vdsnapBin, 'init', '--repo', repo, '--json', ...extra])
  },
  backup(label, repo, src, disk, extra = []) {
    const r = timed(label, 'node', [vdsnapBin, 'backup', src, '--repo', repo, '--disk', disk, '--json', ...extra], {okCodes: [0, 3]})
    const j = JSON.parse(r.stdout)
    return {...strip(r), id: j.snapshot, report: j}
  },
  restore(label, repo, id, dir) {
    const to = join(dir, 'restored.img')
    const r = timed(label, 'node', [vdsnapBin, 'restore', id, '--repo', repo, '--to', to, '--json'])
    return {...strip(r), file: to}
  },
  /** restore --to - into /dev/null: the decode pipeline alone, no file system write. */
  restoreNull(label, repo, id) {
    return strip(timed(label, 'node', [vdsnapBin, 'restore', id, '--repo', repo, '--to', '-'], {stdoutFile: '/dev/null'}))
  },
}

const restic = {
  name: 'restic',
  init(repo) {
    return timed('restic init', 'restic', ['init', '--repo', repo, '--repository-version', '2'])
  },
  backup(label, repo, src) {
    const r = timed(label, 'restic', ['backup', '--repo', repo, '--host', 'bench', '--compression', 'auto', '--json', src])
    const summary = r.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l))
      .find((m) => m.message_type === 'summary')
    return {...strip(r), id: summary.snapshot_id, report: summary}
  },
  restore(label, repo, id, dir, src) {
    const r = timed(label, 'restic', ['restore', '--repo', repo, id, '--target', dir])
    return {...strip(r), file: join(dir, src)}
  },
}

const borg = {
  name: 'borg',
  n: 0,
  init(repo) {
    return timed('borg init', 'borg', ['init', '--encryption', 'repokey', repo])
  },
  backup(label, repo, src) {
    const archive = `a${++this.n}`
    const r = timed(label, 'borg', ['create', '--compression', 'zstd,3', '--json', `${repo}::${archive}`, src])
    return {...strip(r), id: archive, report: JSON.parse(r.stdout).archive?.stats}
  },
  restore(label, repo, id, dir, src) {
    mkdirSync(dir, {recursive: true})
    const r = timed(label, 'borg', ['extract', '--sparse', `${repo}::${id}`], {cwd: dir})
    return {...strip(r), file: join(dir, src)}
  },
}

// ---------------------------------------------------------------- machine

function machineFacts() {
  const facts = {
    date: new Date().toISOString(),
    nproc: Number(tryOut('nproc', [])),
    cpu: cpus()[0]?.model,
    memoryGiB: +(totalmem() / GiB).toFixed(1),
    kernel: tryOut('uname', ['-r']),
    disk: tryOut('sh', ['-c', `df -hT ${benchDir} | tail -1`]),
    node: process.version,
    restic: tryOut('restic', ['version']),
    borg: tryOut('borg', ['--version']),
    zstd: tryOut('zstd', ['--version']),
    loadBefore: readFileSync('/proc/loadavg', 'utf8').trim(),
    gitCommit: tryOut('git', ['-C', root, 'rev-parse', '--short', 'HEAD']),
    gitDirtyFiles: (tryOut('git', ['-C', root, 'status', '--porcelain', '--', 'src', 'commands']) ?? '').split('\n').filter(Boolean).length,
    vdsnap: vdsnapBin,
  }
  return facts
}

function imageFacts() {
  const variants = JSON.parse(readFileSync(join(imgDir, 'variants.json'), 'utf8'))
  const dumpe2fs = tryOut('dumpe2fs', ['-h', join(imgDir, 'base.img')]) ?? ''
  const num = (re) => Number((dumpe2fs.match(re) ?? [])[1])
  const blockCount = num(/Block count:\s+(\d+)/)
  const freeBlocks = num(/Free blocks:\s+(\d+)/)
  const fsBlock = num(/Block size:\s+(\d+)/)
  return {
    base: {
      size: statSync(join(imgDir, 'base.img')).size,
      allocated: allocatedBytes(join(imgDir, 'base.img')),
      fsUsedBytes: (blockCount - freeBlocks) * fsBlock,
      nonZeroBytes: variants.nonZeroPieces * variants.pieceSize,
    },
    variants: variants.variants,
    big64: {size: statSync(join(imgDir, 'big64.img')).size, allocated: allocatedBytes(join(imgDir, 'big64.img'))},
  }
}

// ---------------------------------------------------------------- the run

function runAll() {

  const results = {machine: machineFacts(), command: commandLine, options: {withBlockSizes, withOthers, withNbd, repeat}}
  results.images = imageFacts()
  const img = (n) => join(imgDir, `${n}.img`)
  const ranges = (n) => join(imgDir, `${n}.ranges.json`)

  rmSync(work, {recursive: true, force: true})
  mkdirSync(join(work, 'src'), {recursive: true})
  const cur = join(work, 'src', 'cur.img')
  const cloneSrc = join(work, 'src', 'clone.img')

  // 1. Reference limits on base.img (4 GiB apparent size, holes read as zeros).
  log('reference limits')
  warm(img('base'))
  results.reference = {
    input: img('base'),
    bytes: results.images.base.size,
    cat: strip(timed('ref cat', 'sh', ['-c', 'cat "$1" > /dev/null', 'cat', img('base')])),
    sha256sum: strip(timed('ref sha256sum', 'sha256sum', [img('base')])),
    zstd: strip(timed('ref zstd -3 -T2', 'sh', ['-c', 'zstd -q -3 -T2 -c "$1" > /dev/null', 'zstd', img('base')])),
  }

  // 2. The main sequence: base (full) → 1% → 5% → clone (new disk) → restore of the 1% snapshot.
  // Repeated `repeat` times with fresh repositories; each step reports its
  // fastest pass (interference from other load only ever slows a run down).
  const tools = withOthers ? [vdsnap, restic, borg] : [vdsnap]
  const mainPass = (pass) => {
    const passDir = join(work, `pass-${pass}`)
    mkdirSync(passDir, {recursive: true})
    const repo = Object.fromEntries(tools.map((t) => [t.name, join(passDir, `repo-${t.name}`)]))
    const repoCbt = join(passDir, 'repo-vdsnap-cbt')
    const steps = Object.fromEntries(tools.map((t) => [t.name, {}]))
    const sizes = Object.fromEntries(tools.map((t) => [t.name, {}]))
    const ids = Object.fromEntries(tools.map((t) => [t.name, {}]))

    for (const t of tools) steps[t.name].init = strip(t.init(repo[t.name]))

    const sequence = [
      {step: 'full', image: 'base'},
      {step: 'incr1', image: 'p1'},
      {step: 'incr5', image: 'p5'},
    ]
    for (const {step, image} of sequence) {
      log(`pass ${pass + 1}/${repeat}, step ${step}: ${image}.img → ${cur}`)
      copySparse(img(image), cur)
      warm(cur)
      for (const t of tools) {
        const before = duBytes(repo[t.name])
        const r = t.backup(`${t.name} ${step}`, repo[t.name], cur, 'bench')
        syncDisks()
        const after = duBytes(repo[t.name])
        steps[t.name][step] = {...r, repoBefore: before, repoAfter: after, added: after - before}
        ids[t.name][step] = r.id
        if (t === vdsnap && step === 'full') {
          // The --changed-blocks lineage: a copy of the repository right after the
          // full backup, so that its parent is the base snapshot.
          sh('cp', ['-a', repo.vdsnap, repoCbt])
        }
        if (t === vdsnap && step === 'incr1') {
          const b = duBytes(repoCbt)
          const rc = vdsnap.backup('vdsnap incr1 --changed-blocks', repoCbt, cur, 'bench', ['--changed-blocks', ranges('p1')])
          syncDisks()
          const a = duBytes(repoCbt)
          steps.vdsnap.incr1cbt = {...rc, repoBefore: b, repoAfter: a, added: a - b}
        }
      }
    }

    if (withNbd) Object.assign(steps.vdsnap, nbdSteps(passDir))

    log(`step clone: clone.img → ${cloneSrc} (a new disk)`)
    copySparse(img('clone'), cloneSrc)
    warm(cloneSrc)
    for (const t of tools) {
      const before = duBytes(repo[t.name])
      const r = t.backup(`${t.name} clone`, repo[t.name], cloneSrc, 'clone')
      syncDisks()
      const after = duBytes(repo[t.name])
      steps[t.name].clone = {...r, repoBefore: before, repoAfter: after, added: after - before}
    }

    log('step restore: the 1% snapshot')
    rmSync(cur, {force: true})
    rmSync(cloneSrc, {force: true})
    syncDisks()
    for (const t of tools) {
      const dir = join(passDir, `restore-${t.name}`)
      mkdirSync(dir, {recursive: true})
      const r = t.restore(`${t.name} restore`, repo[t.name], ids[t.name].incr1, dir, cur.slice(1))
      // vdsnap fsyncs the restored file before it exits; restic and borg leave
      // it in the page cache. The time until the data is on disk is also shown.
      const syncStart = performance.now()
      syncDisks()
      const syncWall = (performance.now() - syncStart) / 1000
      steps[t.name].restoreDurable = {wall: +(r.wall + syncWall).toFixed(2), syncAfter: +syncWall.toFixed(2)}
      // Untimed check: the restored image equals the 1% image.
      const same = spawnSync('cmp', ['-s', r.file, img('p1')]).status === 0
      log(`${t.name} restore: ${same ? 'identical to p1.img' : 'DIFFERS from p1.img'}`)
      steps[t.name].restore = {...r, identical: same, allocated: allocatedBytes(r.file)}
      rmSync(dir, {recursive: true, force: true})
      if (t === vdsnap) {
        const n = vdsnap.restoreNull('vdsnap restore --to - > /dev/null', repo.vdsnap, ids.vdsnap.incr1)
        steps.vdsnap.restoreNull = {...n, gibPerSecond: +(results.images.base.size / GiB / n.wall).toFixed(2)}
      }
    }
    for (const t of tools) {
      sizes[t.name].repoAfterAll = duBytes(repo[t.name])
      steps[t.name].peakRss = Math.max(...Object.values(steps[t.name]).map((s) => s.rss ?? 0))
    }
    rmSync(passDir, {recursive: true, force: true})
    return {steps, sizes}
  }
  /**
   * The NBD lineage: base.img as a qcow2 with an empty persistent bitmap,
   * backed up in full through qemu-nbd (recording the bitmap), then p1's
   * ranges written through qemu-io (the bitmap marks them) and the 1%
   * incremental by bitmap, both timed. Set-up and qemu-nbd start/stop are
   * untimed.
   */
  const nbdSteps = (passDir) => {
    const dir = join(passDir, 'nbd')
    mkdirSync(dir, {recursive: true})
    const qcow2 = join(dir, 'disk.qcow2')
    const repoNbd = join(passDir, 'repo-vdsnap-nbd')
    log('step nbd: base.img → qcow2 with a dirty bitmap, served by qemu-nbd')
    makeQcow2WithBitmap(img('base'), qcow2)
    vdsnap.init(repoNbd)
    const out = {}
    const serve = (label, key) => {
      syncDisks()
      warm(qcow2)
      const srv = startQemuNbd(qcow2, dir)
      try {
        out[key] = vdsnap.backup(label, repoNbd, srv.url, 'bench', ['--bitmap', BITMAP])
      } finally {
        srv.stop()
      }
    }
    serve('vdsnap full via qemu-nbd', 'fullNbd')
    applyRanges(img('p1'), ranges('p1'), qcow2, join(dir, 'pieces'))
    serve('vdsnap incr1 --bitmap via qemu-nbd', 'incr1bitmap')
    const rep = out.incr1bitmap.report
    if (rep.changeSource !== 'bitmap' || rep.warnings.length > 0) throw new Error(`the backup by bitmap did not use the bitmap: ${JSON.stringify(rep)}`)
    rmSync(dir, {recursive: true, force: true})
    rmSync(repoNbd, {recursive: true, force: true})
    return out
  }

  const passes = []
  for (let pass = 0; pass < repeat; pass++) passes.push(mainPass(pass))
  const steps = passes[0].steps
  for (const t of tools) {
    for (const key of Object.keys(steps[t.name])) {
      if (key === 'peakRss') continue
      const runs = passes.map((p) => p.steps[t.name][key])
      const best = runs.reduce((a, b) => (b.wall < a.wall ? b : a))
      steps[t.name][key] = {...best, walls: runs.map((r) => r.wall), cpus: runs.map((r) => r.cpu), rsss: runs.map((r) => r.rss)}
    }
    steps[t.name].peakRss = Math.max(...passes.map((p) => p.steps[t.name].peakRss))
  }
  results.steps = steps
  results.sizes = passes[passes.length - 1].sizes

  // 3. Scaling: full backup of the 64 GiB sparse image vs the 4 GiB image, fresh repositories.
  log('scaling: 4 GiB vs 64 GiB sparse')
  results.scaling = {}
  for (const [name, path, pieces] of [
    ['base', img('base'), null],
    ['big64', img('big64'), [0, 1, 2, 3].map((i) => [i * 16 * GiB, GiB])],
  ]) {
    const r = join(work, `repo-scale-${name}`)
    vdsnap.init(r)
    if (pieces) warmPieces(path, pieces)
    else warm(path)
    const b = vdsnap.backup(`vdsnap scaling ${name}`, r, path, name)
    results.scaling[name] = {...b, size: statSync(path).size, allocated: allocatedBytes(path), repo: duBytes(r)}
    rmSync(r, {recursive: true, force: true})
  }

  // 4. Block sizes (optional).
  if (withBlockSizes) {
    results.blockSizes = []
    for (const bs of ['256KiB', '512KiB', '1MiB', '2MiB', '4MiB']) {
      const r = join(work, `repo-bs-${bs}`)
      vdsnap.init(r, ['--block-size', bs])
      warm(img('base'))
      const full = vdsnap.backup(`vdsnap bs=${bs} full`, r, img('base'), 'bench')
      syncDisks()
      const afterFull = duBytes(r)
      warm(img('p1'))
      const inc = vdsnap.backup(`vdsnap bs=${bs} incr1`, r, img('p1'), 'bench')
      syncDisks()
      const afterInc = duBytes(r)
      results.blockSizes.push({
        blockSize: bs,
        full: strip(full),
        incr1: strip(inc),
        repoAfterFull: afterFull,
        addedByIncr1: afterInc - afterFull,
        objects: countFiles(join(r, 'chunks')),
        fullThroughputMiBs: results.images.base.nonZeroBytes / MiB / full.wall,
      })
      rmSync(r, {recursive: true, force: true})
    }
  }

  results.machine.loadAfter = readFileSync('/proc/loadavg', 'utf8').trim()
  return results
}

// ---------------------------------------------------------------- report

// --render-only: rewrite BENCHMARKS.md from bench/results/latest.json without measuring.
const results = args.includes('--render-only') ? JSON.parse(readFileSync(join(root, 'bench/results/latest.json'), 'utf8')) : runAll()
for (const s of [...Object.values(results.steps).flatMap((t) => Object.values(t)), ...Object.values(results.scaling ?? {})]) {
  if (s && typeof s === 'object' && s.user != null && s.cpu == null) s.cpu = +(s.user + s.sys).toFixed(2)
}
const {steps, sizes} = results

const ratio = (a, b) => (a != null && b ? a / b : null)
const TARGETS = [
  {key: 'full', what: 'full backup wall time', limit: 0.5, v: (tl) => steps[tl]?.full?.wall, cpu: (tl) => steps[tl]?.full?.cpu},
  {key: 'incr1', what: '1% incremental wall time, no change source', limit: 0.3, v: (tl) => steps[tl]?.incr1?.wall, cpu: (tl) => steps[tl]?.incr1?.cpu},
  {key: 'incr1cbt', what: '1% incremental wall time, --changed-blocks (vs restic 1% incremental)', limit: 0.1, v: (tl) => (tl === 'vdsnap' ? steps.vdsnap.incr1cbt.wall : steps[tl]?.incr1?.wall), cpu: (tl) => (tl === 'vdsnap' ? steps.vdsnap.incr1cbt.cpu : steps[tl]?.incr1?.cpu)},
  {key: 'incr1bitmap', what: '1% incremental wall time, --bitmap through qemu-nbd (vs restic 1% incremental)', limit: 0.1, v: (tl) => (tl === 'vdsnap' ? steps.vdsnap.incr1bitmap?.wall : steps[tl]?.incr1?.wall), cpu: (tl) => (tl === 'vdsnap' ? steps.vdsnap.incr1bitmap?.cpu : steps[tl]?.incr1?.cpu)},
  {key: 'restoreDurable', what: 'restore of the 1% snapshot until on disk (vdsnap incl. its fsync; restic, borg + `sync`)', limit: 0.5, borgLimit: 0.5, v: (tl) => steps[tl]?.restoreDurable?.wall, cpu: (tl) => steps[tl]?.restore?.cpu},
  {key: 'repo', what: 'repository size after all steps', limit: 0.8, v: (tl) => sizes[tl]?.repoAfterAll},
  {key: 'added1', what: 'bytes added by the 1% incremental', limit: 0.5, v: (tl) => steps[tl]?.incr1?.added},
  {key: 'rss', what: 'peak RSS (max over all steps)', limit: 1.5, v: (tl) => steps[tl]?.peakRss},
]
results.targets = TARGETS.map((t) => {
  const measured = ratio(t.v('vdsnap'), t.v('restic'))
  return {
    key: t.key,
    what: t.what,
    limit: t.limit,
    vdsnapOverRestic: measured,
    vdsnapOverBorg: ratio(t.v('vdsnap'), t.v('borg')),
    cpuOverRestic: t.cpu ? ratio(t.cpu('vdsnap'), t.cpu('restic')) : null,
    pass: measured == null ? null : measured <= t.limit && (t.borgLimit == null || (ratio(t.v('vdsnap'), t.v('borg')) ?? 0) <= t.borgLimit),
  }
})
const zstdWall = results.reference.zstd.wall
results.fullVsZstd = {vdsnapFullWall: steps.vdsnap.full.wall, zstdWall, fraction: zstdWall / steps.vdsnap.full.wall}

mkdirSync(join(root, 'bench/results'), {recursive: true})
if (!args.includes('--render-only')) writeFileSync(join(root, 'bench/results/latest.json'), JSON.stringify(results, null, 2) + '\n')
writeFileSync(mdOut, renderMarkdown(results))
log(`wrote ${mdOut}${args.includes('--render-only') ? '' : ' and bench/results/latest.json'}`)
console.log(renderTargets(results))

function fmtS(s) {
  return s == null ? '–' : s < 10 ? s.toFixed(2) : s.toFixed(1)
}
function fmtB(b) {
  if (b == null) return '–'
  if (b >= GiB) return `${(b / GiB).toFixed(2)} GiB`
  if (b >= MiB) return `${(b / MiB).toFixed(1)} MiB`
  return `${(b / 1024).toFixed(0)} KiB`
}
function fmtR(r) {
  return r == null ? '–' : r.toFixed(2)
}
function renderTargets(R) {
  const lines = [
    '| step | target (vdsnap/restic) | measured vdsnap/restic | | vdsnap/borg | CPU time vdsnap/restic² |',
    '|---|---|---|---|---|---|',
  ]
  for (const t of R.targets) {
    lines.push(
      `| ${t.what} | ≤ ${t.limit}× | ${fmtR(t.vdsnapOverRestic)}× | ${t.pass == null ? '–' : t.pass ? 'PASS' : '**MISS**'} | ${fmtR(t.vdsnapOverBorg)}× | ${t.cpuOverRestic == null ? '' : `${fmtR(t.cpuOverRestic)}×`} |`,
    )
  }
  return lines.join('\n')
}
function renderMarkdown(R) {
  const S = R.steps
  const m = R.machine
  const im = R.images
  const names = ['vdsnap', 'restic', 'borg']
  const stepRows = [
    ['init', 'init'],
    ['full', 'full backup of base.img'],
    ['incr1', '1% incremental (no change source)'],
    ['incr1cbt', '1% incremental with `--changed-blocks`¹'],
    ['incr1bitmap', '1% incremental with `--bitmap` through qemu-nbd¹ ⁴'],
    ['fullNbd', 'full backup of base.img (as qcow2) through qemu-nbd⁴'],
    ['incr5', '5% incremental'],
    ['clone', 'clone (new disk, ~90% shared)'],
    ['restore', 'restore of the 1% snapshot'],
    ['restoreDurable', 'restore of the 1% snapshot, then `sync` (until on disk)³'],
    ['restoreNull', 'restore of the 1% snapshot to stdout, into /dev/null'],
  ]
  const other = (name, key) => (key === 'incr1cbt' || key === 'incr1bitmap' ? S[name]?.incr1 : key === 'fullNbd' ? S[name]?.full : S[name]?.[key])
  const o = []
  o.push('# Benchmarks', '')
  o.push(
    `Measured by \`npm run bench\` (bench/run.sh → bench/images.sh, bench/bench.mjs) on ${m.date.slice(0, 10)}. ` +
      'vdsnap, restic and borg run one after the other in the same run on the same machine, on the same image files, ' +
      'so the **ratios** are the figures to read: the machine is shared and absolute times are noisy. ' +
      'Raw numbers: [bench/results/latest.json](bench/results/latest.json).',
    '',
  )
  o.push('## Targets', '', renderTargets(R), '')
  o.push(
    '² user + system CPU seconds of the process and its threads, from the same runs: less sensitive than wall time ' +
      'to other load on a shared machine (for the time targets the verdict is on wall time, as specified).',
    '',
  )
  o.push(
    `vdsnap's full backup took ${fmtS(R.fullVsZstd.vdsnapFullWall)} s against ${fmtS(R.fullVsZstd.zstdWall)} s for ` +
      `\`zstd -3 -T2\` over the same image: **${(R.fullVsZstd.fraction * 100).toFixed(0)}% of the compression limit** ` +
      `(target ≥ 80%: ${R.fullVsZstd.fraction >= 0.8 ? 'PASS' : '**MISS**'}).`,
    '',
  )
  const rn = S.vdsnap.restoreNull
  if (rn) {
    o.push(
      `\`vdsnap restore --to -\` of the 1% snapshot into /dev/null: ${fmtS(rn.wall)} s wall, ${fmtS(rn.cpu)} s CPU, ` +
        `**${rn.gibPerSecond} GiB/s** of logical disk (target ≥ 1.5 GiB/s on 2 cores: ${rn.gibPerSecond >= 1.5 ? 'PASS' : '**MISS**'}).`,
      '',
    )
  }
  o.push('## Machine', '')
  o.push('| | |', '|---|---|')
  o.push(`| CPU | ${m.nproc} × ${m.cpu} |`, `| memory | ${m.memoryGiB} GiB |`, `| disk (bench dir) | \`${m.disk}\` |`)
  o.push(`| kernel | ${m.kernel} |`, `| node | ${m.node} |`, `| restic | ${m.restic} |`, `| borg | ${m.borg} |`, `| zstd | ${m.zstd?.replace(/\*/g, '').trim()} |`)
  o.push(`| vdsnap | git ${m.gitCommit}${m.gitDirtyFiles ? ` + ${m.gitDirtyFiles} uncommitted files in src/ and commands/` : ''} |`)
  o.push(`| load average before / after | ${m.loadBefore} / ${m.loadAfter} |`, '')
  o.push(`Command: \`${R.command}\``, '')
  o.push('## Image set', '')
  o.push(
    `- base.img: ${fmtB(im.base.size)} ext4 made with \`mkfs.ext4 -d\` from ~2.4 GB of real files (/usr/share, /usr/bin, /usr/lib); ` +
      `file system blocks in use ${fmtB(im.base.fsUsedBytes)}, non-zero 64 KiB pieces ${fmtB(im.base.nonZeroBytes)}, allocated ${fmtB(im.base.allocated)}.`,
  )
  for (const [n, v] of Object.entries(im.variants)) {
    o.push(`- ${n}.img: base with ${v.percent}% of the non-zero 64 KiB pieces overwritten with random data (${v.pieces} pieces, ${fmtB(v.bytes)}, seed ${v.seed}).`)
  }
  o.push(`- big64.img: ${fmtB(im.big64.size)} sparse file holding base.img's data in four 1 GiB pieces at 0, 16, 32, 48 GiB (allocated ${fmtB(im.big64.allocated)}).`, '')
  o.push(
    'Every backup reads the same path: each image is copied with `cp --sparse=always` over `cur.img` before the step ' +
      '(the clone goes to `clone.img`, a new disk / path). Page cache: caches cannot be dropped reliably here, so each ' +
      'input is read once (`cat > /dev/null`) right before the timed runs, and `sync` runs before every timed command. ' +
      'Every tool then reads from a warm cache. Repositories are on the same disk as the images. ' +
      (R.options.repeat > 1
        ? `The main sequence ran ${R.options.repeat} times with fresh repositories; each step shows its fastest pass (every pass is in latest.json: \`walls\`, \`cpus\`).`
        : 'The main sequence ran once (`--repeat N` runs it N times and keeps each step\'s fastest pass).'),
    '',
  )
  o.push('## Reference limits (same machine, same run, on base.img)', '')
  o.push('| command | wall (s) | CPU (s) | MiB/s over the 4 GiB image |', '|---|---|---|---|')
  for (const [k, label] of [['cat', '`cat base.img > /dev/null`'], ['sha256sum', '`sha256sum base.img`'], ['zstd', '`zstd -3 -T2 -c base.img > /dev/null`']]) {
    o.push(`| ${label} | ${fmtS(R.reference[k].wall)} | ${fmtS(R.reference[k].cpu)} | ${(R.reference.bytes / MiB / R.reference[k].wall).toFixed(0)} |`)
  }
  o.push(`| vdsnap full backup (for comparison) | ${fmtS(S.vdsnap.full.wall)} | ${fmtS(S.vdsnap.full.cpu)} | ${(R.reference.bytes / MiB / S.vdsnap.full.wall).toFixed(0)} |`, '')
  o.push('## Wall time (seconds)', '')
  o.push('| step | vdsnap | restic | borg | vdsnap/restic | vdsnap/borg |', '|---|---|---|---|---|---|')
  for (const [k, label] of stepRows) {
    const v = S.vdsnap[k]?.wall
    o.push(`| ${label} | ${fmtS(v)} | ${fmtS(other('restic', k)?.wall)} | ${fmtS(other('borg', k)?.wall)} | ${fmtR(ratio(v, other('restic', k)?.wall))} | ${fmtR(ratio(v, other('borg', k)?.wall))} |`)
  }
  o.push(
    '',
    '¹ restic and borg have no change-source input: their column repeats their 1% incremental.',
    '',
    '⁴ base.img converted to qcow2 with an empty persistent dirty bitmap, served read-only by `qemu-nbd -B`; the full backup records the bitmap, ' +
      'then p1.img\'s changed ranges are written through `qemu-io` (the bitmap marks them) and `backup nbd+unix://… --bitmap` reads only the dirty blocks. ' +
      'restic and borg read the files: their columns repeat their full and 1% incremental. ' +
      (S.vdsnap.incr1bitmap && S.vdsnap.incr1cbt ? `By bitmap / by \`--changed-blocks\`: ${fmtR(ratio(S.vdsnap.incr1bitmap.wall, S.vdsnap.incr1cbt.wall))}× wall.` : ''),
    '',
    '³ vdsnap fsyncs the restored file before it exits; restic and borg leave it in the page cache, so their `restore` row ends before the data is on disk. This row adds the `sync` that follows each restore.',
    '',
  )
  o.push('## CPU time (user + system seconds)', '')
  o.push('| step | vdsnap | restic | borg | vdsnap/restic | vdsnap/borg | 1-min load average at start (vdsnap / restic / borg) |', '|---|---|---|---|---|---|---|')
  for (const [k, label] of stepRows) {
    const v = S.vdsnap[k]?.cpu
    const loads = [S.vdsnap[k]?.load1, other('restic', k)?.load1, other('borg', k)?.load1].map((x) => (x == null ? '–' : x.toFixed(1))).join(' / ')
    o.push(`| ${label} | ${fmtS(v)} | ${fmtS(other('restic', k)?.cpu)} | ${fmtS(other('borg', k)?.cpu)} | ${fmtR(ratio(v, other('restic', k)?.cpu))} | ${fmtR(ratio(v, other('borg', k)?.cpu))} | ${loads} |`)
  }
  o.push('')
  o.push('## Peak resident memory', '')
  o.push('| step | vdsnap | restic | borg | vdsnap/restic | vdsnap/borg |', '|---|---|---|---|---|---|')
  for (const [k, label] of stepRows) {
    const v = S.vdsnap[k]?.rss
    o.push(`| ${label} | ${fmtB(v)} | ${fmtB(other('restic', k)?.rss)} | ${fmtB(other('borg', k)?.rss)} | ${fmtR(ratio(v, other('restic', k)?.rss))} | ${fmtR(ratio(v, other('borg', k)?.rss))} |`)
  }
  o.push(`| **max over all steps${R.options.repeat > 1 ? ' and passes' : ''}** | ${fmtB(S.vdsnap.peakRss)} | ${fmtB(S.restic?.peakRss)} | ${fmtB(S.borg?.peakRss)} | ${fmtR(ratio(S.vdsnap.peakRss, S.restic?.peakRss))} | ${fmtR(ratio(S.vdsnap.peakRss, S.borg?.peakRss))} |`, '')
  o.push('## Repository size (du -sb)', '')
  o.push('| | vdsnap | restic | borg | vdsnap/restic | vdsnap/borg |', '|---|---|---|---|---|---|')
  const sizeRow = (label, f) => {
    const [v, r, b] = names.map(f)
    o.push(`| ${label} | ${fmtB(v)} | ${fmtB(r)} | ${fmtB(b)} | ${fmtR(ratio(v, r))} | ${fmtR(ratio(v, b))} |`)
  }
  sizeRow('after the full backup', (n) => S[n]?.full?.repoAfter)
  sizeRow('added by the 1% incremental', (n) => S[n]?.incr1?.added)
  sizeRow('added by the 1% incremental with `--changed-blocks`¹', (n) => (n === 'vdsnap' ? S.vdsnap.incr1cbt.added : S[n]?.incr1?.added))
  sizeRow('added by the 5% incremental', (n) => S[n]?.incr5?.added)
  sizeRow('added by the clone', (n) => S[n]?.clone?.added)
  sizeRow('**after all steps**', (n) => R.sizes[n]?.repoAfterAll)
  o.push('')
  o.push(
    'Restores were compared with `cmp` against p1.img: ' +
      names.filter((n) => S[n]?.restore).map((n) => `${n} ${S[n].restore.identical ? 'identical' : '**DIFFERS**'}`).join(', ') +
      '. vdsnap and borg (`--sparse`) write holes for zero blocks; restic 0.14 has no sparse restore and writes them out ' +
      `(restored file allocation: ${names.filter((n) => S[n]?.restore).map((n) => `${n} ${fmtB(S[n].restore.allocated)}`).join(', ')}).`,
    '',
  )
  o.push('Settings: vdsnap defaults (512 KiB blocks, zstd:3, AES-256-GCM, every restored chunk re-hashed, the restored file fsynced); restic `init --repository-version 2`, `backup --compression auto`; borg `init -e repokey`, `create --compression zstd,3` (default chunker).', '')
  o.push('## Scaling with disk size (vdsnap full backup, fresh repository each)', '')
  o.push('| image | virtual size | allocated | wall (s) | CPU (s) | peak RSS | bytes read |', '|---|---|---|---|---|---|---|')
  for (const [n, s] of Object.entries(R.scaling)) {
    o.push(`| ${n}.img | ${fmtB(s.size)} | ${fmtB(s.allocated)} | ${fmtS(s.wall)} | ${fmtS(s.cpu)} | ${fmtB(s.rss)} | ${fmtB(s.report?.bytesRead)} |`)
  }
  if (R.scaling.big64 && R.scaling.base) {
    o.push(
      '',
      `64 GiB / 4 GiB: time ×${(R.scaling.big64.wall / R.scaling.base.wall).toFixed(2)}, CPU ×${(R.scaling.big64.cpu / R.scaling.base.cpu).toFixed(2)}, peak RSS ×${(R.scaling.big64.rss / R.scaling.base.rss).toFixed(2)} ` +
        '(same data, 16× the virtual size: time should follow the data, memory should stay flat).',
    )
  }
  o.push('')
  if (R.blockSizes) {
    o.push('## Block size (vdsnap, fresh repository each: full of base.img, then p1.img as the same disk)', '')
    o.push(
      '| block size | full (s) | full CPU (s) | full throughput (MiB/s of non-zero data) | peak RSS | 1% incremental (s) | added by 1% incremental | repo after full | chunk objects |',
      '|---|---|---|---|---|---|---|---|---|',
    )
    for (const b of R.blockSizes) {
      o.push(
        `| ${b.blockSize} | ${fmtS(b.full.wall)} | ${fmtS(b.full.cpu)} | ${b.fullThroughputMiBs.toFixed(0)} | ${fmtB(b.full.rss)} | ${fmtS(b.incr1.wall)} | ${fmtB(b.addedByIncr1)} | ${fmtB(b.repoAfterFull)} | ${b.objects} |`,
      )
    }
    o.push('')
  } else {
    o.push('The block-size table is measured with `npm run bench -- --block-sizes` (not in this run).', '')
  }
  o.push('CPU profile of a vdsnap full backup (main thread and workers, top self-time functions): `node bench/profile.mjs IMAGE`.', '')
  o.push(...renderSide())
  return o.join('\n') + '\n'
}

/** The separately run figures (bench:forget, bench:latency, bench:remote, read-formats), when their results exist. */
function renderSide() {
  const load = (name) => {
    try {
      return JSON.parse(readFileSync(join(root, 'bench/results', name), 'utf8'))
    } catch {
      return null
    }
  }
  const o = []
  const f = load('forget.json')
  if (f) {
    o.push('## forget + prune (`npm run bench:forget`)', '')
    o.push(
      `${f.snapshots} snapshots of the first ${f.diskMiB} MiB of base.img, ~1% of its non-zero 64 KiB pieces rewritten before each, ` +
        `in a fresh vdsnap and a fresh restic repository; then \`forget ${f.policy}\` on both (snapshot 50 tagged keep, so vdsnap merges chains in the middle and at the base). ` +
        `Measured ${f.date.slice(0, 10)}; left: vdsnap ${f.snapshotsLeft.vdsnap}, restic ${f.snapshotsLeft.restic} snapshots; afterwards vdsnap check clean, newest restore ${f.newestRestoreIdentical ? 'identical' : '**DIFFERS**'}.`,
      '',
      '| | vdsnap | restic | vdsnap/restic |',
      '|---|---|---|---|',
      `| wall (s) | ${fmtS(f.vdsnap.wall)} | ${fmtS(f.restic.wall)} | ${fmtR(f.wallRatio)} |`,
      `| CPU (s) | ${fmtS(f.vdsnap.cpu)} | ${fmtS(f.restic.cpu)} | ${fmtR(f.cpuRatio)} |`,
      `| peak RSS | ${fmtB(f.vdsnap.rss)} | ${fmtB(f.restic.rss)} | ${fmtR(f.rssRatio)} |`,
      `| repository before → after | ${fmtB(f.repoBefore.vdsnap)} → ${fmtB(f.repoAfter.vdsnap)} | ${fmtB(f.repoBefore.restic)} → ${fmtB(f.repoAfter.restic)} | |`,
      '',
    )
  }
  const sv = load('serve.json')
  if (sv) {
    o.push('## Instant recovery: serve (`npm run bench:serve`, also run by `npm run bench`)', '')
    o.push(
      `The first ${sv.diskMiB} MiB of ${sv.image.split('/').pop()} (${sv.dataMiB} MiB in data blocks), one encrypted snapshot. ` +
        `Measured ${sv.date.slice(0, 10)}, load average ${sv.load.split(' ').slice(0, 3).join(' ')}. ` +
        'Sequential: `nbdcopy --connections 4` to null: (skips holes via base:allocation; the server already listening) against `vdsnap restore --to -` into /dev/null (its start included); target ≥ 0.8×. ' +
        `Random: ${sv.randomReads} reads of 4 KiB, 16 in flight, at random offsets in data blocks; cold = a fresh server and the whole disk, warm = a 32 MiB working set read once before.`,
      '',
      '| figure | value |',
      '|---|---|',
      `| serve start → listening | ${fmtS(sv.readyS)} s |`,
      `| serve start → first byte a client reads | ${fmtS(sv.firstByteS)} s |`,
      `| restore --to - (whole disk) | ${fmtS(sv.restoreS)} s (${(sv.diskMiB / sv.restoreS).toFixed(0)} MiB/s) |`,
      `| nbdcopy, 4 connections (whole disk) | ${fmtS(sv.nbdcopyS)} s (${(sv.diskMiB / sv.nbdcopyS).toFixed(0)} MiB/s) |`,
      `| nbdcopy / restore throughput | ${fmtR(sv.nbdcopyVsRestore)} |`,
      `| 4 KiB random reads/s, cold cache | ${sv.randomColdPerS} |`,
      `| 4 KiB random reads/s, warm cache | ${sv.randomWarmPerS} |`,
      '',
    )
  }
  const ar = load('archive.json')
  if (ar) o.push(...renderArchive(ar))
  const other = [
    ['latency.json', 'SFTP over a 50 ms round trip (`npm run bench:latency`)'],
    ['remote.json', 'throughput per backend, incremental copy bytes, S3 requests per GiB (`npm run bench:remote`)'],
    ['read-formats.json', 'native readers against `qemu-img convert` (`node bench/read-formats.mjs`)'],
    ['overlay.json', 'qcow2 overlay incremental against the full backup (`bash bench/overlay-incremental.sh`)'],
  ].filter(([name]) => load(name))
  if (other.length) {
    o.push('## Other figures', '', ...other.map(([name, what]) => `- ${what}: [bench/results/${name}](bench/results/${name})`), '')
  }
  return o
}
