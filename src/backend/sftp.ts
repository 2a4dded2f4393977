// SFTP backend: objects are files below a directory on an SSH server,
// reached over a few SSH sessions (sftp-pool.ts) on each of which many
// requests are in flight at once. SFTP is request/response with ids, so
// requests pipeline: one object is written and read as several concurrent
// 64 KiB requests, and the requests of one operation that do not depend on
// each other's replies go out together (sftp-io.ts). On a WAN link the
// round trips per object, not the bandwidth, set the pace: a save costs
// three (open; writes + fsync + close; rename), a load one or two (open;
// fstat + reads, the close not waited for).
//
// Contract details (see types.ts for the common one):
//  - save writes ".tmp-<random>" in the target directory (creating
//    directories on demand), fsyncs it when the server offers
//    fsync@openssh.com, then — only after every write, the fsync and the
//    close were acknowledged — renames it over the final name with
//    posix-rename@openssh.com, which replaces atomically (plain SFTP rename
//    refuses to overwrite).
//  - load reads through one open handle and takes the size from that handle,
//    so a concurrent replace never yields a mix of old and new bytes.
//  - A dropped connection fails the calls in flight with retryable IoErrors;
//    the next call opens a new connection (the retry wrapper drives this).
//  - Location "sftp://user@host:port/abs/path"; "/~/rel" is relative to the
//    login directory.
import {randomBytes} from 'node:crypto'
import {posix} from 'node:path'
import type {FileEntryWithStats, SFTPWrapper, Stats} from 'ssh2'
import {IoError, NotFoundError, UsageError, VdsnapError} from '../errors.js'
import {
  FX_CONNECTION_LOST,
  FX_NO_CONNECTION,
  FX_NO_SUCH_FILE,
  FX_PERMISSION_DENIED,
  call,
  closeLater,
  createFile,
  mkdirs,
  openFile,
  readAt,
  readDirectory,
  writeSyncClose,
} from './sftp-io.js'
import {SftpSessionPool} from './sftp-pool.js'
import {checkRangeInside, validateRange} from './range.js'
import {openSftpSession, type SftpAuthOptions, type SftpSession, type SftpTarget} from './sftp-session.js'
import {isTransientNetworkError} from './transient.js'
import {compareNames, type ByteRange, type ObjectInfo, type StorageBackend, type TempObject} from './types.js'

export interface SftpLocation extends SftpTarget {
  /** Directory on the server ("/srv/repo", or "rel/dir" below the login directory). */
  path: string
}

export interface SftpOptions extends SftpAuthOptions {
  /** SSH sessions to open; default SFTP_SESSIONS. */
  sessions?: number
}

const LIST_PARALLEL = 32
const LOST = Symbol('connection lost')

/**
 * SSH sessions per backend. OpenSSH's sftp-server handles one request at a
 * time per session (an fsync stalls every request behind it), so parallel
 * transfers are spread over several sessions.
 */
export const SFTP_SESSIONS = 8

export class SftpBackend implements StorageBackend {
  readonly location: string
  private readonly pool: SftpSessionPool
  /** Directories known to exist (saved into or listed), so a save sends no mkdir before its open. */
  private readonly knownDirs = new Set<string>()

  constructor(
    private readonly where: SftpLocation,
    private readonly options: SftpOptions = {},
  ) {
    const port = where.port === 22 ? '' : `:${where.port}`
    const path = where.path.startsWith('/') ? where.path : `/~/${where.path}`
    this.location = `sftp://${where.user}@${where.host}${port}${path}`
    this.pool = new SftpSessionPool((wasConnected) => openSftpSession(where, options, wasConnected), options.sessions ?? SFTP_SESSIONS, this.location)
  }

  private path(name: string): string {
    return posix.join(this.where.path, ...name.split('/'))
  }

  /** Runs one request on the live session, classifying failures. */
  private async op<T>(doing: string, fn: (sftp: SFTPWrapper) => Promise<T>): Promise<T> {
    const {session: s, release} = await this.pool.acquire()
    try {
      // Requests sent on a connection that died are never answered: stop
      // waiting for them when the connection goes.
      const out = await Promise.race([fn(s.sftp), s.closed.then(() => LOST)])
      if (out === LOST) throw new Error('connection closed')
      return out as T
    } catch (e) {
      throw this.classify(e, doing, s)
    } finally {
      release()
    }
  }

  private classify(err: unknown, doing: string, s: SftpSession): VdsnapError {
    if (err instanceof VdsnapError) return err
    const e = err as Error & {code?: number | string}
    const lost = s.dead || e.code === FX_NO_CONNECTION || e.code === FX_CONNECTION_LOST || /No response from server|Not connected|closed/i.test(e.message)
    if (lost || isTransientNetworkError(err)) {
      s.dead = true
      return new IoError(`${doing} on ${this.location}: connection lost (${e.message})`, {cause: err, retryable: true})
    }
    if (e.code === FX_NO_SUCH_FILE) return new NotFoundError(`${doing}: no such file on ${this.location}`, {cause: err})
    if (e.code === FX_PERMISSION_DENIED) {
      return new IoError(`${doing} on ${this.location}: permission denied`, {cause: err, hint: 'check the directory permissions on the server'})
    }
    return new IoError(`${doing} on ${this.location}: ${e.message}`, {cause: err})
  }

