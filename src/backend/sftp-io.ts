// SFTP requests arranged to cost as few round trips as possible; each
// function works on one SFTP channel (ssh2's SFTPWrapper).
//
// SFTP carries request ids, so a client may send many requests before the
// first reply. OpenSSH's sftp-server also runs one session's requests
// strictly in the order they arrive. These helpers use both:
//  - writeSyncClose sends every write, the fsync and the close back to back:
//    one round trip (plus transfer time) instead of three. The caller must
//    still wait for all the replies before renaming the file into place.
//  - readAt sends the fstat together with the first reads.
//  - readDirectory sends several READDIRs per round trip.
//  - closes after reading are not waited for.
// A server that reordered requests (the protocol allows it, OpenSSH does not
// do it) would still give correct results: reads and writes carry offsets,
// a missing directory only costs a retry, and a rename is only sent after
// every write was acknowledged. Only an fsync could then run before some
// writes, which would weaken durability after a server crash, never what
// readers see.
import {posix} from 'node:path'
import type {FileEntryWithStats, SFTPWrapper, Stats} from 'ssh2'

// SFTP status codes (draft-ietf-secsh-filexfer-02). Never change.
export const FX_EOF = 1
export const FX_NO_SUCH_FILE = 2
export const FX_PERMISSION_DENIED = 3
export const FX_NO_CONNECTION = 6
export const FX_CONNECTION_LOST = 7

/** Size of one read or write request (OpenSSH accepts up to 255 KiB). */
export const PIECE = 64 * 1024
/** Requests of one transfer in flight at once (1 MiB; an SSH channel's window is 2 MiB). */
export const PIECES_IN_FLIGHT = 16
/** What a load reads before it knows the size: one wave, a whole chunk of the default block size. */
export const READ_AHEAD = PIECE * PIECES_IN_FLIGHT
/** READDIR requests sent at once on one directory handle (OpenSSH answers up to 100 names each). */
export const READDIRS_AHEAD = 4

/** Promise wrapper for ssh2's callback API; a synchronous throw becomes a rejection. */
export function call<T = void>(fn: (cb: (err: Error | undefined | null, value: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    try {
      fn((err, value) => (err ? reject(err) : resolve(value)))
    } catch (e) {
      reject(e)
    }
  })
}

export function codeOf(err: unknown): number | string | undefined {
  return (err as {code?: number | string} | undefined)?.code
}

export function openFile(sftp: SFTPWrapper, path: string, flags: 'r' | 'w'): Promise<Buffer> {
  return call<Buffer>((cb) => sftp.open(path, flags, {mode: 0o600}, cb))
}

/** Sends a close without waiting for its reply (the server runs it before anything sent later). */
export function closeLater(sftp: SFTPWrapper, handle: Buffer): void {
  call((cb) => sftp.close(handle, cb)).catch(() => {})
}

