// The BENCHMARKS.md section for the archive figures, from
// bench/results/archive.json (written by bench/archive.mjs). bench.mjs
// renders it with the other sections; run alone, this prints it.
import {readFileSync} from 'node:fs'
import {dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'

const s = (v) => (v === null || v === undefined ? '–' : v.toFixed(2))
const mib = (b) => `${(b / 2 ** 20).toFixed(0)} MiB`
const rate = (bytes, wall) => (wall ? `${(bytes / 2 ** 20 / wall).toFixed(0)} MiB/s` : '–')
const verdict = (v, ok) => (v === null ? '–' : `${v.toFixed(2)} ${ok(v) ? '(met)' : '(**not met**)'}`)

/** Markdown lines for BENCHMARKS.md. */
export function renderArchive(R) {
  const r = R.rows
  const z = R.sizes
  const o = ['## Archives: export, restore --from-archive, import (`npm run bench:archive`)', '']
  o.push(
    `${R.sizeMiB ? `The first ${R.sizeMiB} MiB of ` : ''}${R.image.split('/').pop()} (${mib(z.image)}), one snapshot in a fresh encrypted repository: ` +
      `${z.chunks} chunks, ${mib(z.chunkBytes)} stored. Measured ${R.measured.slice(0, 10)} on ${R.machine.cpus} CPUs (${R.machine.model}), ` +
      `load average ${R.machine.loadAverage.join(' ')}, Node ${R.machine.node}; files in the page cache. ` +
      'The I/O limit is `cat` of the repository\'s chunk files; the first export of a snapshot decodes every chunk and computes the image SHA-256 ' +
      '(serial: about 0.6 s of one core per GiB), later exports copy the stored chunk objects (docs/FORMAT.md §12.5). ' +
      'Rates are over the stored chunk bytes for cat and chunk export, over the image size otherwise.',
    '',
    '| step | wall (s) | CPU (s) | peak RSS | rate |',
    '|---|---|---|---|---|',
  )
  const over = {cat: z.chunkBytes, exportFirst: z.chunkBytes, exportNull: z.chunkBytes, exportFile: z.chunkBytes}
  for (const [k, row] of Object.entries(r)) {
    o.push(`| ${row.label} | ${s(row.wall)} | ${s(row.cpu)} | ${row.rss ? mib(row.rss) : '–'} | ${rate(over[k] ?? z.image, row.wall)} |`)
  }
  const q = R.ratios
  o.push(
    '',
    '| target | figure |',
    '|---|---|',
    `| chunk export ≥ 80% of cat's rate (export to /dev/null, hash recorded) | ${verdict(q.exportRateShareOfCat, (v) => v >= 0.8)} |`,
    `| the same, first export (decode + image SHA-256) | ${s(q.exportFirstRateShareOfCat)} |`,
    `| restore --from-archive FILE ≤ 1.2 × restore from the repository | ${verdict(q.restoreArchiveOverRepo, (v) => v <= 1.2)} |`,
    `| restore --from-archive - (pipe) ≤ 1.2 × restore | ${verdict(q.restorePipeOverRepo, (v) => v <= 1.2)} |`,
    `| archive size ≤ 1.01 × its chunks (${mib(z.archiveBytes)} / ${mib(z.chunkBytes)}) | ${verdict(q.archiveOverChunks, (v) => v <= 1.01)} |`,
    '',
  )
  return o
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
  console.log(renderArchive(JSON.parse(readFileSync(join(root, 'bench/results/archive.json'), 'utf8'))).join('\n'))
}
