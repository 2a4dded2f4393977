// Local file system backend. Objects are files below the root; save writes
// them with writeFileAtomic (temporary file in the same directory, fsync,
// rename over the final name, fsync the directory), so a crash leaves
// either the old object or the new one.
import {randomBytes} from 'node:crypto'
import type {Dirent} from 'node:fs'
import {mkdir, open, readdir, rm, stat, type FileHandle} from 'node:fs/promises'
import {readFile as readFileCallback} from 'node:fs'
import {dirname, join, sep} from 'node:path'
import {promisify} from 'node:util'
import {NotFoundError, UsageError, toVdsnapError} from '../errors.js'
import {syncDir, writeFileAtomic} from '../fs/atomic-write.js'
import {checkRangeInside, validateRange} from './range.js'
import {compareNames, type ByteRange, type ObjectInfo, type StorageBackend, type TempObject} from './types.js'

const readWhole = promisify(readFileCallback)

export class LocalBackend implements StorageBackend {
  readonly isLocal = true
  private readonly madeDirs = new Set<string>()
  private readonly dirtyDirs = new Set<string>()

  constructor(readonly location: string) {}

  private path(name: string): string {
    return join(this.location, ...name.split('/'))
  }

  async create(): Promise<void> {
    await mkdir(this.location, {recursive: true})
    const entries = await readdir(this.location)
    if (entries.length > 0) throw new UsageError(`${this.location} exists and is not empty`, {hint: 'choose an empty or new directory'})
  }

  async save(name: string, data: Buffer): Promise<void> {
    const final = this.path(name)
    const dir = dirname(final)
    // Chunk directories are fsynced once, by flush(), before the index that
    // names them is written; everything else is durable when save returns.
    const deferSync = name.startsWith('chunks/')
    try {
      if (!this.madeDirs.has(dir)) {
        await mkdir(dir, {recursive: true})
        this.madeDirs.add(dir)
      }
      await writeFileAtomic(final, data, {tempPath: join(dir, `.tmp-${randomBytes(6).toString('hex')}`), mode: 0o600, syncDir: !deferSync})
      if (deferSync) this.dirtyDirs.add(dir)
    } catch (e) {
      throw toVdsnapError(e, `writing ${name} to ${this.location}`)
    }
  }

  async load(name: string, range?: ByteRange): Promise<Buffer> {
    if (!range) {
      // fs.readFile (callback form) opens, sizes, reads and closes in one
      // call: about half the main-thread cost per chunk of FileHandle.readFile,
      // which restore and export pay for every chunk they load.
      try {
        return await readWhole(this.path(name))
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`${name} is missing from ${this.location}`)
        throw toVdsnapError(e, `reading ${name}`)
      }
    }
    validateRange(name, range)
    let fh
    try {
      fh = await open(this.path(name), 'r')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`${name} is missing from ${this.location}`)
      throw toVdsnapError(e, `reading ${name}`)
    }
    try {
      return await this.readRange(fh, name, range)
    } catch (e) {
      throw toVdsnapError(e, `reading ${name}`)
    } finally {
      await fh.close()
    }
  }

  /** pread until the range is filled; the size is asked for only when the file ends early (or nothing is read). */
  private async readRange(fh: FileHandle, name: string, range: ByteRange): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(range.length)
    let done = 0
    while (done < range.length) {
      const {bytesRead} = await fh.read(buf, done, range.length - done, range.offset + done)
      if (bytesRead === 0) break
      done += bytesRead
    }
    if (done < range.length || range.length === 0) checkRangeInside(name, this.location, range, (await fh.stat()).size)
    return buf
  }

  async stat(name: string): Promise<ObjectInfo | null> {
    try {
      const st = await stat(this.path(name))
      return {name, size: st.size}
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null
      throw toVdsnapError(e, `examining ${name}`)
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const base = this.path(prefix.replace(/\/$/, ''))
    yield* walk(base, prefix === '' ? '' : prefix.replace(/\/?$/, '/'))
  }

  async remove(name: string): Promise<void> {
    await rm(this.path(name), {force: true})
  }

  async flush(): Promise<void> {
    const dirs = [...this.dirtyDirs]
    this.dirtyDirs.clear()
    try {
      await Promise.all(dirs.map((d) => syncDir(d)))
    } catch (e) {
      for (const d of dirs) this.dirtyDirs.add(d)
      throw toVdsnapError(e, `syncing ${this.location}`)
    }
  }

  async close(): Promise<void> {}

  /** Temporary files of saves that died, in the root and two directory levels below it. */
  async *listTemps(): AsyncIterable<TempObject> {
    yield* walkTemps(this.location, '', 0)
  }
}

async function* walkTemps(dir: string, namePrefix: string, depth: number): AsyncIterable<TempObject> {
  let entries
  try {
    entries = await readdir(dir, {withFileTypes: true})
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return
    throw toVdsnapError(e, `listing ${dir}`)
  }
  for (const ent of entries) {
    const full = dir + sep + ent.name
    if (ent.isDirectory() && depth < 2) yield* walkTemps(full, `${namePrefix}${ent.name}/`, depth + 1)
    else if (ent.isFile() && ent.name.startsWith('.tmp-')) {
      const st = await stat(full).catch(() => null)
      if (st) yield {name: namePrefix + ent.name, size: st.size, mtimeMs: st.mtimeMs}
    }
  }
}

async function* walk(dir: string, namePrefix: string): AsyncIterable<ObjectInfo> {
  let entries
  try {
    entries = await readdir(dir, {withFileTypes: true})
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return
    throw toVdsnapError(e, `listing ${dir}`)
  }
  // Name order (types.ts): a directory sorts as its name plus "/", so that
  // "a-b" comes before everything under "a/", as the full names do.
  const key = (e: Dirent) => (e.isDirectory() ? `${e.name}/` : e.name)
  entries.sort((a, b) => compareNames(key(a), key(b)))
  for (const ent of entries) {
    if (ent.name.startsWith('.tmp-')) continue
    const full = dir + sep + ent.name
    if (ent.isDirectory()) yield* walk(full, `${namePrefix}${ent.name}/`)
    else if (ent.isFile()) {
      const st = await stat(full).catch(() => null)
      if (st) yield {name: namePrefix + ent.name, size: st.size}
    }
  }
}
