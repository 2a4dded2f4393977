// Worker thread: the CPU-heavy per-block work (zero check, digest, zstd,
// AES-GCM, and the reverse on restore). Stateless: every message carries
// its data and gets one reply; buffers are transferred both ways, never
// copied. A thrown error goes back serialized (pool-protocol.ts), so the
// pool rethrows the same class with the same code, hint and fields.
import {parentPort, workerData} from 'node:worker_threads'
import {DataError} from '../errors.js'
import {DIGEST_SIZE, chunkDigest, isAllZero} from './digest.js'
import {decodeObject, encodeObject, ObjectKind} from './object-codec.js'
import {serializeError, type Args, type Method, type Result, type WorkerReply, type WorkerRequest} from './pool-protocol.js'

const idKey: Buffer | undefined = workerData?.idKey ? Buffer.from(workerData.idKey) : undefined
const encKey: Buffer | undefined = workerData?.encKey ? Buffer.from(workerData.encKey) : undefined
const level: number = workerData?.level ?? 3

/** A view that owns its whole ArrayBuffer, so it can be transferred without dragging a shared pool along. */
function own(b: Buffer): Uint8Array {
  if (b.byteOffset === 0 && b.buffer.byteLength === b.length) return new Uint8Array(b.buffer, 0, b.length)
  const copy = new Uint8Array(b.length)
  copy.set(b)
  return copy
}

/** `body` as a view of the spare buffer `ab`: decoded there already, or copied into it; undefined without a spare that fits. */
function inSpare(body: Buffer, ab: ArrayBuffer | undefined): Uint8Array | undefined {
  if (!ab || ab.byteLength < body.length) return undefined
  const out = new Uint8Array(ab, 0, body.length)
  if (body.buffer !== ab) out.set(body)
  return out
}

type Handler<M extends Method> = (args: Args<M>) => {result: Result<M>; transfer: ArrayBuffer[]}

const handlers: {[M in Method]: Handler<M>} = {
  hash({buf: ab, length, blockSize}) {
    const buf = Buffer.from(ab, 0, length)
    const count = Math.ceil(buf.length / blockSize)
    const digests = new Uint8Array(count * DIGEST_SIZE) // all-zero id = zero block
    for (let i = 0; i < count; i++) {
      const block = buf.subarray(i * blockSize, Math.min((i + 1) * blockSize, buf.length))
      if (!isAllZero(block)) digests.set(chunkDigest(block, idKey), i * DIGEST_SIZE)
    }
    return {result: {digests, buf: ab}, transfer: [ab, digests.buffer as ArrayBuffer]}
  },
  pack({buf: ab, items}) {
    const buf = Buffer.from(ab)
    const objects = items.map(({start, end, name}) => own(encodeObject(ObjectKind.Chunk, name, buf.subarray(start, end), {level, key: encKey})))
    return {result: {objects, buf: ab}, transfer: [ab, ...objects.map((o) => o.buffer as ArrayBuffer)]}
  },
  unpack({items, maxSize, rehash, spare}) {
    const plain = items.map(({name, data, digest}) => {
      const ab = spare?.pop()
      const body = decodeObject(ObjectKind.Chunk, name, Buffer.from(data.buffer, data.byteOffset, data.byteLength), encKey, maxSize, ab ? Buffer.from(ab) : undefined)
      if ((rehash || !encKey) && !chunkDigest(body, idKey).equals(digest)) {
        throw new DataError(`${name} does not match its digest (corrupt chunk)`, {hint: 'run "vdsnap check --read-data" to list damaged chunks (plain check reads no chunk)', code: 'CHUNK_CORRUPT', object: name})
      }
      return inSpare(body, ab) ?? own(body)
    })
    return {result: {plain}, transfer: plain.map((p) => p.buffer as ArrayBuffer)}
  },
}

parentPort!.on('message', (req: WorkerRequest) => {
  try {
    const {result, transfer} = (handlers[req.op] as Handler<Method>)(req.args)
    parentPort!.postMessage({id: req.id, ok: true, result} satisfies WorkerReply, transfer)
  } catch (e) {
    parentPort!.postMessage({id: req.id, ok: false, error: serializeError(e)} satisfies WorkerReply)
  }
})
