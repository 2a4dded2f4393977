// The image SHA-256, computed in its own worker thread (image-hash-worker.ts)
// from the blocks in offset order. update() copies a block to the worker
// (a block may still be in the caller's cache, so it is not transferred)
// or, for a zero block, sends only its length; consecutive zero blocks are
// sent as one run. At most MAX_QUEUED bytes wait in the worker: past that,
// update() waits for its acknowledgements, so memory stays bounded when
// hashing is the slower side.
import {Worker} from 'node:worker_threads'
import {VdsnapError} from '../errors.js'
import {workerScript} from '../flow/worker-script.js'
import type {HashReply, HashRequest} from './image-hash-worker.js'

const MAX_QUEUED = 64 * 1024 * 1024

export class ImageHasher {
  private readonly worker = new Worker(workerScript(import.meta.url, 'image-hash-worker', 'image hash worker'))
  private queued = 0
  private zeroRun = 0
  private failed: Error | null = null
  private wake: (() => void) | null = null
  private result: ((hex: string) => void) | null = null

  constructor() {
    this.worker.on('message', (r: HashReply) => {
      if (r.op === 'ack') {
        this.queued -= r.bytes
        if (this.queued <= MAX_QUEUED / 2) this.release()
      } else this.result?.(r.hex)
    })
    this.worker.on('error', (e) => {
      this.failed = new VdsnapError(`image hash worker failed: ${e.message}`, {cause: e})
      this.release()
    })
  }

  private release(): void {
    const w = this.wake
    this.wake = null
    w?.()
  }

  private post(req: HashRequest, bytes: number): void {
    this.queued += bytes
    this.worker.postMessage(req)
  }

  /** The next `length` bytes of the image: `data`, or zeros when null. */
  async update(data: Buffer | null, length: number): Promise<void> {
    if (this.failed) throw this.failed
    if (data === null) {
      this.zeroRun += length
      return
    }
    this.flushZeros()
    this.post({op: 'data', data}, data.length)
    while (this.queued > MAX_QUEUED && !this.failed) await new Promise<void>((r) => (this.wake = r))
    if (this.failed) throw this.failed
  }

  private flushZeros(): void {
    if (this.zeroRun > 0) this.post({op: 'zeros', length: this.zeroRun}, this.zeroRun)
    this.zeroRun = 0
  }

  /** The SHA-256 (hex) of everything given, in order. */
  async digest(): Promise<string> {
    if (this.failed) throw this.failed
    this.flushZeros()
    const hex = await new Promise<string>((resolve, reject) => {
      this.result = resolve
      this.worker.once('error', reject)
      this.worker.postMessage({op: 'digest'} satisfies HashRequest)
    })
    await this.close()
    return hex
  }

  async close(): Promise<void> {
    await this.worker.terminate()
  }
}
