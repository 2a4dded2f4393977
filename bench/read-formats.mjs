// Read throughput of each native reader against `qemu-img convert -O raw`
// of the same file, in the same run. Usage: node bench/read-formats.mjs RAW_IMAGE [WORKDIR]
// Converts RAW_IMAGE into each format with qemu-img, then times (a) vdsnap's
// reader over every allocated range (4 MiB reads) and (b) qemu-img convert
// of the converted file back to raw in WORKDIR. Prints a JSON table.
import {execFileSync} from 'node:child_process'
import {mkdirSync, rmSync} from 'node:fs'
import {join} from 'node:path'
import {openImage} from '../dist/src/disk/open.js'

const [raw, work = '/var/tmp/vdsnap-read-bench'] = process.argv.slice(2)
if (!raw) throw new Error('usage: node bench/read-formats.mjs RAW_IMAGE [WORKDIR]')
mkdirSync(work, {recursive: true})
const formats = [
  ['raw', null],
  ['qcow2', ['-O', 'qcow2']],
  ['qcow2-zstd', ['-O', 'qcow2', '-c', '-o', 'compression_type=zstd']],
  ['vmdk', ['-O', 'vmdk']],
  ['vmdk-stream', ['-O', 'vmdk', '-o', 'subformat=streamOptimized']],
  ['vhd', ['-O', 'vpc', '-o', 'force_size=on']],
  ['vhdx', ['-O', 'vhdx']],
]
const secs = (t0) => Number(process.hrtime.bigint() - t0) / 1e9

async function readAll(path) {
  const img = await openImage(path)
  const buf = Buffer.allocUnsafe(4 << 20)
  let bytes = 0
  const t0 = process.hrtime.bigint()
  for (const r of await img.allocatedRanges()) {
    for (let off = r.offset; off < r.offset + r.length; off += buf.length) {
      const n = Math.min(buf.length, r.offset + r.length - off)
      await img.read(buf.subarray(0, n), off, n)
      bytes += n
    }
  }
  const s = secs(t0)
  await img.close()
  return {bytes, s}
}

const rows = []
for (const [name, args] of formats) {
  const file = args ? join(work, `img.${name}`) : raw
  if (args) execFileSync('qemu-img', ['convert', '-f', 'raw', ...args, raw, file])
  execFileSync('cat', [file], {stdio: ['ignore', 'ignore', 'inherit'], maxBuffer: 1 << 20})
  const ours = await readAll(file)
  const out = join(work, 'out.raw')
  const t0 = process.hrtime.bigint()
  execFileSync('qemu-img', ['convert', '-O', 'raw', file, out])
  const qemu = secs(t0)
  rmSync(out, {force: true})
  rows.push({format: name, readGiB: +(ours.bytes / 2 ** 30).toFixed(2), vdsnapS: +ours.s.toFixed(2), qemuConvertS: +qemu.toFixed(2), speedVsQemu: +(qemu / ours.s).toFixed(2)})
  if (args) rmSync(file, {force: true})
  console.error(JSON.stringify(rows[rows.length - 1]))
}
console.log(JSON.stringify({load: execFileSync('cat', ['/proc/loadavg']).toString().trim(), rows}, null, 2))
