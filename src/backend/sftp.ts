// SFTP backend: objects are files below a directory on an SSH server,
// reached over ONE connection on which many requests are in flight at once
// (SFTP is request/response with ids, so parallel operations pipeline; one
// large object is also written and read as several concurrent 64 KiB
// requests — one request at a time is ~5x slower on a fast link).
//
// Contract details (see types.ts for the common one):
//  - save writes ".tmp-<random>" in the target directory (creating
//    directories on demand), fsyncs it when the server offers
//    fsync@openssh.com, then renames it over the final name with
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
import {openSftpSession, type SftpAuthOptions, type SftpSession, type SftpTarget} from './sftp-session.js'
import {isTransientNetworkError} from './transient.js'
import {compareNames, type ByteRange, type ObjectInfo, type StorageBackend} from './types.js'

export interface SftpLocation extends SftpTarget {
  /** Directory on the server ("/srv/repo", or "rel/dir" below the login directory). */
  path: string
}

export type SftpOptions = SftpAuthOptions

// SFTP status codes (draft-ietf-secsh-filexfer-02). Never change.
const FX_NO_SUCH_FILE = 2
const FX_PERMISSION_DENIED = 3
const FX_NO_CONNECTION = 6
const FX_CONNECTION_LOST = 7

const PIECE = 64 * 1024
const PIECES_IN_FLIGHT = 16
const LIST_PARALLEL = 8
const LOST = Symbol('connection lost')

/**
 * SSH connections per backend. OpenSSH's sftp-server handles one request at
 * a time per session (an fsync stalls every request behind it), so
 * parallel transfers go over several sessions, round robin.
 */
export const SFTP_SESSIONS = 4

export class SftpBackend implements StorageBackend {
  readonly location: string
  private readonly slots: (Promise<SftpSession> | undefined)[] = new Array(SFTP_SESSIONS).fill(undefined)
  private nextSlot = 0
  private connectedOnce = false
  private readonly madeDirs = new Set<string>()
  private closed = false

  constructor(
    private readonly where: SftpLocation,
    private readonly options: SftpOptions = {},
  ) {
    const port = where.port === 22 ? '' : `:${where.port}`
    const path = where.path.startsWith('/') ? where.path : `/~/${where.path}`
    this.location = `sftp://${where.user}@${where.host}${port}${path}`
  }

  private path(name: string): string {
    return posix.join(this.where.path, ...name.split('/'))
  }

  /** A live session (the next slot, round robin), reconnecting when the previous one died. */
  private async sftp(): Promise<{s: SftpSession; sftp: SFTPWrapper}> {
    if (this.closed) throw new IoError(`${this.location} is closed`)
    // Until one connection has succeeded, use slot 0 only: a wrong key or host fails once, fast.
    const i = this.connectedOnce ? this.nextSlot++ % this.slots.length : 0
    const current = this.slots[i]
    if (current) {
      const s = await current.catch(() => undefined)
      if (s && !s.dead) return {s, sftp: s.sftp}
      s?.client.end()
      if (this.slots[i] === current) this.slots[i] = undefined
    }
    const p = openSftpSession(this.where, this.options, this.connectedOnce)
    this.slots[i] = p
    try {
      const s = await p
      this.connectedOnce = true
      return {s, sftp: s.sftp}
    } catch (e) {
      if (this.slots[i] === p) this.slots[i] = undefined
      throw e
    }
  }

