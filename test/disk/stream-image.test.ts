// StreamImage over real Node streams: in-order reads across chunk
// boundaries (several queued at once, as the backup's batches issue them),
// an out-of-order read refused, the end checked exactly (short, long), the
// producer's failure preferred to "short", and the idle time-out stopping a
// source that sends nothing (a PassThrough never written: no race, it can
// only time out).
import {PassThrough, Readable} from 'node:stream'
import {describe, expect, it} from 'vitest'
import {StreamImage} from '../../src/disk/stream-image.js'
import {stdinSource, type StreamSource} from '../../src/disk/stream-source.js'
import {DataError, IoError, UsageError} from '../../src/errors.js'
import {prng} from '../helpers/images.js'

function bytes(n: number, seed = 1): Buffer {
  const rnd = prng(seed)
  return Buffer.from(Array.from({length: n}, () => (rnd() * 256) | 0))
}

/** A source over `stream` whose producer ends with `outcome`. */
function source(stream: Readable, outcome: Error | undefined = undefined): StreamSource & {stops: number} {
  const s = {
    label: 'test',
    stream,
    stops: 0,
    finished: async () => {
      if (outcome) throw outcome
    },
    stop: async () => {
      s.stops++
      stream.destroy()
    },
  }
  return s
}

/** A stream of `data` in uneven chunks. */
function chunked(data: Buffer): Readable {
  const parts: Buffer[] = []
  for (let at = 0, i = 0; at < data.length; i++) {
    const n = [1, 4093, 70000, 512, 9][i % 5]!
    parts.push(data.subarray(at, at + n))
    at += n
  }
  return Readable.from(parts, {objectMode: false})
}

describe('StreamImage', () => {
  it('serves reads queued at once, in order, across chunk boundaries; the end is exact', async () => {
    const data = bytes(300_000)
    const img = new StreamImage(source(chunked(data)), data.length)
    expect(await img.allocatedRanges()).toEqual([{offset: 0, length: data.length}])
    const sizes = [65536, 100_000, 4096, 130_368]
    const bufs = sizes.map((n) => Buffer.alloc(n))
    let at = 0
    await Promise.all(bufs.map((b) => {
      const p = img.read(b, at, b.length)
      at += b.length
      return p
    }))
    expect(Buffer.concat(bufs).equals(data)).toBe(true)
    await img.endOfRead()
    await img.close()
  })

  it('refuses a read out of order', async () => {
    const img = new StreamImage(source(chunked(bytes(8192))), 8192)
    await expect(img.read(Buffer.alloc(4096), 4096)).rejects.toThrow(/read at 4096, expected 0/)
    await img.close()
  })

  it('a short stream is a DataError; the producer\'s own failure comes first', async () => {
    const short = new StreamImage(source(chunked(bytes(5000))), 8192)
    await expect(short.read(Buffer.alloc(8192), 0)).rejects.toThrow(DataError)
    const failed = new StreamImage(source(chunked(bytes(5000)), new IoError('source command "x" exited with status 2: boom')), 8192)
    await expect(failed.read(Buffer.alloc(8192), 0)).rejects.toThrow(/exited with status 2: boom/)
  })

  it('a longer stream is refused at the end, and its producer stopped', async () => {
    const src = source(chunked(bytes(8192 + 1)))
    const img = new StreamImage(src, 8192)
    await img.read(Buffer.alloc(8192), 0)
    await expect(img.endOfRead()).rejects.toThrow(/longer than the disk's 8192 bytes/)
    expect(src.stops).toBe(1)
  })

  it('a source that sends nothing for the idle time-out is stopped', async () => {
    const src = source(new PassThrough())
    const img = new StreamImage(src, 4096, 50)
    await expect(img.read(Buffer.alloc(4096), 0)).rejects.toThrow(/waited more than 0.05s to send data \(--source-timeout\)/)
    expect(src.stops).toBe(1)
  })

  it('standard input that is a terminal is refused', () => {
    const tty = Object.assign(new PassThrough(), {isTTY: true})
    expect(() => stdinSource(tty)).toThrow(UsageError)
  })
})
