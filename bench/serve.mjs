// vdsnap serve: how soon a booting VM gets its first byte, sequential
// throughput against restore, and 4 KiB random reads with a cold and a warm
// cache. `npm run bench:serve [-- IMAGE]` (run by `npm run bench` too).
//
// The disk: the first VDSNAP_SERVE_MIB (default 4096, i.e. all) MiB of
// IMAGE (default the benchmark's base.img), backed up into a fresh encrypted
// repository. Then:
//  1. time to first byte: from starting `vdsnap serve` until a client that
//     connects as soon as the server says it listens has the first 4 KiB of
//     the first data block (opening the repository, the handshake and one
//     chunk fetched, decrypted and verified);
//  2. sequential: `nbdcopy --connections 4 nbd://... null:` against
//     `vdsnap restore --to -` into /dev/null, both the whole disk; target
//     nbdcopy ≥ 0.8 × restore. restore's time includes its start (opening
//     the repository, ~1 s); nbdcopy's starts with the server already
//     listening (its start is figure 1). nbdcopy skips holes, restore writes
//     them as zeros: on a dense disk the two move the same bytes;
//  3. random 4 KiB reads, 16 in flight, at random offsets inside data
//     blocks: cold (a fresh server, offsets over the whole disk, nearly every
//     read loads a chunk) and warm (offsets inside a 32 MiB working set that
//     was read once before, all in the cache).
// Writes bench/results/serve.json; bench.mjs renders it in BENCHMARKS.md.
import {spawn, spawnSync} from 'node:child_process'
import {connect} from 'node:net'
import {mkdirSync, rmSync, writeFileSync} from 'node:fs'
import {dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'
import * as protocol from '../dist/src/nbd/protocol.js'
import * as optionCodec from '../dist/src/nbd/option-codec.js'
import * as transmissionCodec from '../dist/src/nbd/transmission-codec.js'
import {WireReader} from '../dist/src/nbd/wire.js'

// The protocol's constants and its two codecs, as one namespace.
const P = {...protocol, ...optionCodec, ...transmissionCodec}

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const benchDir = process.env.VDSNAP_BENCH_DIR || '/var/tmp/vdsnap-bench'
const vdsnapBin = process.env.VDSNAP_BENCH_BIN || join(root, 'bin/run.js')
const image = process.argv[2] || join(benchDir, 'images/base.img')
const sizeMiB = Number(process.env.VDSNAP_SERVE_MIB ?? 4096)
const RANDOM_READS = Number(process.env.VDSNAP_SERVE_RANDOM ?? 2000)
const MiB = 1024 ** 2
const work = join(benchDir, 'serve')
const disk = join(work, 'disk.img')
const repo = join(work, 'repo')
const env = {...process.env, VDSNAP_PASSWORD: 'bench password', VDSNAP_REPOSITORY: repo}
const log = (...m) => console.error(`[serve ${new Date().toISOString().slice(11, 19)}]`, ...m)
const now = () => Number(process.hrtime.bigint()) / 1e9

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, {env, encoding: 'utf8', maxBuffer: 64 * MiB, ...opts})
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${(r.stderr ?? '').slice(-1500)}`)
  return r.stdout
}

/** Starts serve; resolves with the port, the start time and a stop function once it listens. */
function startServe(snap) {
  const t0 = now()
  const child = spawn(process.execPath, [vdsnapBin, 'serve', snap, '--listen', '127.0.0.1:0', '--name', 'disk'], {env, stdio: ['ignore', 'ignore', 'pipe']})
  let err = ''
  return new Promise((res, rej) => {
    child.stderr.on('data', (d) => {
      err += d
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(err)
      if (m && !child.ready) {
        child.ready = true
        res({port: Number(m[1]), t0, tReady: now(), stop: () => new Promise((r) => (child.once('exit', r), child.kill('SIGTERM')))})
      }
    })
    child.once('exit', (code) => rej(new Error(`serve exited ${code}: ${err}`)))
  })
}

/** A minimal pipelining client: simple replies, any number of reads in flight. */
async function client(port) {
  const s = connect(port, '127.0.0.1')
  await new Promise((r, j) => s.once('connect', r).once('error', j))
  const rd = new WireReader(s)
  await rd.read(18)
  const f = Buffer.alloc(4)
  f.writeUInt32BE(P.FLAG_C_FIXED_NEWSTYLE | P.FLAG_C_NO_ZEROES, 0)
  s.write(f)
  s.write(P.encodeOption(P.Opt.GO, P.encodeInfoRequest('disk', [])))
  for (;;) {
    const h = P.decodeOptionReplyHeader(await rd.read(P.OPTION_REPLY_HEADER_SIZE))
    await rd.read(h.length)
    if (h.type === P.Rep.ACK) break
    if (P.isErrorReply(h.type)) throw new Error(`GO refused: ${h.type}`)
  }
  let cookie = 0n
  const pending = new Map()
  const loop = (async () => {
    for (;;) {
      const r = P.decodeSimpleReply(await rd.read(P.SIMPLE_REPLY_SIZE).catch(() => Buffer.alloc(0)).then((b) => (b.length ? b : Promise.reject(new Error('closed')))))
      const p = pending.get(r.cookie)
      pending.delete(r.cookie)
      if (r.error) p.reject(new Error(`error ${r.error}`))
      else p.resolve(await rd.read(p.length))
    }
  })().catch(() => {})
  return {
    read(offset, length) {
      const c = ++cookie
      return new Promise((resolve, reject) => {
        pending.set(c, {length, resolve, reject})
        s.write(P.encodeRequest({flags: 0, type: P.Cmd.READ, cookie: c, offset, length}))
      })
    },
    close() {
      s.end(P.encodeRequest({flags: 0, type: P.Cmd.DISC, cookie: 0n, offset: 0, length: 0}))
      void loop
    },
  }
}

/** `count` reads of 4 KiB at the given offsets, `depth` in flight; reads per second. */
async function randomReads(c, offsets, depth = 16) {
  let next = 0
  const t0 = now()
  await Promise.all(
    Array.from({length: depth}, async () => {
      while (next < offsets.length) await c.read(offsets[next++], 4096)
    }),
  )
  return offsets.length / (now() - t0)
}

rmSync(work, {recursive: true, force: true})
mkdirSync(work, {recursive: true})
run('dd', [`if=${image}`, `of=${disk}`, 'bs=4M', `count=${sizeMiB / 4}`, 'conv=sparse', 'status=none'])
const size = Number(run('stat', ['-c', '%s', disk]))
run(process.execPath, [vdsnapBin, 'init'])
const snap = JSON.parse(run(process.execPath, [vdsnapBin, 'backup', disk, '--disk', 'disk', '--json'])).snapshot
log(`backed up ${(size / MiB).toFixed(0)} MiB as ${snap.slice(0, 8)}`)

// The data blocks (from the repository's own view: qemu-img map of the export later would do too).
const blockSize = 512 * 1024
const dataBlocks = []
{
  const map = JSON.parse(run('qemu-img', ['map', '--output=json', '-f', 'raw', disk]))
  for (const e of map) if (e.data) for (let b = Math.ceil(e.start / blockSize); (b + 1) * blockSize <= e.start + e.length; b++) dataBlocks.push(b)
}
let seed = 12345
const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31)
const offsetIn = (blocks) => blocks[Math.floor(rnd() * blocks.length)] * blockSize + Math.floor(rnd() * (blockSize / 4096)) * 4096

// 1. restore --to - as the reference
spawnSync('sync')
let t = now()
run('sh', ['-c', `"${process.execPath}" "${vdsnapBin}" restore ${snap} --to - > /dev/null`])
const restoreS = now() - t
log(`restore --to -: ${restoreS.toFixed(2)} s (${(size / MiB / restoreS).toFixed(0)} MiB/s)`)

// 2. first byte, then nbdcopy
let srv = await startServe(snap)
{
  const c = await client(srv.port)
  await c.read(dataBlocks[0] * blockSize, 4096)
  var firstByteS = now() - srv.t0
  var readyS = srv.tReady - srv.t0
  c.close()
}
log(`ready after ${readyS.toFixed(2)} s, first byte after ${firstByteS.toFixed(2)} s`)
t = now()
run('nbdcopy', ['--connections=4', '--threads=4', `nbd://127.0.0.1:${srv.port}/disk`, 'null:'])
const nbdcopyS = now() - t
log(`nbdcopy: ${nbdcopyS.toFixed(2)} s (${(size / MiB / nbdcopyS).toFixed(0)} MiB/s)`)
await srv.stop()

