// The NBD client against real servers on unix sockets: qemu-nbd (structured
// replies, meta contexts, block sizes), nbdkit's eval plugin (a block status
// reply that covers less than asked, every time), its blocksize-policy
// filter (a small maximum request the client must honour) and its error
// filter (a server errno on reads).
import {execFileSync} from 'node:child_process'
import {readFileSync} from 'node:fs'
import {createServer} from 'node:net'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {NbdImage} from '../../src/disk/nbd-image.js'
import {DataError, IoError, UsageError} from '../../src/errors.js'
import {NbdClient} from '../../src/nbd/client.js'
import {parseNbdUrl} from '../../src/nbd/url.js'
import {tempDir} from '../helpers/images.js'
import {startNbdkit, startQemuNbd, type NbdServer} from '../helpers/nbd.js'
import {startNbdProxy} from '../helpers/nbd-proxy.js'

const KiB = 1024
const MiB = 1024 * KiB

describe('NBD URLs', () => {
  it.each([
    ['nbd://127.0.0.1/vda', {exportName: 'vda', host: '127.0.0.1', port: 10809}],
    ['nbd://localhost:10810/', {exportName: '', host: 'localhost', port: 10810}],
    ['nbd://[::1]:7000/drive%2Dvirtio%20disk0', {exportName: 'drive-virtio disk0', host: '::1', port: 7000}],
    ['nbd+unix:///disk?socket=/run/qemu/nbd.sock', {exportName: 'disk', socket: '/run/qemu/nbd.sock'}],
    ['nbd+unix://?socket=/tmp/s', {exportName: '', socket: '/tmp/s'}],
  ])('%s', (url, want) => {
    expect(parseNbdUrl(url)).toEqual({url, ...want})
  })

  it.each([
    ['nbds://127.0.0.1/vda', /TLS is not supported/],
    ['nbd+unix:///disk', /no socket=PATH/],
    ['nbd+unix://host/disk?socket=/s', /has no host/],
    ['nbd://127.0.0.1/vda?tls=on', /unknown query parameter "tls"/],
    ['nbd+vsock://3/disk', /transport is not supported/],
    ['nbd://127.0.0.1/%zz', /percent-encoding/],
  ])('refuses %s with a usage error naming it', (url, why) => {
    let err: unknown
    try {
      parseNbdUrl(url)
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(UsageError)
    expect((err as Error).message).toMatch(why)
    expect((err as Error).message.startsWith(url)).toBe(true)
  })
})

describe('NBD client', () => {
  const dir = tempDir()
  const image = join(dir.path, 'disk.qcow2')
  const raw = join(dir.path, 'disk.raw')
  let qemu: NbdServer
  beforeAll(() => {
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', image, String(24 * MiB)])
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 5 1M 3M', '-c', 'write -P 6 12M 64k', '-c', 'write -P 7 20M 1k', image], {stdio: 'ignore'})
    execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', image, raw])
    qemu = startQemuNbd(dir.path, image, {exportName: 'vm disk'})
  })
  afterAll(async () => {
    await qemu.stop()
    dir.cleanup()
  })

  it('negotiates structured replies, meta contexts and block sizes with qemu-nbd', async () => {
    const c = await NbdClient.connect(parseNbdUrl(qemu.url), {metaContexts: ['base:allocation', 'qemu:dirty-bitmap:none']})
    try {
      expect(c.size).toBe(24 * MiB)
      expect(c.structured).toBe(true)
      expect([...c.contexts.keys()]).toEqual(['base:allocation']) // no such bitmap: not granted
      expect(c.blockSizes.max).toBeGreaterThanOrEqual(4 * MiB)
      expect(c.blockSizes.max).toBeLessThanOrEqual(32 * MiB)
    } finally {
      await c.close()
    }
  })

  it('pipelined reads at odd offsets and lengths return what qemu-img convert reads', async () => {
    const img = await NbdImage.open(qemu.url)
    const want = readFileSync(raw)
    try {
      expect(await img.allocatedRanges()).toEqual([
        {offset: 1 * MiB, length: 3 * MiB},
        {offset: 12 * MiB, length: 64 * KiB},
        {offset: 20 * MiB, length: 64 * KiB}, // a qcow2 cluster
      ])
      const reads = Array.from({length: 40}, (_, i) => ({offset: (i * 611 * KiB + i * 512) % (20 * MiB), length: 512 + ((i * 37 * KiB) % (3 * MiB))}))
      const bufs = reads.map((r) => Buffer.alloc(r.length))
      await Promise.all(reads.map((r, i) => img.read(bufs[i]!, r.offset, r.length)))
      reads.forEach((r, i) => expect(bufs[i]!.equals(want.subarray(r.offset, r.offset + r.length))).toBe(true))
      const whole = Buffer.alloc(24 * MiB)
      await img.read(whole, 0)
      expect(whole.equals(want)).toBe(true)
    } finally {
      await img.close()
    }
  })

  it('keeps reads in flight: a proxy that answers nothing until 6 reads have arrived does not stall a 24 MiB read', async () => {
    const proxy = await startNbdProxy(qemu.socket, Infinity, 6)
    const img = await NbdImage.open(proxy.url('vm disk'))
    try {
      const buf = Buffer.alloc(24 * MiB)
      await img.read(buf, 0)
      expect(proxy.readsForwarded).toBe(6) // 4 MiB requests, all sent before any reply
      expect(buf.equals(readFileSync(raw))).toBe(true)
    } finally {
      await img.close()
      await proxy.close()
    }
  })

  it('loops over block status replies that cover less than asked (nbdkit eval: one 64 KiB extent per reply)', async () => {
    const kit = startNbdkit(dir.path, [
      'eval',
      'get_size=echo 1048576',
      'pread=head -c $3 /dev/zero',
      // one extent per reply: data on even 64 KiB pieces, zero holes on odd ones
      'extents=if [ $(( $4 / 65536 % 2 )) = 0 ]; then echo $4 65536 0; else echo $4 65536 3; fi',
    ], 'eval')
    const img = await NbdImage.open(kit.url)
    try {
      const ranges = await img.allocatedRanges()
      expect(ranges).toEqual(Array.from({length: 8}, (_, i) => ({offset: 2 * i * 64 * KiB, length: 64 * KiB})))
    } finally {
      await img.close()
      await kit.stop()
    }
  })

  it('honours the server\'s maximum request size (nbdkit blocksize-policy refuses larger ones)', async () => {
    const kit = startNbdkit(dir.path, [
      '--filter=blocksize-policy', 'pattern', '8M',
      'blocksize-minimum=512', 'blocksize-preferred=65536', 'blocksize-maximum=262144', 'blocksize-error-policy=error',
    ], 'policy')
    const img = await NbdImage.open(kit.url)
    try {
      const buf = Buffer.alloc(3 * MiB)
      await img.read(buf, 2 * MiB)
      // the pattern plugin writes each 8-byte offset as a big-endian number
      for (const at of [0, 8, 256 * KiB, 3 * MiB - 8]) expect(Number(buf.readBigUInt64BE(at))).toBe(2 * MiB + at)
    } finally {
      await img.close()
      await kit.stop()
    }
  })

  it('a peer that accepts and never answers ends the handshake with an I/O error after the time-out', async () => {
    const mute = createServer(() => {}) // accepts, never writes
    await new Promise<void>((resolve) => mute.listen(0, '127.0.0.1', resolve))
    const url = `nbd://127.0.0.1:${(mute.address() as {port: number}).port}/disk`
    try {
      const err = await NbdClient.connect(parseNbdUrl(url), {connectTimeoutMs: 300}).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(IoError)
      expect((err as Error).message).toMatch(new RegExp(`^${url}: lost the connection to the NBD server during the handshake \\(connection error: no answer for 0.3 s`))
    } finally {
      mute.close()
    }
  })

  it('a server that prefers 32 MiB requests gets them, and a 32 MiB reply chunk is accepted', async () => {
    const kit = startNbdkit(dir.path, ['--filter=blocksize-policy', 'pattern', '64M', 'blocksize-preferred=33554432', 'blocksize-maximum=33554432'], 'big')
    const img = await NbdImage.open(kit.url)
    try {
      const buf = Buffer.alloc(32 * MiB)
      await img.read(buf, 32 * MiB)
      for (const at of [0, 16 * MiB, 32 * MiB - 8]) expect(Number(buf.readBigUInt64BE(at))).toBe(32 * MiB + at)
    } finally {
      await img.close()
      await kit.stop()
    }
  })

  it('a server without structured replies (nbdkit --no-sr): simple replies, and the whole disk is a candidate', async () => {
    const kit = startNbdkit(dir.path, ['--no-sr', 'pattern', '4M'], 'nosr')
    const img = await NbdImage.open(kit.url, {bitmap: 'b0'})
    try {
      expect(img.hasBitmap).toBe(false)
      expect(await img.allocatedRanges()).toEqual([{offset: 0, length: 4 * MiB}])
      const buf = Buffer.alloc(3 * MiB)
      await img.read(buf, 1 * MiB)
      for (const at of [0, 8, 3 * MiB - 8]) expect(Number(buf.readBigUInt64BE(at))).toBe(1 * MiB + at)
    } finally {
      await img.close()
      await kit.stop()
    }
  })

  it('an oldstyle server (nbdkit -o) is refused with a data error saying so', async () => {
    const kit = startNbdkit(dir.path, ['-o', 'pattern', '1M'], 'old')
    try {
      const err = await NbdImage.open(kit.url).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(DataError)
      expect((err as Error).message).toMatch(/^nbd\+unix:.*oldstyle negotiation/)
    } finally {
      await kit.stop()
    }
  })

  it('a read the server fails (EIO) is an I/O error naming the URL, offset and errno', async () => {
    const kit = startNbdkit(dir.path, ['--filter=error', 'pattern', '8M', 'error-pread=EIO', 'error-pread-rate=100%'], 'error')
    const img = await NbdImage.open(kit.url)
    try {
      const err = await img.read(Buffer.alloc(64 * KiB), 128 * KiB).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(IoError)
      expect((err as Error).message).toContain(kit.url)
      expect((err as Error).message).toMatch(/read of 65536 bytes at offset 131072 with EIO/)
    } finally {
      await img.close()
      await kit.stop()
    }
  })
})
