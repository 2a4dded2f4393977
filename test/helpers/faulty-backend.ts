// Fault injection for storage tests: wraps a Backend and makes the Nth call
// of a method (1-based, counted per method) throw a given error. list()
// counts one call per listing and fails after yielding `afterItems` entries.
import type {ByteRange, ObjectInfo, StorageBackend} from '../../src/backend/types.js'

type Method = 'save' | 'load' | 'stat' | 'list' | 'remove'

interface Fault {
  method: Method
  call: number
  error: Error
  afterItems?: number
}

export class FaultyBackend implements StorageBackend {
  readonly calls: Record<Method, number> = {save: 0, load: 0, stat: 0, list: 0, remove: 0}
  private readonly faults: Fault[] = []

  constructor(private readonly inner: StorageBackend) {}

  get location(): string {
    return this.inner.location
  }

  /** Makes call number `call` of `method` throw `error`. */
  failOn(method: Method, call: number, error: Error, afterItems = 0): this {
    this.faults.push({method, call, error, afterItems})
    return this
  }

  /** Makes calls number from..to (inclusive) of `method` throw `error`. */
  failCalls(method: Method, from: number, to: number, error: Error): this {
    for (let c = from; c <= to; c++) this.failOn(method, c, error)
    return this
  }

  private fault(method: Method): Fault | undefined {
    const n = ++this.calls[method]
    return this.faults.find((f) => f.method === method && f.call === n)
  }

  async save(name: string, data: Buffer): Promise<void> {
    const f = this.fault('save')
    if (f) throw f.error
    return this.inner.save(name, data)
  }

  async load(name: string, range?: ByteRange): Promise<Buffer> {
    const f = this.fault('load')
    if (f) throw f.error
    return this.inner.load(name, range)
  }

  async stat(name: string): Promise<ObjectInfo | null> {
    const f = this.fault('stat')
    if (f) throw f.error
    return this.inner.stat(name)
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const f = this.fault('list')
    let n = 0
    for await (const info of this.inner.list(prefix)) {
      if (f && n === f.afterItems) throw f.error
      n++
      yield info
    }
    if (f && n <= (f.afterItems ?? 0)) throw f.error
  }

  async remove(name: string): Promise<void> {
    const f = this.fault('remove')
    if (f) throw f.error
    return this.inner.remove(name)
  }

  close(): Promise<void> {
    return this.inner.close()
  }
}
