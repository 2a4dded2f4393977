// Retry wrapper: repeats a failed storage call when, and only when, the error
// says it is transient (VdsnapError.retryable === true, set by the backend
// where the error happened). Everything else (not found, auth, no space,
// access denied, plain programming errors) passes through on the first try.
//
// Backoff is exponential with "full jitter": before attempt n+1 it sleeps
// random() * min(maxDelay, baseDelay * 2^(n-1)), which spreads retries of many
// concurrent transfers apart. Both the number of attempts and the total time
// spent (including the next sleep) are bounded. Clock, sleep and randomness
// are injected so tests run instantly and deterministically.
//
// Every verb of the Backend contract is safe to repeat (save replaces
// atomically, remove ignores a missing object), so retrying whole calls is
// sound. list() is retried by restarting the listing and skipping every name
// up to the last one yielded: backends list in name order (types.ts), so
// one name is all it remembers however long the listing, and callers never
// see an entry twice. A backend that breaks the order is an error, not a
// silent gap on resume.
import {setTimeout as delay} from 'node:timers/promises'
import {VdsnapError} from '../errors.js'
import {compareNames, type ByteRange, type ObjectInfo, type StorageBackend, type TempObject} from './types.js'

export interface RetryOptions {
  /** Total attempts including the first; default 8. */
  maxAttempts?: number
  /** Give up when the next sleep would end later than this after the first attempt; default 120 000 ms. */
  maxElapsedMs?: number
  /** First backoff ceiling; default 250 ms. */
  baseDelayMs?: number
  /** Largest backoff ceiling; default 30 000 ms. */
  maxDelayMs?: number
  sleep?: (ms: number) => Promise<void>
  random?: () => number
  now?: () => number
  /** Called before each sleep, e.g. to log "retrying in 1.2 s". */
  onRetry?: (info: {operation: string; attempt: number; delayMs: number; error: VdsnapError}) => void
}

export function isRetryable(err: unknown): err is VdsnapError {
  return err instanceof VdsnapError && err.retryable === true
}

export class RetryBackend implements StorageBackend {
  readonly create?: () => Promise<void>
  private readonly opts: Required<Omit<RetryOptions, 'onRetry'>> & Pick<RetryOptions, 'onRetry'>

  constructor(
    private readonly inner: StorageBackend,
    options: RetryOptions = {},
  ) {
    this.opts = {
      maxAttempts: options.maxAttempts ?? 8,
      maxElapsedMs: options.maxElapsedMs ?? 120_000,
      baseDelayMs: options.baseDelayMs ?? 250,
      maxDelayMs: options.maxDelayMs ?? 30_000,
      sleep: options.sleep ?? ((ms) => delay(ms)),
      random: options.random ?? Math.random,
      now: options.now ?? Date.now,
      onRetry: options.onRetry,
    }
    if (inner.create) this.create = () => this.run('create', () => inner.create!())
  }

  get location(): string {
    return this.inner.location
  }

  get isLocal(): boolean | undefined {
    return this.inner.isLocal
  }

  async flush(): Promise<void> {
    await this.inner.flush?.()
  }

  get listTemps(): (() => AsyncIterable<TempObject>) | undefined {
    const inner = this.inner
    return inner.listTemps ? () => inner.listTemps!() : undefined
  }

  /** Throws the last error when it is permanent or the attempt/time budget is spent. */
  async run<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    const start = this.opts.now()
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn()
      } catch (err) {
        const wait = this.nextDelay(err, attempt, start)
        if (wait === undefined) throw err
        this.opts.onRetry?.({operation, attempt, delayMs: wait, error: err as VdsnapError})
        await this.opts.sleep(wait)
      }
    }
  }

  /** The sleep before the next attempt, or undefined to give up. */
  private nextDelay(err: unknown, attempt: number, start: number): number | undefined {
    if (!isRetryable(err) || attempt >= this.opts.maxAttempts) return undefined
    const ceiling = Math.min(this.opts.maxDelayMs, this.opts.baseDelayMs * 2 ** (attempt - 1))
    const wait = Math.floor(this.opts.random() * ceiling)
    if (this.opts.now() + wait - start > this.opts.maxElapsedMs) return undefined
    return wait
  }

  /** Throws the backend's error once retries are exhausted; safe to retry. */
  save(name: string, data: Buffer): Promise<void> {
    return this.run(`save ${name}`, () => this.inner.save(name, data))
  }

  /** Throws NotFoundError (never retried) for a missing object. */
  load(name: string, range?: ByteRange): Promise<Buffer> {
    return this.run(`load ${name}`, () => this.inner.load(name, range))
  }

  stat(name: string): Promise<ObjectInfo | null> {
    return this.run(`stat ${name}`, () => this.inner.stat(name))
  }

  remove(name: string): Promise<void> {
    return this.run(`remove ${name}`, () => this.inner.remove(name))
  }

  /** Restarts a failed listing after the last name yielded (backends list in name order). */
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    let last: string | undefined
    const start = this.opts.now()
    for (let attempt = 1; ; attempt++) {
      const resumeAfter = last
      try {
        for await (const info of this.inner.list(prefix)) {
          if (resumeAfter !== undefined && compareNames(info.name, resumeAfter) <= 0) continue
          if (last !== undefined && compareNames(info.name, last) <= 0) {
            throw new VdsnapError(`listing ${this.location}/${prefix}: "${info.name}" came after "${last}": the storage does not list in name order`)
          }
          last = info.name
          yield info
        }
        return
      } catch (err) {
        const wait = this.nextDelay(err, attempt, start)
        if (wait === undefined) throw err
        this.opts.onRetry?.({operation: `list ${prefix}`, attempt, delayMs: wait, error: err as VdsnapError})
        await this.opts.sleep(wait)
      }
    }
  }

  close(): Promise<void> {
    return this.inner.close()
  }
}
