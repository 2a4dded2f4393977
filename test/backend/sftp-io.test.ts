// Round trips of the pipelined SFTP helpers, counted on a fake channel that
// answers only when the test says "round": every request sent so far gets
// its reply, in order, like OpenSSH's sftp-server. A save's writes, fsync
// and close take one round; a load of a chunk-sized object one; a listing
// of 250 names two (opendir, then a wave of READDIRs).
import {describe, expect, it} from 'vitest'
import type {SFTPWrapper} from 'ssh2'
import {FX_EOF, READ_AHEAD, createFile, readAt, readDirectory, writeSyncClose} from '../../src/backend/sftp-io.js'

type Reply = () => void

class FakeChannel {
  readonly sent: string[] = []
  private queue: Reply[] = []
  file = Buffer.alloc(0)
  names: string[] = []
  private listed = 0
  failWriteAt = -1
  rounds = 0

  private req(name: string, reply: Reply): void {
    this.sent.push(name)
    this.queue.push(reply)
  }

  /** Answers everything sent so far; returns how many replies went out. */
  async round(): Promise<number> {
    this.rounds++
    const q = this.queue
    this.queue = []
    for (const r of q) r()
    await new Promise((r) => setImmediate(r))
    return q.length
  }

  async untilIdle(p: Promise<unknown>): Promise<number> {
    let done = false
    p.then(
      () => (done = true),
      () => (done = true),
    )
    await new Promise((r) => setImmediate(r))
    while (!done) await this.round()
    return this.rounds
  }

  asSftp(): SFTPWrapper {
    const err = (code: number, message: string) => Object.assign(new Error(message), {code})
    return {
      open: (_p: string, _f: string, _a: unknown, cb: (e?: Error, h?: Buffer) => void) => this.req('open', () => cb(undefined, Buffer.from('h'))),
      mkdir: (_p: string, cb: (e?: Error) => void) => this.req('mkdir', () => cb(err(4, 'Failure'))),
      write: (_h: Buffer, buf: Buffer, off: number, len: number, pos: number, cb: (e?: Error) => void) =>
        this.req('write', () => {
          if (pos === this.failWriteAt) return cb(err(4, 'Failure'))
          const need = pos + len
          if (this.file.length < need) this.file = Buffer.concat([this.file, Buffer.alloc(need - this.file.length)])
          buf.copy(this.file, pos, off, off + len)
          cb()
        }),
      ext_openssh_fsync: (_h: Buffer, cb: (e?: Error) => void) => this.req('fsync', () => cb()),
      close: (_h: Buffer, cb: (e?: Error) => void) => this.req('close', () => cb()),
      fstat: (_h: Buffer, cb: (e: Error | undefined, st: {size: number}) => void) => this.req('fstat', () => cb(undefined, {size: this.file.length})),
      read: (_h: Buffer, buf: Buffer, off: number, len: number, pos: number, cb: (e: Error | undefined, n: number) => void) =>
        this.req('read', () => cb(undefined, pos >= this.file.length ? 0 : this.file.copy(buf, off, pos, Math.min(pos + len, this.file.length)))),
      opendir: (_p: string, cb: (e?: Error, h?: Buffer) => void) => this.req('opendir', () => cb(undefined, Buffer.from('d'))),
      readdir: (_h: Buffer, cb: (e: Error | undefined, list?: unknown[]) => void) =>
        this.req('readdir', () => {
          const batch = this.names.slice(this.listed, this.listed + 100)
          this.listed += batch.length
          if (batch.length === 0) return cb(err(FX_EOF, 'End of file'))
          cb(undefined, batch.map((filename) => ({filename, longname: filename, attrs: {}})))
        }),
    } as unknown as SFTPWrapper
  }
}

describe('pipelined SFTP requests', () => {
  it('a save sends every write, the fsync and the close before the first reply: one round', async () => {
    const ch = new FakeChannel()
    const data = Buffer.alloc(512 * 1024 + 100, 7)
    const rounds = await ch.untilIdle(writeSyncClose(ch.asSftp(), Buffer.from('h'), data))
    expect(rounds).toBe(1)
    expect(ch.sent.slice(-2)).toEqual(['fsync', 'close'])
    expect(ch.file.equals(data)).toBe(true)
  })

  it('a failed write still waits for the replies, leaves the handle closed and rejects', async () => {
    const ch = new FakeChannel()
    ch.failWriteAt = 64 * 1024
    const p = writeSyncClose(ch.asSftp(), Buffer.from('h'), Buffer.alloc(256 * 1024, 1))
    p.catch(() => {})
    await ch.untilIdle(p)
    await expect(p).rejects.toThrow('Failure')
    expect(ch.sent).toContain('close')
  })

  it('an open in a directory that may be missing sends the mkdir in the same round', async () => {
    const ch = new FakeChannel()
    const rounds = await ch.untilIdle(createFile(ch.asSftp(), '/r/chunks/ab/.tmp-1', true))
    expect(rounds).toBe(1)
    expect(ch.sent).toEqual(['mkdir', 'open'])
  })

  it('a load up to READ_AHEAD bytes is one round (fstat with the reads); a larger one two', async () => {
    const ch = new FakeChannel()
    ch.file = Buffer.alloc(512 * 1024 + 40, 3)
    const small = readAt(ch.asSftp(), Buffer.from('h'), 0)
    expect(await ch.untilIdle(small)).toBe(1)
    expect((await small).equals(ch.file)).toBe(true)
    const big = new FakeChannel()
    big.file = Buffer.alloc(READ_AHEAD + 5000, 9)
    const p = readAt(big.asSftp(), Buffer.from('h'), 0)
    expect(await big.untilIdle(p)).toBe(2)
    expect((await p).equals(big.file)).toBe(true)
  })

  it('reads byte ranges, shorter at the end of the file', async () => {
    const ch = new FakeChannel()
    ch.file = Buffer.from('0123456789')
    const r = (offset: number, length: number) => {
      const p = readAt(ch.asSftp(), Buffer.from('h'), offset, length)
      void ch.untilIdle(p)
      return p
    }
    expect((await r(2, 3)).toString()).toBe('234')
    expect((await r(8, 100)).toString()).toBe('89')
    expect((await r(50, 10)).length).toBe(0)
  })

  it('lists 250 names in two rounds: opendir, then one wave of READDIRs', async () => {
    const ch = new FakeChannel()
    ch.names = ['.', '..', ...Array.from({length: 250}, (_, i) => `n${i}`)]
    const p = readDirectory(ch.asSftp(), '/r/chunks/ab')
    expect(await ch.untilIdle(p)).toBe(2)
    expect((await p).map((e) => e.filename)).toEqual(ch.names.slice(2))
  })
})
