// Profiles one vdsnap full backup with `node --cpu-prof` (main thread and
// worker threads) and prints the top self-time functions of each thread.
// Usage: node bench/profile.mjs IMAGE [--block-size 1MiB] [--top 15]
//        node bench/profile.mjs --summarize DIR_OF_CPUPROFILES [--top 15]
// Works in ${VDSNAP_BENCH_DIR:-/var/tmp/vdsnap-bench}/profile (deleted first).
import {execFileSync} from 'node:child_process'
import {mkdirSync, readFileSync, readdirSync, rmSync} from 'node:fs'
import {dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const args = process.argv.slice(2)
const image = args[0]
if (image === '--summarize') {
  summarize(resolve(args[1]), Number(args[args.indexOf('--top') + 1] || 15))
  process.exit(0)
}
const opt = (name, dflt) => (args.includes(name) ? args[args.indexOf(name) + 1] : dflt)
const blockSize = opt('--block-size', '1MiB')
const top = Number(opt('--top', '15'))
const bin = process.env.VDSNAP_BENCH_BIN || join(root, 'bin/run.js')
const dir = join(process.env.VDSNAP_BENCH_DIR || '/var/tmp/vdsnap-bench', 'profile')
rmSync(dir, {recursive: true, force: true})
mkdirSync(join(dir, 'prof'), {recursive: true})
const env = {...process.env, VDSNAP_PASSWORD: 'bench password'}
execFileSync('node', [bin, 'init', '--repo', join(dir, 'repo'), '--block-size', blockSize, '--quiet'], {env})
const t0 = Date.now()
execFileSync('node', ['--cpu-prof', '--cpu-prof-dir', join(dir, 'prof'), bin, 'backup', image, '--repo', join(dir, 'repo'), '--disk', 'p', '--quiet'], {env, stdio: 'inherit'})
console.log(`backup wall ${((Date.now() - t0) / 1000).toFixed(1)} s (with profiling)`)

summarize(join(dir, 'prof'), top)

/** Prints the top self-time functions of each .cpuprofile in `profDir`. */
export function summarize(profDir, top = 15) {
for (const f of readdirSync(profDir).sort()) {
  const p = JSON.parse(readFileSync(join(profDir, f), 'utf8'))
  const total = (p.endTime - p.startTime) / 1000 // ms
  const selfMs = new Map()
  const byId = new Map(p.nodes.map((n) => [n.id, n]))
  // Self time from samples and their time deltas (more exact than hitCount × interval).
  for (let i = 0; i < p.samples.length; i++) {
    const n = byId.get(p.samples[i])
    const cf = n.callFrame
    const url = cf.url.replace(/^file:\/\//, '').replace(/.*\/(dist|node_modules)\//, '$1/')
    const key = `${cf.functionName || '(anonymous)'}  ${url ? `${url}:${cf.lineNumber + 1}` : ''}`.trim()
    selfMs.set(key, (selfMs.get(key) ?? 0) + (p.timeDeltas[i] ?? 0) / 1000)
  }
  const rows = [...selfMs.entries()].sort((a, b) => b[1] - a[1])
  const idle = (selfMs.get('(idle)') ?? 0) + (selfMs.get('(program)') ?? 0) * 0
  console.log(`\n== ${f}: ${(total / 1000).toFixed(1)} s profiled, idle ${(idle / 1000).toFixed(1)} s (${((idle / total) * 100).toFixed(0)}%)`)
  for (const [k, ms] of rows.slice(0, top)) console.log(`${(ms / 1000).toFixed(2).padStart(7)} s ${((ms / total) * 100).toFixed(1).padStart(5)}%  ${k}`)
}
}
