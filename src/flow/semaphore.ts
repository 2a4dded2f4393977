// A counting semaphore: bounds work in flight (bytes, tasks, connections)
// so memory stays flat whatever the size of the disk. The one semaphore of
// the code base: the scan's byte budgets, the NBD client's request slots and
// the storage concurrency wrapper all use it.
//
// Waiters are served in FIFO order, and a waiter at the head blocks those
// behind it even when they would fit: a large request is never starved by a
// stream of small ones.

export class Semaphore {
  private waiters: {n: number; resolve: () => void}[] = []

  constructor(private available: number) {
    if (!(available >= 1)) throw new RangeError(`a semaphore needs a capacity of at least 1, got ${available}`)
  }

  async acquire(n = 1): Promise<void> {
    if (this.waiters.length === 0 && this.available >= n) {
      this.available -= n
      return
    }
    await new Promise<void>((resolve) => this.waiters.push({n, resolve}))
  }

  release(n = 1): void {
    this.available += n
    while (this.waiters.length > 0 && this.available >= this.waiters[0]!.n) {
      const w = this.waiters.shift()!
      this.available -= w.n
      w.resolve()
    }
  }

  /** Runs `fn` holding one unit (a slot). */
  with<T>(fn: () => Promise<T>): Promise<T> {
    return this.use(1, fn)
  }

  async use<T>(n: number, fn: () => Promise<T>): Promise<T> {
    await this.acquire(n)
    try {
      return await fn()
    } finally {
      this.release(n)
    }
  }
}

/** Runs tasks with at most `limit` in flight; rejects with the first error after all started tasks settle. */
export class TaskGroup {
  private readonly sem: Semaphore
  private readonly running = new Set<Promise<void>>()
  private error: unknown

  constructor(limit: number) {
    this.sem = new Semaphore(limit)
  }

  async spawn(fn: () => Promise<void>): Promise<void> {
    if (this.error !== undefined) throw this.error
    await this.sem.acquire()
    if (this.error !== undefined) {
      this.sem.release()
      throw this.error
    }
    const p: Promise<void> = fn()
      .catch((e) => {
        if (this.error === undefined) this.error = e
      })
      .finally(() => {
        this.running.delete(p)
        this.sem.release()
      })
    this.running.add(p)
  }

  async wait(): Promise<void> {
    while (this.running.size > 0) await Promise.all([...this.running])
    if (this.error !== undefined) throw this.error
  }
}