// 3. random reads: cold (fresh server, whole disk), warm (32 MiB working set read once)
srv = await startServe(snap)
const c = await client(srv.port)
const coldOffsets = Array.from({length: RANDOM_READS}, () => offsetIn(dataBlocks))
const cold = await randomReads(c, coldOffsets)
const working = dataBlocks.slice(0, 64)
for (const b of working) await c.read(b * blockSize, blockSize)
const warmOffsets = Array.from({length: RANDOM_READS * 5}, () => offsetIn(working))
const warmRate = await randomReads(c, warmOffsets)
c.close()
await srv.stop()
log(`random 4 KiB reads/s: cold ${cold.toFixed(0)}, warm ${warmRate.toFixed(0)}`)

const result = {
  date: new Date().toISOString(),
  load: run('cat', ['/proc/loadavg']).trim(),
  image,
  diskMiB: +(size / MiB).toFixed(0),
  dataMiB: +((dataBlocks.length * blockSize) / MiB).toFixed(0),
  readyS: +readyS.toFixed(3),
  firstByteS: +firstByteS.toFixed(3),
  restoreS: +restoreS.toFixed(2),
  nbdcopyS: +nbdcopyS.toFixed(2),
  nbdcopyVsRestore: +(restoreS / nbdcopyS).toFixed(2),
  randomColdPerS: Math.round(cold),
  randomWarmPerS: Math.round(warmRate),
  randomReads: RANDOM_READS,
}
mkdirSync(join(root, 'bench/results'), {recursive: true})
writeFileSync(join(root, 'bench/results/serve.json'), JSON.stringify(result, null, 2) + '\n')
console.log(JSON.stringify(result, null, 2))