/** mkdir -p; "already exists" (a generic failure in SFTP v3) is checked with stat. */
export async function mkdirs(sftp: SFTPWrapper, dir: string): Promise<void> {
  if (dir === '/' || dir === '.' || dir === '') return
  try {
    await call((cb) => sftp.mkdir(dir, cb))
    return
  } catch (e) {
    if (codeOf(e) === FX_NO_SUCH_FILE) {
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

/**
 * Opens `path` for writing. When its directory may be missing (`mayNeedDir`),
 * a mkdir goes out just before the open, in the same round trip (its
 * failure, usually "exists", is ignored); if the open still finds no
 * directory, the parents are made one by one and the open retried.
 */
export async function createFile(sftp: SFTPWrapper, path: string, mayNeedDir: boolean): Promise<Buffer> {
  const dir = posix.dirname(path)
  if (mayNeedDir) call((cb) => sftp.mkdir(dir, cb)).catch(() => {})
  try {
    return await openFile(sftp, path, 'w')
  } catch (e) {
    if (codeOf(e) !== FX_NO_SUCH_FILE) throw e
    await mkdirs(sftp, dir)
    return openFile(sftp, path, 'w')
  }
}

/**
 * Writes `data` from offset 0, asks for fsync (when the server offers
 * fsync@openssh.com) and close right behind the last write, and resolves
 * once every reply arrived OK. On failure it still waits for the replies in
 * flight and leaves the handle closed, then throws the first error.
 */
export async function writeSyncClose(sftp: SFTPWrapper, handle: Buffer, data: Buffer): Promise<void> {
  const count = Math.ceil(data.length / PIECE)
  let next = 0
  let failed: {error: unknown} | undefined
  let tail: Promise<void>[] | undefined
  const sendTail = () => {
    tail = [fsyncIfOffered(sftp, handle), call((cb) => sftp.close(handle, cb))]
  }
  if (count === 0) sendTail()
  const worker = async () => {
    while (next < count && !failed) {
      const off = next++ * PIECE
      const sent = call((cb) => sftp.write(handle, data, off, Math.min(PIECE, data.length - off), off, cb))
      if (next === count) sendTail()
      await sent.catch((error: unknown) => (failed ??= {error}))
    }
  }
  await Promise.all(Array.from({length: Math.min(PIECES_IN_FLIGHT, count)}, worker))
  if (!tail) {
    // stopped before the last write: nothing to sync, just close
    await call((cb) => sftp.close(handle, cb)).catch(() => {})
    throw failed!.error
  }
  const [sync, close] = await Promise.allSettled(tail)
  if (failed) throw failed.error
  if (sync!.status === 'rejected') throw sync!.reason
  if (close!.status === 'rejected') throw close!.reason
}

function fsyncIfOffered(sftp: SFTPWrapper, handle: Buffer): Promise<void> {
  return call((cb) => sftp.ext_openssh_fsync(handle, cb)).catch((e: unknown) => {
    if (!/does not support/i.test((e as Error).message)) throw e
  })
}

/**
 * Reads [start, start + length) of an open file, or to its end when length
 * is omitted; shorter at end of file. The fstat that gives the size goes
 * out with the first wave of reads, so an object up to READ_AHEAD bytes
 * costs one round trip; `onSize` receives that size (a ranged load checks
 * its range against it). Returns a buffer of exactly the bytes read.
 */
export async function readAt(sftp: SFTPWrapper, handle: Buffer, start: number, length = Infinity, onSize?: (size: number) => void): Promise<Buffer> {
  const headLength = Math.min(length, READ_AHEAD)
  const scratch = Buffer.allocUnsafe(headLength)
  let size: number | undefined
  const stat = call<Stats>((cb) => sftp.fstat(handle, cb)).then((st) => (size = st.size))
  const [, got] = await Promise.all([stat, readInto(sftp, handle, scratch, start, () => size)])
  onSize?.(size!)
  const want = Math.max(0, Math.min(length, size! - start))
  if (got === want && got === headLength) return scratch
  if (got < headLength || want <= got) return Buffer.from(scratch.subarray(0, Math.min(got, want)))
  const out = Buffer.allocUnsafe(want)
  scratch.copy(out, 0, 0, got)
  const rest = await readInto(sftp, handle, out.subarray(got), start + got, () => size)
  return got + rest === want ? out : out.subarray(0, got + rest)
}

/**
 * Fills `buf` from file offset `position`, PIECES_IN_FLIGHT requests at a
 * time; returns the bytes read (fewer at end of file). A short read is
 * followed by another unless `size()` already tells that the file ends there
 * (the fstat sent before the reads is answered before them).
 */
async function readInto(sftp: SFTPWrapper, handle: Buffer, buf: Buffer, position: number, size: () => number | undefined): Promise<number> {
  let shortAt = buf.length
  let next = 0
  const count = Math.ceil(buf.length / PIECE)
  const worker = async () => {
    while (next < count) {
      let off = next++ * PIECE
      const end = Math.min(off + PIECE, buf.length)
      while (off < end) {
        const n = await new Promise<number>((resolve, reject) =>
          sftp.read(handle, buf, off, end - off, position + off, (err, bytesRead) => (err ? reject(err) : resolve(bytesRead))),
        )
        if (n > 0) off += n
        if (n === 0 || position + off >= (size() ?? Infinity)) {
          if (off < end) shortAt = Math.min(shortAt, off)
          break
        }
      }
    }
  }
  await Promise.all(Array.from({length: Math.min(PIECES_IN_FLIGHT, count)}, worker))
  return shortAt
}

/** Every entry of a directory except "." and "..", READDIRS_AHEAD requests per round trip. */
export async function readDirectory(sftp: SFTPWrapper, path: string): Promise<FileEntryWithStats[]> {
  const handle = await call<Buffer>((cb) => sftp.opendir(path, cb))
  const out: FileEntryWithStats[] = []
  try {
    for (let done = false; !done; ) {
      const wave = await Promise.allSettled(Array.from({length: READDIRS_AHEAD}, () => call<FileEntryWithStats[]>((cb) => sftp.readdir(handle, cb))))
      for (const r of wave) {
        if (r.status === 'fulfilled') out.push(...r.value)
        else if (codeOf(r.reason) === FX_EOF) done = true
        else throw r.reason
      }
    }
  } finally {
    closeLater(sftp, handle)
  }
  return out.filter((e) => e.filename !== '.' && e.filename !== '..')
}