  /** Runs one request on the live session, classifying failures. */
  private async op<T>(doing: string, fn: (sftp: SFTPWrapper) => Promise<T>): Promise<T> {
    const {s, sftp} = await this.sftp()
    try {
      // Requests sent on a connection that died are never answered: stop
      // waiting for them when the connection goes.
      const out = await Promise.race([fn(sftp), s.closed.then(() => LOST)])
      if (out === LOST) throw new Error('connection closed')
      return out as T
    } catch (e) {
      throw this.classify(e, doing, s)
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
      const list = await call<FileEntryWithStats[]>((cb) => sftp.readdir(this.where.path, cb))
      if (list.length > 0) throw new UsageError(`${this.location} exists and is not empty`, {hint: 'choose an empty or new directory'})
    })
  }

  /** Atomic replace; throws IoError (retryable when the connection dropped). Safe to retry. */
  async save(name: string, data: Buffer): Promise<void> {
    const final = this.path(name)
    const dir = posix.dirname(final)
    const tmp = posix.join(dir, `.tmp-${randomBytes(6).toString('hex')}`)
    await this.op(`writing ${name}`, async (sftp) => {
      let handle: Buffer
      try {
        handle = await openFile(sftp, tmp, 'w')
      } catch (e) {
        if ((e as {code?: number}).code !== FX_NO_SUCH_FILE || this.madeDirs.has(dir)) throw e
        await mkdirs(sftp, dir)
        this.madeDirs.add(dir)
        handle = await openFile(sftp, tmp, 'w')
      }
      try {
        await writePipelined(sftp, handle, data)
        await fsyncIfOffered(sftp, handle)
      } catch (e) {
        await call((cb) => sftp.close(handle, cb)).catch(() => {})
        await call((cb) => sftp.unlink(tmp, cb)).catch(() => {})
        throw e
      }
      await call((cb) => sftp.close(handle, cb))
      try {
        await call((cb) => sftp.ext_openssh_rename(tmp, final, cb))
      } catch (e) {
        await call((cb) => sftp.unlink(tmp, cb)).catch(() => {})
        throw e
      }
    })
  }

  /** Throws NotFoundError (permanent) for a missing object, IoError otherwise. Safe to retry. */
  async load(name: string, range?: ByteRange): Promise<Buffer> {
    return this.op(`reading ${name}`, async (sftp) => {
      const handle = await openFile(sftp, this.path(name), 'r')
      try {
        const st = await call<Stats>((cb) => sftp.fstat(handle, cb))
        const start = range ? Math.min(range.offset, st.size) : 0
        const end = range ? Math.min(range.offset + range.length, st.size) : st.size
        return await readPipelined(sftp, handle, start, end - start)
      } finally {
        await call((cb) => sftp.close(handle, cb)).catch(() => {})
      }
    })
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
      return await this.op(`listing ${dirName || '/'}`, (sftp) =>
        call<FileEntryWithStats[]>((cb) => sftp.readdir(this.path(dirName.replace(/\/$/, '')), cb)),
      )
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

  async close(): Promise<void> {
    this.closed = true
    const sessions = await Promise.all(this.slots.map((p) => p?.catch(() => undefined)))
    for (const s of sessions) s?.client.end()
    this.slots.fill(undefined)
  }
}

/** Promise wrapper for ssh2's callback API; a synchronous throw becomes a rejection. */
function call<T = void>(fn: (cb: (err: Error | undefined | null, value: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    try {
      fn((err, value) => (err ? reject(err) : resolve(value)))
    } catch (e) {
      reject(e)
    }
  })
}

function openFile(sftp: SFTPWrapper, path: string, flags: 'r' | 'w'): Promise<Buffer> {
  return call<Buffer>((cb) => sftp.open(path, flags, {mode: 0o600}, cb))
}

/** mkdir -p; "already exists" (a generic failure in SFTP v3) is checked with stat. */
async function mkdirs(sftp: SFTPWrapper, dir: string): Promise<void> {
  if (dir === '/' || dir === '.' || dir === '') return
  try {
    await call((cb) => sftp.mkdir(dir, cb))
    return
  } catch (e) {
    if ((e as {code?: number}).code === FX_NO_SUCH_FILE) {
      await mkdirs(sftp, posix.dirname(dir))
      await call((cb) => sftp.mkdir(dir, cb)).catch(async (e2: unknown) => {
        if (!(await isDir(sftp, dir))) throw e2
      })
      return
    }
    if (!(await isDir(sftp, dir))) throw e
  }
}

async function isDir(sftp: SFTPWrapper, dir: string): Promise<boolean> {
  const st = await call<Stats>((cb) => sftp.stat(dir, cb)).catch(() => undefined)
  return st?.isDirectory() ?? false
}

/** Runs `count` jobs with at most `width` of them in flight. */
async function pool(count: number, width: number, job: (i: number) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async () => {
    while (next < count) await job(next++)
  }
  await Promise.all(Array.from({length: Math.min(width, count)}, worker))
}

async function writePipelined(sftp: SFTPWrapper, handle: Buffer, data: Buffer): Promise<void> {
  const pieces = Math.ceil(data.length / PIECE)
  await pool(pieces, PIECES_IN_FLIGHT, (i) => {
    const off = i * PIECE
    const len = Math.min(PIECE, data.length - off)
    return call((cb) => sftp.write(handle, data, off, len, off, cb))
  })
}

/** Reads [start, start+length); stops early only at end of file. */
async function readPipelined(sftp: SFTPWrapper, handle: Buffer, start: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length)
  let shortAt = length
  const pieces = Math.ceil(length / PIECE)
  await pool(pieces, PIECES_IN_FLIGHT, async (i) => {
    let off = i * PIECE
    const end = Math.min(off + PIECE, length)
    while (off < end) {
      const n = await new Promise<number>((resolve, reject) =>
        sftp.read(handle, buf, off, end - off, start + off, (err, bytesRead) => (err ? reject(err) : resolve(bytesRead))),
      )
      if (n === 0) {
        shortAt = Math.min(shortAt, off)
        return
      }
      off += n
    }
  })
  return shortAt === length ? buf : buf.subarray(0, shortAt)
}

async function fsyncIfOffered(sftp: SFTPWrapper, handle: Buffer): Promise<void> {
  try {
    await call((cb) => sftp.ext_openssh_fsync(handle, cb))
  } catch (e) {
    if (!/does not support/i.test((e as Error).message)) throw e
  }
}
