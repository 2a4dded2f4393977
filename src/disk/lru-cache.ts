// A small least-recently-used map for L2 tables, grain tables, decompressed
// clusters, BAT pages and sector bitmaps. Invariant: never holds more than
// `capacity` entries, so reader memory stays flat however large the image is.
export class LruCache<K, V> {
  private readonly map = new Map<K, V>()

  constructor(private readonly capacity: number) {}

  get(key: K): V | undefined {
    const v = this.map.get(key)
    if (v !== undefined) {
      this.map.delete(key)
      this.map.set(key, v)
    }
    return v
  }

  /** Whether `key` is cached, without making it more recent. */
  has(key: K): boolean {
    return this.map.has(key)
  }

  delete(key: K): boolean {
    return this.map.delete(key)
  }

  set(key: K, value: V): void {
    this.map.delete(key)
    this.map.set(key, value)
    while (this.map.size > this.capacity) {
      const oldest = this.map.keys().next().value as K
      this.map.delete(oldest)
    }
  }

  /** The cached value for `key`, loading and caching it on a miss. */
  async getOrLoad(key: K, load: () => Promise<V>): Promise<V> {
    const hit = this.get(key)
    if (hit !== undefined) return hit
    const v = await load()
    this.set(key, v)
    return v
  }

  /** The cached values, least recent first (does not change their order). */
  values(): IterableIterator<V> {
    return this.map.values()
  }

  clear(): void {
    this.map.clear()
  }
}
