import {PassThrough} from 'node:stream'
import {describe, expect, it} from 'vitest'
import * as P from '../../src/nbd/protocol.js'
import * as O from '../../src/nbd/option-codec.js'
import * as T from '../../src/nbd/transmission-codec.js'
import {WireReader} from '../../src/nbd/wire.js'

describe('NBD protocol codecs', () => {
  it('round-trips options, option replies, requests and structured headers', () => {
    const opt = O.encodeOption(P.Opt.GO, O.encodeInfoRequest('disk', [P.Info.BLOCK_SIZE]))
    const h = O.decodeOptionHeader(opt)
    expect(h).toEqual({option: P.Opt.GO, length: opt.length - P.OPTION_HEADER_SIZE})
    expect(O.decodeInfoRequest(opt.subarray(P.OPTION_HEADER_SIZE))).toEqual({name: 'disk', infos: [P.Info.BLOCK_SIZE]})

    const rep = O.encodeOptionReply(P.Opt.GO, P.Rep.ERR_UNKNOWN, Buffer.from('no such export'))
    const rh = O.decodeOptionReplyHeader(rep)
    expect(rh).toEqual({option: P.Opt.GO, type: P.Rep.ERR_UNKNOWN, length: 14})
    expect(P.isErrorReply(rh.type)).toBe(true)

    const req = {flags: P.CmdFlag.REQ_ONE, type: P.Cmd.BLOCK_STATUS, cookie: 0xfedcba9876543210n, offset: 2 ** 40, length: 65536}
    expect(T.decodeRequest(T.encodeRequest(req))).toEqual(req)

    const sh = {flags: P.REPLY_FLAG_DONE, type: P.Reply.OFFSET_HOLE, cookie: 7n, length: 12}
    expect(T.decodeStructuredHeader(T.encodeStructuredHeader(sh))).toEqual(sh)
    expect(T.decodeSimpleReply(T.encodeSimpleReply(9n, P.Errno.EIO))).toEqual({error: P.Errno.EIO, cookie: 9n})
  })

  it('round-trips meta contexts, infos, block status and errors', () => {
    const mc = O.encodeMetaContextRequest('', [P.BASE_ALLOCATION, P.DIRTY_BITMAP_PREFIX + 'b0'])
    expect(O.decodeMetaContextRequest(mc)).toEqual({name: '', queries: ['base:allocation', 'qemu:dirty-bitmap:b0']})
    expect(O.decodeMetaContextReply(O.encodeMetaContextReply(3, 'base:allocation'))).toEqual({id: 3, name: 'base:allocation'})
    expect(O.decodeInfoReply(O.encodeInfoExport({size: 5 * 2 ** 32, flags: P.TFlag.HAS_FLAGS | P.TFlag.READ_ONLY}))).toEqual({
      type: P.Info.EXPORT,
      size: 5 * 2 ** 32,
      flags: 3,
    })
    expect(O.decodeInfoReply(O.encodeInfoBlockSize(1, 4096, 32 << 20))).toEqual({type: P.Info.BLOCK_SIZE, min: 1, preferred: 4096, max: 32 << 20})
    const bs = [{length: 65536, flags: P.STATE_HOLE | P.STATE_ZERO}, {length: 4096, flags: 0}]
    expect(T.decodeBlockStatus(T.encodeBlockStatus(1, bs))).toEqual({contextId: 1, extents: bs})
    expect(T.decodeErrorPayload(T.encodeErrorPayload(P.Errno.EIO, 'chunk failed verification', 4096))).toEqual({
      error: P.Errno.EIO,
      message: 'chunk failed verification',
    })
  })

  it('refuses truncated, oversized and foreign input with NbdProtocolError', () => {
    const req = T.encodeRequest({flags: 0, type: P.Cmd.READ, cookie: 1n, offset: 0, length: 1})
    expect(() => T.decodeRequest(req.subarray(0, 27))).toThrow(P.NbdProtocolError)
    const bad = Buffer.from(req)
    bad.writeUInt32BE(0xdeadbeef, 0)
    expect(() => T.decodeRequest(bad)).toThrow(/magic/)
    const huge = Buffer.from(req)
    huge.writeBigUInt64BE(2n ** 63n, 16)
    expect(() => T.decodeRequest(huge)).toThrow(/too large/)
    expect(() => O.decodeOptionHeader(Buffer.alloc(16))).toThrow(/IHAVEOPT/)
    const name = Buffer.alloc(8)
    name.writeUInt32BE(100_000, 0)
    expect(() => O.decodeInfoRequest(name)).toThrow(/at most/)
    expect(() => O.decodeInfoRequest(Buffer.concat([O.encodeInfoRequest('a', [1]), Buffer.alloc(1)]))).toThrow(/trailing/)
    expect(() => T.decodeBlockStatus(Buffer.alloc(10))).toThrow(P.NbdProtocolError)
    expect(() => T.decodeErrorPayload(Buffer.from([0, 0, 0, 5, 0, 9, 65]))).toThrow(P.NbdProtocolError)
  })
})

describe('WireReader', () => {
  it('reads exact lengths across chunk boundaries and fails on a short stream', async () => {
    const s = new PassThrough()
    const r = new WireReader(s, 1024)
    s.write(Buffer.from([1, 2, 3]))
    s.write(Buffer.from([4, 5]))
    expect([...(await r.read(4))]).toEqual([1, 2, 3, 4])
    const next = r.read(3)
    s.write(Buffer.from([6]))
    s.end()
    await expect(next).rejects.toThrow(/after 2 of 3 bytes/)
    await expect(r.read(2000)).rejects.toThrow(/at most 1024/)
  })
})