  async create(): Promise<void> {
    await this.op(`creating ${this.where.path}`, async (sftp) => {
      await mkdirs(sftp, this.where.path)
      const list = await readDirectory(sftp, this.where.path)
      if (list.length > 0) throw new UsageError(`${this.location} exists and is not empty`, {hint: 'choose an empty or new directory'})
    })
  }

  /** Atomic replace; throws IoError (retryable when the connection dropped). Safe to retry. */
  async save(name: string, data: Buffer): Promise<void> {
    const final = this.path(name)
    const dir = posix.dirname(final)
    const tmp = posix.join(dir, `.tmp-${randomBytes(6).toString('hex')}`)
    await this.op(`writing ${name}`, async (sftp) => {
      const handle = await createFile(sftp, tmp, !this.knownDirs.has(dir))
      this.knownDirs.add(dir)
      try {
        await writeSyncClose(sftp, handle, data)
        await call((cb) => sftp.ext_openssh_rename(tmp, final, cb))
      } catch (e) {
        await call((cb) => sftp.unlink(tmp, cb)).catch(() => {})
        throw e
      }
    })
  }

  /** Throws NotFoundError (permanent) for a missing object, ObjectRangeError past its end, IoError otherwise. Safe to retry. */
  async load(name: string, range?: ByteRange): Promise<Buffer> {
    if (range) validateRange(name, range)
    let size = 0
    const data = await this.op(`reading ${name}`, async (sftp) => {
      const handle = await openFile(sftp, this.path(name), 'r')
      try {
        return await readAt(sftp, handle, range?.offset ?? 0, range?.length, (s) => (size = s))
      } finally {
        closeLater(sftp, handle)
      }
    })
    if (range) checkRangeInside(name, this.location, range, size)
    return data
  }

  /** Null when missing; throws IoError otherwise. Safe to retry. */
  async stat(name: string): Promise<ObjectInfo | null> {
    try {
      return await this.op(`examining ${name}`, async (sftp) => {
        const st = await call<Stats>((cb) => sftp.stat(this.path(name), cb))
        return st.isFile() ? {name, size: st.size} : null
      })
    } catch (e) {
      if (e instanceof NotFoundError) return null
      throw e
    }
  }

  /**
   * Walks directories depth-first in name order (types.ts): entries sorted
   * per directory, a directory as its name plus "/". Up to LIST_PARALLEL
   * sibling directories are read ahead while the current one is yielded, so
   * a chunks/ listing keeps several readdir requests in flight. A missing
   * prefix lists nothing.
   */
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const root = prefix.replace(/\/?$/, '/').replace(/^\/$/, '')
    yield* this.walk(root, await this.readDir(root))
  }

  private async *walk(dirName: string, raw: FileEntryWithStats[]): AsyncIterable<ObjectInfo> {
    const entries = raw.filter((e) => !e.filename.startsWith('.tmp-') && e.filename !== '.' && e.filename !== '..' && (e.attrs.isDirectory() || e.attrs.isFile()))
    const key = (e: FileEntryWithStats) => (e.attrs.isDirectory() ? `${e.filename}/` : e.filename)
    entries.sort((a, b) => compareNames(key(a), key(b)))
    const dirs = entries.filter((e) => e.attrs.isDirectory()).map((e) => `${dirName}${e.filename}/`)
    const ahead = new Map<string, Promise<FileEntryWithStats[]>>()
    let next = 0
    const readAhead = () => {
      for (; next < dirs.length && ahead.size < LIST_PARALLEL; next++) {
        const p = this.readDir(dirs[next]!)
        p.catch(() => {}) // awaited below; a listing abandoned half-way must not leave an unhandled rejection
        ahead.set(dirs[next]!, p)
      }
    }
    readAhead()
    for (const ent of entries) {
      const full = dirName + ent.filename
      if (ent.attrs.isFile()) {
        yield {name: full, size: ent.attrs.size}
        continue
      }
      const sub = `${full}/`
      const children = await ahead.get(sub)!
      ahead.delete(sub)
      readAhead()
      yield* this.walk(sub, children)
    }
  }

  private async readDir(dirName: string): Promise<FileEntryWithStats[]> {
    try {
      const path = this.path(dirName.replace(/\/$/, ''))
      const entries = await this.op(`listing ${dirName || '/'}`, (sftp) => readDirectory(sftp, path))
      for (const e of entries) if (e.attrs.isDirectory()) this.knownDirs.add(posix.join(path, e.filename))
      return entries
    } catch (e) {
      if (e instanceof NotFoundError) return []
      throw e
    }
  }

  /** A missing object is not an error. Safe to retry. */
  async remove(name: string): Promise<void> {
    try {
      await this.op(`removing ${name}`, (sftp) => call((cb) => sftp.unlink(this.path(name), cb)))
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e
    }
  }

  /**
   * Temporary files of saves that died (a connection cut between write and
   * rename), in the root and two directory levels below it, as list() walks.
   */
  async *listTemps(): AsyncIterable<TempObject> {
    yield* this.walkTemps('', 0)
  }

  private async *walkTemps(dirName: string, depth: number): AsyncIterable<TempObject> {
    for (const e of await this.readDir(dirName)) {
      if (e.attrs.isDirectory() && depth < 2 && e.filename !== '.' && e.filename !== '..') yield* this.walkTemps(`${dirName}${e.filename}/`, depth + 1)
      else if (e.attrs.isFile() && e.filename.startsWith('.tmp-')) yield {name: dirName + e.filename, size: e.attrs.size, mtimeMs: e.attrs.mtime * 1000}
    }
  }

  async close(): Promise<void> {
    await this.pool.close()
  }
}
