// An in-memory Backend for wrapper tests: no I/O, instant, inspectable.
import {NotFoundError} from '../../src/errors.js'
import {checkRangeInside, validateRange} from '../../src/backend/range.js'
import {compareNames, type ByteRange, type ObjectInfo, type StorageBackend} from '../../src/backend/types.js'

export class MemoryBackend implements StorageBackend {
  readonly location = 'memory:'
  readonly objects = new Map<string, Buffer>()

  async save(name: string, data: Buffer): Promise<void> {
    this.objects.set(name, Buffer.from(data))
  }

  async load(name: string, range?: ByteRange): Promise<Buffer> {
    const data = this.objects.get(name)
    if (!data) throw new NotFoundError(`${name} is missing`)
    if (!range) return data
    validateRange(name, range)
    checkRangeInside(name, this.location, range, data.length)
    return data.subarray(range.offset, range.offset + range.length)
  }

  async stat(name: string): Promise<ObjectInfo | null> {
    const data = this.objects.get(name)
    return data ? {name, size: data.length} : null
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const names = [...this.objects.keys()].filter((n) => n.startsWith(prefix)).sort(compareNames)
    for (const name of names) {
      const data = this.objects.get(name)
      if (data) yield {name, size: data.length}
    }
  }

  async remove(name: string): Promise<void> {
    this.objects.delete(name)
  }

  async close(): Promise<void> {}
}
