// A deliberately small NBD client for tests that need to say exactly what
// goes on the wire (bad clients, per-request errors): fixed newstyle, simple
// replies only, one request at a time. Built on the shared protocol codecs.
import {connect, type Socket} from 'node:net'
import {
  Cmd,
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  Info,
  isErrorReply,
  NBD_MAGIC,
  Opt,
  OPTION_REPLY_HEADER_SIZE,
  Rep,
  SIMPLE_REPLY_SIZE,
} from '../../src/nbd/protocol.js'
import {decodeOptionReplyHeader, encodeInfoRequest, encodeOption, decodeInfoReply} from '../../src/nbd/option-codec.js'
import {decodeSimpleReply, encodeRequest} from '../../src/nbd/transmission-codec.js'
import {WireReader} from '../../src/nbd/wire.js'

export class NbdTestClient {
  private cookie = 1n
  size = 0

  private constructor(
    readonly socket: Socket,
    readonly reader: WireReader,
  ) {}

  static connect(addr: {host: string; port: number} | {path: string}): Promise<NbdTestClient> {
    return new Promise((resolve, reject) => {
      const s = 'path' in addr ? connect(addr.path) : connect(addr.port, addr.host)
      s.once('error', reject)
      s.once('connect', () => {
        s.off('error', reject)
        s.on('error', () => {})
        resolve(new NbdTestClient(s, new WireReader(s)))
      })
    })
  }

  /** Reads the server's greeting and answers with fixed newstyle + no zeroes. */
  async handshake(): Promise<void> {
    const hello = await this.reader.read(18)
    if (hello.readBigUInt64BE(0) !== NBD_MAGIC) throw new Error('no NBDMAGIC')
    const f = Buffer.alloc(4)
    f.writeUInt32BE(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES, 0)
    this.socket.write(f)
  }

  /** Sends an option and collects its replies up to the final one (ACK or an error). */
  async option(option: number, data?: Buffer): Promise<{type: number; data: Buffer}[]> {
    this.socket.write(encodeOption(option, data))
    const replies: {type: number; data: Buffer}[] = []
    for (;;) {
      const h = decodeOptionReplyHeader(await this.reader.read(OPTION_REPLY_HEADER_SIZE))
      const body = await this.reader.read(h.length)
      replies.push({type: h.type, data: body})
      if (h.type === Rep.ACK || isErrorReply(h.type)) return replies
    }
  }

  async go(name: string): Promise<void> {
    const replies = await this.option(Opt.GO, encodeInfoRequest(name, [Info.BLOCK_SIZE]))
    const last = replies[replies.length - 1]!
    if (last.type !== Rep.ACK) throw new Error(`GO failed: ${last.type.toString(16)} ${last.data.toString()}`)
    for (const r of replies) {
      const info = r.type === Rep.INFO ? decodeInfoReply(r.data) : undefined
      if (info && 'size' in info) this.size = info.size
    }
  }

  send(type: number, offset: number, length: number, flags = 0): bigint {
    const cookie = this.cookie++
    this.socket.write(encodeRequest({flags, type, cookie, offset, length}))
    return cookie
  }

  /** A simple reply; `dataLength` bytes follow a successful read. */
  async reply(dataLength = 0): Promise<{error: number; cookie: bigint; data?: Buffer}> {
    const r = decodeSimpleReply(await this.reader.read(SIMPLE_REPLY_SIZE))
    if (r.error !== 0 || dataLength === 0) return r
    return {...r, data: await this.reader.read(dataLength)}
  }

  async read(offset: number, length: number): Promise<{error: number; data?: Buffer}> {
    this.send(Cmd.READ, offset, length)
    return this.reply(length)
  }

  async disconnect(): Promise<void> {
    this.send(Cmd.DISC, 0, 0)
    this.socket.end()
    await new Promise((r) => (this.socket.closed ? r(null) : this.socket.once('close', r)))
  }

  destroy(): void {
    this.socket.destroy()
  }
}
