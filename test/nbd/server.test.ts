// Bad clients against the real server (`vdsnap serve` in a child process):
// garbage and truncated handshakes, unknown and malformed options, requests
// outside the disk or above the limits, writes to a read-only export, a
// client that leaves in the middle of its replies, and 50 connect-disconnect
// cycles. Each gets an NBD error (or, where the protocol has none, a closed
// connection and a log line); the server stays up and afterwards holds as
// many file descriptors and sockets as before, and about the same memory.
import {writeFileSync} from 'node:fs'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {vdsnapJson} from '../helpers/cli.js'
import {NbdTestClient} from '../helpers/nbd-client.js'
import {prng} from '../helpers/images.js'
import {openHandles, residentBytes, startServe, type ServeProcess} from '../helpers/serve.js'
import {Cmd, Opt, Rep, IHAVEOPT} from '../../src/nbd/protocol.js'
import {encodeInfoRequest, encodeMetaContextRequest} from '../../src/nbd/option-codec.js'
import {formatWorkspace, initRepo, MiB} from '../integration/format-fixtures.js'

const DISK = 4 * MiB
const ws = formatWorkspace('vdsnap-nbd-server-')
let disk: Buffer
let server: ServeProcess
let port = 0
/** Connections made so far: the server numbers them in the same order. */
let made = 0

async function client(): Promise<NbdTestClient> {
  const c = await NbdTestClient.connect({host: '127.0.0.1', port})
  made++
  return c
}

/** Waits until the server has logged the end of every connection made so far. */
async function allEnded(): Promise<void> {
  await server.waitFor(new RegExp(`client #${made} ended`))
  for (let i = 1; i <= made; i++) expect(server.stderr()).toMatch(new RegExp(`client #${i} ended`))
}

function closed(c: NbdTestClient): Promise<void> {
  return new Promise((r) => (c.socket.closed ? r() : c.socket.once('close', () => r())))
}

beforeAll(async () => {
  const rnd = prng(3)
  disk = Buffer.alloc(DISK)
  for (let i = 0; i < 2 * MiB; i++) disk[i] = rnd() < 0.5 ? 0 : Math.floor(rnd() * 256)
  writeFileSync(ws.at('disk.raw'), disk)
  await initRepo(ws)
  const snap = (await vdsnapJson(['backup', ws.at('disk.raw'), '--disk', 'web'], ws.env)).snapshot
  server = await startServe([snap, '--listen', '127.0.0.1:0'], ws.env)
  port = Number(server.where.split(':')[1])
})
afterAll(async () => {
  const r = await server?.stop()
  if (process.env.DEBUG_SERVE) console.log(r?.stderr)
  ws.cleanup()
  expect(r?.code).toBe(0)
})

describe('handshake', () => {
  it('garbage, a truncated handshake, old-style flags: the connection is closed and logged, the server stays up', async () => {
    const garbage = await client()
    await garbage.reader.read(18)
    garbage.socket.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))
    await closed(garbage)
    await server.waitFor(new RegExp(`client #${made} ended: (the client does not speak fixed newstyle|unknown client flags|option without the IHAVEOPT magic)`))

    const truncated = await client()
    await truncated.handshake()
    const h = Buffer.alloc(10)
    h.writeBigUInt64BE(IHAVEOPT, 0)
    truncated.socket.end(h)
    await closed(truncated)
    await server.waitFor(new RegExp(`client #${made} ended: .*after 10 of 16 bytes`))

    const old = await client()
    await old.reader.read(18)
    old.socket.write(Buffer.alloc(4))
    await closed(old)
    await server.waitFor(new RegExp(`client #${made} ended: the client does not speak fixed newstyle`))

    const silent = await client()
    silent.destroy()
    await allEnded()
  })

  it('unknown and malformed options get NBD error replies and haggling goes on; ABORT is acknowledged', async () => {
    const c = await client()
    await c.handshake()
    expect((await c.option(99, Buffer.from('xyzw')))[0]!.type).toBe(Rep.ERR_UNSUP)
    expect((await c.option(Opt.STARTTLS))[0]!.type).toBe(Rep.ERR_UNSUP)
    const list = await c.option(Opt.LIST)
    expect(list.map((r) => r.type)).toEqual([Rep.SERVER, Rep.ACK])
    expect(list[0]!.data.subarray(4).toString()).toBe('web')
    expect((await c.option(Opt.INFO, encodeInfoRequest('nope', [])))[0]!.type).toBe(Rep.ERR_UNKNOWN)
    expect((await c.option(Opt.GO, Buffer.from([0, 0, 0, 9, 1])))[0]!.type).toBe(Rep.ERR_INVALID)
    expect((await c.option(Opt.SET_META_CONTEXT, encodeMetaContextRequest('web', ['base:allocation'])))[0]!.type).toBe(Rep.ERR_INVALID)
    expect((await c.option(Opt.INFO, Buffer.alloc(100 * 1024)))[0]!.type).toBe(Rep.ERR_TOO_BIG)
    expect((await c.option(Opt.STRUCTURED_REPLY, Buffer.from('x')))[0]!.type).toBe(Rep.ERR_INVALID)
    const listMeta = await c.option(Opt.LIST_META_CONTEXT, encodeMetaContextRequest('web', []))
    expect(listMeta.map((r) => r.type)).toEqual([Rep.META_CONTEXT, Rep.ACK])
    expect((await c.option(Opt.ABORT)).map((r) => r.type)).toEqual([Rep.ACK])
    await closed(c)
    await server.waitFor(new RegExp(`client #${made} ended: aborted the handshake`))
  })
})

