// Worker thread: the CPU-heavy per-block work (zero check, digest, zstd,
// AES-GCM, and the reverse on restore). Stateless: every message carries
// its data and gets one reply; buffers are transferred both ways, never copied.
import {parentPort, workerData} from 'node:worker_threads'
import {DIGEST_SIZE, chunkDigest, isAllZero} from './digest.js'
import {decodeObject, encodeObject, ObjectKind} from './object-codec.js'
import type {WorkerReply, WorkerRequest} from './pool-protocol.js'

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

function handle(req: WorkerRequest): {reply: WorkerReply; transfer: ArrayBuffer[]} {
  switch (req.op) {
    case 'hash': {
      const buf = Buffer.from(req.buf, 0, req.length)
      const count = Math.ceil(buf.length / req.blockSize)
      const digests = new Uint8Array(count * DIGEST_SIZE) // all-zero id = zero block
      for (let i = 0; i < count; i++) {
        const block = buf.subarray(i * req.blockSize, Math.min((i + 1) * req.blockSize, buf.length))
        if (!isAllZero(block)) digests.set(chunkDigest(block, idKey), i * DIGEST_SIZE)
      }
      return {reply: {id: req.id, ok: true, digests, buf: req.buf}, transfer: [req.buf, digests.buffer as ArrayBuffer]}
    }
    case 'pack': {
      const buf = Buffer.from(req.buf)
      const out: Uint8Array[] = []
      for (const {start, end, name} of req.items) {
        const enc = encodeObject(ObjectKind.Chunk, name, buf.subarray(start, end), {level, key: encKey})
        out.push(own(enc))
      }
      return {reply: {id: req.id, ok: true, objects: out, buf: req.buf}, transfer: [req.buf, ...out.map((o) => o.buffer as ArrayBuffer)]}
    }
    case 'unpack': {
      const plain: Uint8Array[] = []
      for (const {name, data, digest} of req.items) {
        const spare = req.spare?.pop()
        const into = spare ? Buffer.from(spare) : undefined
        const body = decodeObject(ObjectKind.Chunk, name, Buffer.from(data.buffer, data.byteOffset, data.byteLength), encKey, req.maxSize, into)
        if ((req.rehash || !encKey) && !chunkDigest(body, idKey).equals(digest)) {
          throw Object.assign(new Error(`${name} does not match its digest (corrupt chunk)`), {dataError: true, hint: 'run "vdsnap check --read-data" to list damaged chunks (plain check reads no chunk)'})
        }
        plain.push(inSpare(body, spare) ?? own(body))
      }
      return {reply: {id: req.id, ok: true, plain}, transfer: plain.map((p) => p.buffer as ArrayBuffer)}
    }
  }
}

parentPort!.on('message', (req: WorkerRequest) => {
  try {
    const {reply, transfer} = handle(req)
    parentPort!.postMessage(reply, transfer)
  } catch (e) {
    const err = e as Error & {dataError?: boolean; kind?: string; hint?: string}
    parentPort!.postMessage({
      id: req.id,
      ok: false,
      message: err.message,
      dataError: err.dataError === true || err.kind === 'data',
      hint: err.hint,
    } satisfies WorkerReply)
  }
})
