// A fixed pool of worker threads for the per-block CPU work. Requests go to
// the worker with the fewest outstanding requests; each reply settles one
// promise. The caller bounds how much is in flight (the pool does not queue
// without limit on its own: see backup/restore pipelines).
import {existsSync} from 'node:fs'
import {availableParallelism} from 'node:os'
import {dirname, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'
import {Worker} from 'node:worker_threads'
import {DataError, VdsnapError} from '../errors.js'
import type {WorkerReply, WorkerRequest} from './pool-protocol.js'

export interface PoolKeys {
  idKey?: Buffer
  encKey?: Buffer
}

interface Pending {
  resolve(reply: WorkerReply): void
  reject(err: Error): void
}

type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never
export type PoolRequest = DistributiveOmit<WorkerRequest, 'id'>

function workerPath(): string {
  const here = fileURLToPath(import.meta.url)
  const sibling = resolve(dirname(here), 'chunk-worker.js')
  if (existsSync(sibling)) return sibling
  // Running from TypeScript sources (tests): use the build's worker.
  const built = resolve(dirname(here), '../../dist/src/chunk/chunk-worker.js')
  if (existsSync(built)) return built
  throw new VdsnapError('chunk worker not found; run "npm run build" first')
}

export class ChunkPool {
  private readonly workers: Worker[] = []
  private readonly load: number[] = []
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private failed?: Error

  constructor(keys: PoolKeys, level: number, size = Math.max(1, Math.min(availableParallelism(), 8))) {
    const path = workerPath()
    for (let i = 0; i < size; i++) {
      const w = new Worker(path, {workerData: {idKey: keys.idKey, encKey: keys.encKey, level}})
      w.on('message', (reply: WorkerReply) => this.settle(i, reply))
      w.on('error', (err) => this.fail(err))
      this.workers.push(w)
      this.load.push(0)
    }
  }

  get size(): number {
    return this.workers.length
  }

  run(req: PoolRequest, transfer: ArrayBuffer[] = []): Promise<WorkerReply & {ok: true}> {
    if (this.failed) return Promise.reject(this.failed)
    let best = 0
    for (let i = 1; i < this.load.length; i++) if (this.load[i]! < this.load[best]!) best = i
    const id = this.nextId++
    this.load[best]!++
    return new Promise((resolve, reject) => {
      this.pending.set(id, {
        resolve: (r) => (r.ok ? resolve(r) : reject(r.dataError ? new DataError(r.message, {hint: r.hint}) : new VdsnapError(r.message, {hint: r.hint}))),
        reject,
      })
      this.workers[best]!.postMessage({...req, id} as WorkerRequest, transfer)
    })
  }

  private settle(worker: number, reply: WorkerReply): void {
    this.load[worker]!--
    const p = this.pending.get(reply.id)
    if (!p) return
    this.pending.delete(reply.id)
    p.resolve(reply)
  }

  private fail(err: Error): void {
    this.failed = new VdsnapError(`chunk worker failed: ${err.message}`, {cause: err})
    for (const p of this.pending.values()) p.reject(this.failed)
    this.pending.clear()
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()))
    this.workers.length = 0
  }
}