describe('transmission', () => {
  it('reads past the end, oversize and empty requests, writes to a read-only export, unknown commands: NBD errors, then a good read', async () => {
    const c = await client()
    await c.handshake()
    await c.go('')
    expect(c.size).toBe(DISK)
    expect((await c.read(DISK - 512, 1024)).error).toBe(22) // EINVAL
    expect((await c.read(DISK, 1)).error).toBe(22)
    expect((await c.read(0, 0)).error).toBe(22)
    expect((await c.read(0, 48 * MiB)).error).toBe(22)
    c.send(Cmd.WRITE, 0, 4096)
    c.socket.write(Buffer.alloc(4096, 7))
    expect((await c.reply()).error).toBe(1) // EPERM
    c.send(Cmd.WRITE_ZEROES, 0, 4096)
    expect((await c.reply()).error).toBe(1)
    c.send(Cmd.BLOCK_STATUS, 0, 4096)
    expect((await c.reply()).error).toBe(22) // no base:allocation negotiated
    c.send(99, 0, 4096)
    expect((await c.reply()).error).toBe(22)
    c.send(Cmd.FLUSH, 0, 0)
    expect((await c.reply()).error).toBe(0)
    const good = await c.read(MiB - 100, 300)
    expect(good.error).toBe(0)
    expect(good.data!.equals(disk.subarray(MiB - 100, MiB + 200))).toBe(true)
    // a write too long to take ends the connection (after an error reply)
    c.send(Cmd.WRITE, 0, 40 * MiB)
    expect((await c.reply()).error).toBe(22)
    await closed(c)
    await server.waitFor(new RegExp(`client #${made} ended: .*40 ?\\d* ?.*closing`))
  })

  it('a client that disconnects in the middle of its replies, and 50 connect-disconnect cycles, leak nothing', async () => {
    // warm up: one full read fills the cache, so memory is measured at its working size
    const warm = await client()
    await warm.handshake()
    await warm.go('web')
    for (let off = 0; off < DISK; off += MiB) expect((await warm.read(off, MiB)).data!.equals(disk.subarray(off, off + MiB))).toBe(true)
    await warm.disconnect()
    await allEnded()
    const before = openHandles(server.pid)
    const rssBefore = residentBytes(server.pid)

    const rude = await client()
    await rude.handshake()
    await rude.go('web')
    for (let i = 0; i < 8; i++) rude.send(Cmd.READ, 0, DISK)
    await rude.reader.read(1000) // part of the first reply
    rude.destroy()
    await allEnded()

    for (let i = 0; i < 50; i++) {
      const c = await client()
      if (i % 3 === 0) c.destroy()
      else {
        await c.handshake()
        await c.go('web')
        const r = await c.read((i * 65536) % DISK, 65536)
        expect(r.error).toBe(0)
        if (i % 3 === 1) await c.disconnect()
        else c.destroy()
      }
    }
    await allEnded()
    const after = openHandles(server.pid)
    expect(after).toEqual(before)
    expect(residentBytes(server.pid) - rssBefore).toBeLessThan(48 * MiB)
    // and it still serves
    const last = await client()
    await last.handshake()
    await last.go('web')
    expect((await last.read(0, 4096)).data!.equals(disk.subarray(0, 4096))).toBe(true)
    await last.disconnect()
    await allEnded()
  })
})
