// A vdsnap repository on some storage backend. Names of objects:
//
//   config                  plaintext JSON (config.ts)
//   keys/<slot>             key slots, JSON (keys.ts)
//   chunks/<aa>/<id>        chunk objects (chunk-store.ts owns them)
//   indexes/<id>            index objects (index-codec.ts in an envelope)
//   snapshots/<id>          manifest objects (manifest.ts in an envelope)
//   locks/<id>              lock files, plaintext JSON (lock.ts)
//
// Write order is chunks, then index, then manifest, each saved atomically by
// the backend, so a crash never leaves a visible snapshot pointing at
// missing data. Objects are immutable once written except for locks.
import {randomBytes} from 'node:crypto'
import {DIGEST_SIZE, chunkDigest} from '../chunk/digest.js'
import {decodeObject, encodeObject, ObjectKind} from '../chunk/object-codec.js'
import {DataError, NotFoundError, UsageError, VdsnapError} from '../errors.js'
import {ChunkStore} from './chunk-store.js'
import type {StorageBackend} from '../backend/types.js'
import {newConfig, parseConfig, type RepoConfig} from './config.js'
import {decodeIndex, encodeIndex, type SnapshotIndex} from './index-codec.js'
import {makeKeySlot, newMasterKey, saveKeySlot, unlockMasterKey, type MasterKey} from './keys.js'
import type {Manifest} from './manifest.js'

export interface InitOptions {
  blockSize: number
  level: number
  password?: string
  syntheticFullEvery?: number
}

export type PasswordSource = () => Promise<string>

export class Repository {
  /** The chunks: naming, the known-chunk set, the keys and the worker pool (chunk-store.ts). */
  readonly chunks: ChunkStore
  private readonly manifestCache = new Map<string, Manifest>()
  /**
   * Manifests that a listing skipped because they failed to decode or
   * authenticate: id → why. One damaged object must not take every disk
   * down; commands report these as warnings (exit 3).
   */
  readonly damaged = new Map<string, string>()

  private constructor(
    readonly backend: StorageBackend,
    readonly config: RepoConfig,
    readonly master: MasterKey | null,
    /** The key slot the password opened (encrypted repositories). */
    readonly slotId: string | null = null,
  ) {
    this.chunks = new ChunkStore(backend, {idKey: master?.idKey, encKey: master?.encKey}, config.compression.level, config.blockSize)
  }

  get location(): string {
    return this.backend.location
  }

  get blockSize(): number {
    return this.config.blockSize
  }

  get level(): number {
    return this.config.compression.level
  }

  static async init(backend: StorageBackend, opts: InitOptions): Promise<Repository> {
    if (await backend.stat('config')) {
      throw new UsageError(`a repository already exists at ${backend.location}`, {hint: 'use it, or choose another location', code: 'REPO_EXISTS', object: backend.location})
    }
    const config = newConfig({blockSize: opts.blockSize, level: opts.level, encrypted: opts.password !== undefined, syntheticFullEvery: opts.syntheticFullEvery})
    let master: MasterKey | null = null
    if (opts.password !== undefined) {
      master = newMasterKey()
      await saveKeySlot(backend, await makeKeySlot(opts.password, master))
    }
    // config last: a repository is visible only once it is whole.
    await backend.save('config', Buffer.from(JSON.stringify(config, null, 2) + '\n'))
    return new Repository(backend, config, master)
  }

  static async open(backend: StorageBackend, password: PasswordSource): Promise<Repository> {
    let text: string
    try {
      text = (await backend.load('config')).toString('utf8')
    } catch (e) {
      if (e instanceof NotFoundError) {
        throw new NotFoundError(`no vdsnap repository at ${backend.location}`, {hint: 'create one with "vdsnap init" or check --repo', code: 'REPO_NOT_FOUND', object: backend.location})
      }
      throw e
    }
    const config = parseConfig(text, backend.location)
    if (config.encryption === 'none') return new Repository(backend, config, null)
    const {master, slotId} = await unlockMasterKey(backend, await password())
    return new Repository(backend, config, master, slotId)
  }

  get encKey(): Buffer | undefined {
    return this.master?.encKey
  }

  get idKey(): Buffer | undefined {
    return this.master?.idKey
  }

  digest(data: Uint8Array): Buffer {
    return chunkDigest(data, this.idKey)
  }

  // ---- indexes ----

  async saveIndex(ix: SnapshotIndex): Promise<string> {
    await this.chunks.flush() // the chunks it names are durable first
    const plain = encodeIndex(ix)
    const id = this.digest(plain).toString('hex')
    const name = `indexes/${id}`
    await this.backend.save(name, encodeObject(ObjectKind.Index, name, plain, {level: Math.max(1, this.level), key: this.encKey}))
    return id
  }

