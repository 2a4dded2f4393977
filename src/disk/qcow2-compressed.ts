// Decompression of qcow2 compressed clusters. A compressed cluster is a raw
// deflate stream (compression type 0) or one zstd frame (type 1), padded to
// whole sectors, so trailing bytes after the stream are expected. The output
// is always exactly one cluster; anything else is a corrupt image. Both
// codecs run synchronously: per-cluster calls to the async zlib API measured
// twice as slow on this machine. zstd is driven through the streaming API
// with a cluster-sized output buffer, so a corrupt frame header can never
// make us allocate more than that.
import {createRequire} from 'node:module'
import {inflateRawSync} from 'node:zlib'
import {ImageFormatError} from '../errors.js'
import {COMPRESSION_ZSTD} from './qcow2-header.js'

type ZstdBinding = typeof import('zstd-napi/binding.js')

let zstd: ZstdBinding | undefined
let dctx: InstanceType<ZstdBinding['DCtx']> | undefined

function zstdContext(): InstanceType<ZstdBinding['DCtx']> {
  if (!dctx) {
    zstd = createRequire(import.meta.url)('zstd-napi/binding.js') as ZstdBinding
    dctx = new zstd.DCtx()
  }
  return dctx
}

/** Decompresses one cluster; throws ImageFormatError unless it yields exactly `clusterSize` bytes. */
export function decompressCluster(path: string, type: number, data: Buffer, clusterSize: number, guest: number): Buffer {
  try {
    const out = type === COMPRESSION_ZSTD ? zstdCluster(data, clusterSize) : inflateRawSync(data, {maxOutputLength: clusterSize})
    if (out.length !== clusterSize) throw new Error(`${out.length} bytes instead of ${clusterSize}`)
    return out
  } catch (e) {
    throw new ImageFormatError(path, `compressed cluster at guest offset ${guest} is corrupt (${(e as Error).message})`, {cause: e})
  }
}

function zstdCluster(data: Buffer, clusterSize: number): Buffer {
  const ctx = zstdContext()
  ctx.reset(zstd!.ResetDirective.sessionOnly)
  const out = Buffer.alloc(clusterSize)
  let produced = 0
  let src = data
  while (produced < clusterSize) {
    const [ret, wrote, consumed] = ctx.decompressStream(out.subarray(produced), src)
    produced += wrote
    src = src.subarray(consumed)
    if (ret === 0) break
    if (wrote === 0 && consumed === 0) throw new Error('truncated zstd frame')
  }
  return out.subarray(0, produced)
}
