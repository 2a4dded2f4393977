// A fixed pool of worker threads for the per-block CPU work, as typed
// methods: hash, pack, unpack (pool-protocol.ts). Requests go to the worker
// with the fewest outstanding requests; each reply settles one promise. The
// caller bounds how much is in flight (the pool does not queue without limit
// on its own: see backup/restore pipelines).
//
// Errors thrown in a worker come back as the same class with the same
// fields. A worker that dies fails every pending request, and every later
// one, with one error naming the cause. Idle workers do not keep the process
// alive (they are referenced only while a request is pending), so a pool
// its owner forgot to close never hangs a command at exit.
import {availableParallelism} from 'node:os'
import {Worker} from 'node:worker_threads'
import {VdsnapError} from '../errors.js'
import {workerScript} from '../flow/worker-script.js'
import {deserializeError, type Args, type Method, type PackItem, type Result, type UnpackItem, type UnpackOptions, type WorkerReply, type WorkerRequest} from './pool-protocol.js'

export interface PoolKeys {
  idKey?: Buffer
  encKey?: Buffer
}

interface Pending {
  worker: number
  resolve(result: unknown): void
  reject(err: Error): void
}

export class ChunkPool {
  private readonly workers: Worker[] = []
  private readonly load: number[] = []
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private failed?: Error
  private closing = false

  constructor(keys: PoolKeys, level: number, size = Math.max(1, Math.min(availableParallelism(), 8))) {
    const path = workerScript(import.meta.url, 'chunk-worker', 'chunk worker')
    for (let i = 0; i < size; i++) {
      const w = new Worker(path, {workerData: {idKey: keys.idKey, encKey: keys.encKey, level}})
      w.on('message', (reply: WorkerReply) => this.settle(i, reply))
      w.on('error', (err) => this.fail(i, `crashed: ${err.message}`, err))
      w.on('exit', (code) => this.closing || this.fail(i, `exited with code ${code}`))
      w.unref()
      this.workers.push(w)
      this.load.push(0)
    }
  }

  get size(): number {
    return this.workers.length
  }

  /** Digests of every `blockSize` block of buf[0, length); `buf` moves to the worker and comes back in the result. */
  hash(buf: ArrayBuffer, length: number, blockSize: number): Promise<Result<'hash'>> {
    return this.call('hash', {buf, length, blockSize}, [buf])
  }

  /** Chunk objects of the items' plaintexts in `buf` (which moves to the worker and comes back). */
  pack(buf: ArrayBuffer, items: PackItem[]): Promise<Result<'pack'>> {
    return this.call('pack', {buf, items}, [buf])
  }

  /**
   * The verified plaintext of every item. With `transfer`, the items' data
   * move to the worker (each must own its whole ArrayBuffer); without, they
   * are copied and stay usable here.
   */
  async unpack(items: UnpackItem[], opts: UnpackOptions & {transfer?: boolean}): Promise<Uint8Array[]> {
    const transfer = opts.transfer ? items.map((i) => i.data.buffer as ArrayBuffer) : []
    const {plain} = await this.call('unpack', {items, maxSize: opts.maxSize, rehash: opts.rehash}, transfer)
    return plain
  }

  /** unpack with the caller's own transfer list (restore's batches: objects that move, and spare buffers for the plaintexts). */
  async unpackBatch(args: Args<'unpack'>, transfer: ArrayBuffer[]): Promise<Uint8Array[]> {
    const {plain} = await this.call('unpack', args, transfer)
    return plain
  }

  private call<M extends Method>(op: M, args: Args<M>, transfer: ArrayBuffer[]): Promise<Result<M>> {
    if (this.failed) return Promise.reject(this.failed)
    if (this.closing) return Promise.reject(new VdsnapError('chunk pool used after close'))
    let best = 0
    for (let i = 1; i < this.load.length; i++) if (this.load[i]! < this.load[best]!) best = i
    const id = this.nextId++
    if (this.load[best]!++ === 0) this.workers[best]!.ref()
    return new Promise<Result<M>>((resolve, reject) => {
      this.pending.set(id, {worker: best, resolve: resolve as (r: unknown) => void, reject})
      this.workers[best]!.postMessage({id, op, args} as WorkerRequest, transfer)
    })
  }

  private settle(worker: number, reply: WorkerReply): void {
    const p = this.pending.get(reply.id)
    if (!p) return
    this.pending.delete(reply.id)
    this.release(worker)
    if (reply.ok) p.resolve(reply.result)
    else p.reject(deserializeError(reply.error))
  }

  private release(worker: number): void {
    if (--this.load[worker]! === 0) this.workers[worker]?.unref()
  }

  private fail(worker: number, why: string, cause?: Error): void {
    this.failed ??= new VdsnapError(`chunk worker failed: worker ${worker + 1} of ${this.workers.length} ${why}`, {cause})
    for (const [id, p] of this.pending) {
      this.pending.delete(id)
      this.release(p.worker)
      p.reject(this.failed)
    }
  }

  async close(): Promise<void> {
    this.closing = true
    const closed = new VdsnapError('chunk pool closed')
    for (const [id, p] of this.pending) {
      this.pending.delete(id)
      p.reject(closed)
    }
    // A worker terminated while it holds requests (a read failed and the caller
    // closes with decodes still in flight) sometimes never emits 'exit' on
    // Node 20, and with nothing else holding the event loop the process then
    // ends with an unsettled await (exit code 13) instead of its error. Wait
    // for 'exit' at most a second, with a timer that holds the loop.
    let timer: NodeJS.Timeout | undefined
    const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, 1000)))
    await Promise.race([Promise.all(this.workers.map((w) => w.terminate())), grace])
    clearTimeout(timer)
    this.workers.length = 0
  }
}
