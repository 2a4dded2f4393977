// Builds the changed copies of the benchmark base image.
// Usage: node bench/variants.mjs BASE.img OUTDIR name:percent:seed ...
// For each variant: copies BASE sparsely to OUTDIR/name.img, overwrites
// `percent`% of the base's non-zero 64 KiB pieces (chosen with a seeded PRNG)
// with seeded pseudo-random bytes, and writes OUTDIR/name.ranges.json, the
// overwritten ranges as [{offset, length}] (sorted, adjacent pieces merged).
import {createCipheriv, createHash} from 'node:crypto'
import {execFileSync} from 'node:child_process'
import {closeSync, openSync, readSync, writeFileSync, writeSync, fstatSync, renameSync} from 'node:fs'
import {join} from 'node:path'

const PIECE = 64 * 1024
const [base, outDir, ...specs] = process.argv.slice(2)
if (!base || !outDir || specs.length === 0) {
  console.error('usage: node bench/variants.mjs BASE.img OUTDIR name:percent:seed ...')
  process.exit(2)
}

// 1. The non-zero 64 KiB pieces of the base image.
const fd = openSync(base, 'r')
const size = fstatSync(fd).size
const buf = Buffer.alloc(16 * 1024 * 1024)
const zero = Buffer.alloc(PIECE)
const nonZero = []
for (let pos = 0; pos < size; ) {
  const n = readSync(fd, buf, 0, Math.min(buf.length, size - pos), pos)
  if (n <= 0) break
  for (let o = 0; o + PIECE <= n; o += PIECE) {
    if (!buf.subarray(o, o + PIECE).equals(zero)) nonZero.push(pos + o)
  }
  pos += n
}
closeSync(fd)
console.error(`variants: ${nonZero.length} non-zero 64 KiB pieces (${(nonZero.length * PIECE / 1e9).toFixed(2)} GB) in ${base}`)

// Seeded PRNG (mulberry32) for the choice of pieces.
function mulberry32(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const summary = {}
for (const spec of specs) {
  const [name, pctText, seedText] = spec.split(':')
  const pct = Number(pctText)
  const seed = Number(seedText)
  const count = Math.round((nonZero.length * pct) / 100)
  const rand = mulberry32(seed)
  // Partial Fisher-Yates over a copy of the piece list.
  const pool = nonZero.slice()
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(rand() * (pool.length - i))
    ;[pool[i], pool[j]] = [pool[j], pool[i]]
  }
  const chosen = pool.slice(0, count).sort((a, b) => a - b)
  const out = join(outDir, `${name}.img`)
  const tmp = `${out}.tmp`
  execFileSync('cp', ['--sparse=always', base, tmp])
  // Seeded pseudo-random bytes: AES-256-CTR keystream keyed by the seed.
  const key = createHash('sha256').update(`vdsnap-bench-${seed}`).digest()
  const ks = createCipheriv('aes-256-ctr', key, Buffer.alloc(16))
  const wfd = openSync(tmp, 'r+')
  for (const off of chosen) writeSync(wfd, ks.update(zero), 0, PIECE, off)
  closeSync(wfd)
  renameSync(tmp, out)
  const ranges = []
  for (const off of chosen) {
    const last = ranges[ranges.length - 1]
    if (last && last.offset + last.length === off) last.length += PIECE
    else ranges.push({offset: off, length: PIECE})
  }
  writeFileSync(join(outDir, `${name}.ranges.json`), JSON.stringify(ranges))
  summary[name] = {percent: pct, seed, pieces: count, bytes: count * PIECE, ranges: ranges.length}
  console.error(`variants: ${name}: ${count} pieces (${(count * PIECE / 1e6).toFixed(1)} MB) overwritten, seed ${seed}`)
}
writeFileSync(join(outDir, 'variants.json'), JSON.stringify({base, nonZeroPieces: nonZero.length, pieceSize: PIECE, variants: summary}, null, 2))
