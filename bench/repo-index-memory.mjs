// Memory of the in-memory repository index (src/repo/repo-index.ts) for a
// synthetic repository: VDSNAP_INDEX_CHUNKS chunks (default 10 million) in
// packs of 32 chunks (16 MiB packs of 512 KiB chunks), random ids. Reports
// the bytes the tables allocate (computed) and the growth of the process's
// ArrayBuffer memory and RSS (measured), per chunk, with and without
// reserve() (an index loader knows the count from the files' headers).
// `npm run build` first; run with `node --expose-gc bench/repo-index-memory.mjs`.
import {randomFillSync} from 'node:crypto'
import {dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const {RepoIndex} = await import(join(root, 'dist/src/repo/repo-index.js'))
const chunks = Number(process.env.VDSNAP_INDEX_CHUNKS ?? 10_000_000)
const PER_PACK = 32
const MiB = 1024 ** 2

function measure(reserve) {
  globalThis.gc?.()
  const before = process.memoryUsage()
  const index = new RepoIndex(reserve ? chunks : 0, reserve ? Math.ceil(chunks / PER_PACK) : 0)
  const ids = Buffer.allocUnsafe(32 * 65536)
  const pack = Buffer.allocUnsafe(32)
  let p = 0
  for (let i = 0; i < chunks; i++) {
    const k = i % 65536
    if (k === 0) randomFillSync(ids)
    if (i % PER_PACK === 0) p = index.packNumber(randomFillSync(pack))
    index.add(ids, p, (i % PER_PACK) * 300_000, 290_000, k * 32)
  }
  globalThis.gc?.()
  const after = process.memoryUsage()
  const row = {
    chunks,
    reserve,
    allocatedMiB: +(index.allocatedBytes / MiB).toFixed(1),
    allocatedPerChunk: +(index.allocatedBytes / chunks).toFixed(1),
    arrayBuffersPerChunk: +((after.arrayBuffers - before.arrayBuffers) / chunks).toFixed(1),
    rssMiB: +((after.rss - before.rss) / MiB).toFixed(1),
    count: index.chunkCount,
  }
  return row
}

for (const reserve of [true, false]) console.log(JSON.stringify(measure(reserve)))