  async loadIndex(id: string): Promise<SnapshotIndex> {
    const name = `indexes/${id}`
    let data: Buffer
    try {
      data = await this.backend.load(name)
    } catch (e) {
      if (e instanceof NotFoundError) throw new DataError(`index ${id.slice(0, 16)}… is missing from ${this.location}`, {hint: 'run "vdsnap check"', code: 'INDEX_MISSING', object: name})
      throw e
    }
    return decodeIndex(decodeObject(ObjectKind.Index, name, data, this.encKey), id)
  }

  /** Deletes an index object (forget, prune). A missing one is not an error. */
  async removeIndex(id: string): Promise<void> {
    await this.backend.remove(`indexes/${id}`)
  }

  // ---- manifests ----

  static newSnapshotId(): string {
    return randomBytes(32).toString('hex')
  }

  async saveManifest(m: Manifest): Promise<void> {
    const name = `snapshots/${m.id}`
    const plain = Buffer.from(JSON.stringify(m))
    await this.backend.save(name, encodeObject(ObjectKind.Manifest, name, plain, {level: Math.max(1, this.level), key: this.encKey}))
    this.manifestCache.set(m.id, m)
  }

  async loadManifest(id: string): Promise<Manifest> {
    const cached = this.manifestCache.get(id)
    if (cached) return cached
    const name = `snapshots/${id}`
    let data: Buffer
    try {
      data = await this.backend.load(name)
    } catch (e) {
      if (e instanceof NotFoundError) throw new NotFoundError(`snapshot ${id.slice(0, 8)} does not exist in ${this.location}`, {code: 'SNAPSHOT_NOT_FOUND', object: name})
      throw e
    }
    let m: Manifest
    try {
      m = JSON.parse(decodeObject(ObjectKind.Manifest, name, data, this.encKey).toString('utf8')) as Manifest
    } catch (e) {
      if (e instanceof VdsnapError) throw e
      throw new DataError(`snapshot ${id.slice(0, 8)} has a malformed manifest`, {code: 'MANIFEST_CORRUPT', object: name})
    }
    if (m.id !== id) throw new DataError(`snapshot ${id.slice(0, 8)} holds the manifest of ${String(m.id).slice(0, 8)} (corrupt)`, {code: 'MANIFEST_CORRUPT', object: name})
    this.manifestCache.set(id, m)
    return m
  }

  /** Deletes a manifest (forget), and the image SHA-256 export recorded for it. A missing one is not an error. */
  async removeManifest(id: string): Promise<void> {
    this.manifestCache.delete(id)
    await this.backend.remove(`snapshots/${id}`)
    await this.backend.remove(`imagesums/${id}`) // archive/image-sum.ts
  }

  async listSnapshotIds(): Promise<string[]> {
    const ids: string[] = []
    for await (const obj of this.backend.list('snapshots/')) {
      const id = obj.name.slice('snapshots/'.length)
      if (/^[0-9a-f]{64}$/.test(id)) ids.push(id)
    }
    return ids
  }

  /**
   * All readable manifests, oldest first. A manifest that is damaged (a
   * DataError: fails authentication, malformed) is skipped and recorded in
   * `damaged`; any other error (I/O, network) still fails the listing, so a
   * flaky link never passes for damage.
   */
  async listSnapshots(disk?: string): Promise<Manifest[]> {
    const ids = await this.listSnapshotIds()
    const out: Manifest[] = []
    const queue = [...ids]
    await Promise.all(
      Array.from({length: Math.min(16, queue.length)}, async () => {
        for (let id = queue.pop(); id; id = queue.pop()) {
          try {
            out.push(await this.loadManifest(id))
          } catch (e) {
            if (!(e instanceof VdsnapError) || e.kind !== 'data') throw e
            this.damaged.set(id, e.message)
          }
        }
      }),
    )
    return out.filter((m) => disk === undefined || m.disk === disk).sort((a, b) => a.time.localeCompare(b.time) || a.id.localeCompare(b.id))
  }

  /** One warning line per damaged manifest seen so far. */
  damagedWarnings(): string[] {
    return [...this.damaged].map(
      ([id, why]) => `skipped snapshot ${id.slice(0, 8)} in ${this.location}: ${why}; "vdsnap forget ${id.slice(0, 8)}" or "vdsnap repair snapshots" removes it`,
    )
  }

  async close(): Promise<void> {
    await this.chunks.close()
    await this.backend.close()
  }
}

export const ENTRY_SIZE = DIGEST_SIZE
