// Throughput of each step of a restore, one at a time on one thread, over a
// repository's real chunk objects: read the object file, AES-GCM decrypt,
// zstd decompress, re-hash (HMAC-SHA-256 or SHA-256), write into a new file.
// CPU seconds are this process's user + system time for the step, so the
// figures hold on a loaded machine where wall time does not.
// Usage: VDSNAP_PASSWORD=... node bench/restore-components.mjs REPO [--max-mib 1024] [--out DIR]
import {createDecipheriv, createHash, createHmac} from 'node:crypto'
import {closeSync, openSync, readFileSync, readdirSync, rmSync, writevSync} from 'node:fs'
import {join, resolve} from 'node:path'
import {Decompressor} from 'zstd-napi'
import {openStorage} from '../dist/src/repo/storage.js'
import {Repository} from '../dist/src/repo/repository.js'

const args = process.argv.slice(2)
const repoPath = resolve(args[0])
const opt = (name, dflt) => (args.includes(name) ? args[args.indexOf(name) + 1] : dflt)
const maxBytes = Number(opt('--max-mib', '1024')) * 1024 * 1024
const outDir = resolve(opt('--out', repoPath + '-components'))

const repo = await Repository.open(await openStorage(repoPath), async () => process.env.VDSNAP_PASSWORD ?? '')
const {encKey, idKey} = repo
await repo.close()

const files = []
for (const d of readdirSync(join(repoPath, 'chunks')).sort()) for (const f of readdirSync(join(repoPath, 'chunks', d)).sort()) files.push(join(repoPath, 'chunks', d, f))

const MiB = 1024 * 1024
const cpu = () => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}
function step(name, bytes, fn) {
  const c0 = cpu()
  const t0 = performance.now()
  const r = fn()
  const wall = (performance.now() - t0) / 1000
  const c = cpu() - c0
  console.log(`${name.padEnd(34)} ${(bytes / MiB).toFixed(0).padStart(6)} MiB  wall ${wall.toFixed(2).padStart(6)} s  cpu ${c.toFixed(2).padStart(6)} s  ${(bytes / MiB / c).toFixed(0).padStart(6)} MiB/s of cpu`)
  return r
}

// 1. read
let stored = 0
const objects = step('read object files (readFileSync)', 0, () => {
  const out = []
  for (const f of files) {
    const b = readFileSync(f)
    out.push(b)
    stored += b.length
    if (stored >= maxBytes / 3) break
  }
  return out
})
console.log(`  ${objects.length} objects, ${(stored / MiB).toFixed(0)} MiB stored`)
step('read object files again', stored, () => objects.forEach((_, i) => readFileSync(files[i])))

// 2. decrypt
const HEADER = 8
const names = objects.map((_, i) => `chunks/${files[i].slice(-64, -62)}/${files[i].slice(-64)}`)
const bodies = step('AES-256-GCM decrypt', stored, () =>
  objects.map((o, i) => {
    if (!encKey) return {flags: o[6], body: o.subarray(HEADER)}
    const d = createDecipheriv('aes-256-gcm', encKey, o.subarray(HEADER, HEADER + 12))
    d.setAAD(Buffer.concat([o.subarray(0, HEADER), Buffer.from(names[i])]))
    d.setAuthTag(o.subarray(o.length - 16))
    const body = d.update(o.subarray(HEADER + 12, o.length - 16))
    d.final()
    return {flags: o[6], body}
  }),
)

// 3. decompress
const dec = new Decompressor()
dec.setParameters({windowLogMax: 27})
let plainBytes = 0
const plains = step('zstd decompress', 0, () =>
  bodies.map(({flags, body}) => {
    const p = flags & 1 ? dec.decompress(body) : body
    plainBytes += p.length
    return p
  }),
)
step('zstd decompress (again, MiB of output)', plainBytes, () => bodies.forEach(({flags, body}) => flags & 1 && dec.decompress(body)))

// 4. hash
step(idKey ? 'HMAC-SHA-256 re-hash' : 'SHA-256 re-hash', plainBytes, () =>
  plains.forEach((p) => (idKey ? createHmac('sha256', idKey).update(p).digest() : createHash('sha256').update(p).digest())),
)

// 5. write (page cache; 8 MiB writev runs), then fsync
rmSync(outDir, {recursive: true, force: true})
const fd = openSync(outDir, 'wx')
const RUN = Number(opt("--run-mib", "8")) * MiB
step(`writev ${RUN / MiB} MiB runs into a new file`, plainBytes, () => {
  let pos = 0
  for (let i = 0; i < plains.length; ) {
    const run = []
    let n = 0
    while (i < plains.length && n < RUN) n += (run.push(plains[i]), plains[i++].length)
    let w = 0
    while (w < n) w += writevSync(fd, w === 0 ? run : [Buffer.concat(run).subarray(w)], pos + w)
    pos += n
  }
})
const {fsyncSync} = await import('node:fs')
step('fsync', plainBytes, () => fsyncSync(fd))
closeSync(fd)
rmSync(outDir, {force: true})
