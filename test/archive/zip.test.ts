// The ZIP64 writer and the forward reader: round trips read back by our
// forward parser, node-stream-zip and Info-ZIP unzip -t; every truncation
// of an archive is a DataError (never a hang, never success); and a real
// archive past 4 GiB with more than 65535 entries (a sparse file: the big
// entry is a hole), which needs ZIP64 sizes, offsets and end records.
import {execFileSync, spawnSync} from 'node:child_process'
import {closeSync, ftruncateSync, openSync, writeFileSync, writeSync} from 'node:fs'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {crc32} from 'node:zlib'
import StreamZip from 'node-stream-zip'
import {afterAll, describe, expect, it} from 'vitest'
import {ByteReader} from '../../src/archive/byte-reader.js'
import type {ByteSink} from '../../src/archive/sink.js'
import {ZipStreamReader} from '../../src/archive/zip-stream-reader.js'
import {dosDateTime, METHOD_DEFLATE, METHOD_STORED} from '../../src/archive/zip-format.js'
import {PADDING_NAME, ZipWriter} from '../../src/archive/zip-writer.js'
import {tempDir} from '../helpers/images.js'
import {expectCutsRefused, MemorySink} from '../helpers/memory-sink.js'
import {deflateRawSync} from 'node:zlib'

const tmp = tempDir('vdsnap-zip-')
afterAll(() => tmp.cleanup())

const HOLE = Buffer.alloc(64 * 1024 * 1024)

/** Writes to a file; all-zero buffers of 1 MiB or more become holes (the archive stays small on disk). */
class SparseFileSink implements ByteSink {
  position = 0
  private fd: number
  constructor(readonly path: string) {
    this.fd = openSync(path, 'w')
  }
  async write(b: Buffer) {
    if (b.length < 1024 * 1024 || !b.equals(HOLE.subarray(0, b.length))) writeSync(this.fd, b, 0, b.length, this.position)
    this.position += b.length
  }
  async finish() {
    ftruncateSync(this.fd, this.position)
    closeSync(this.fd)
  }
  async abort() {}
}

const TIME = dosDateTime(new Date('2026-01-02T03:04:05Z'))

async function smallArchive(recordSize = 0): Promise<{bytes: Buffer; entries: Map<string, Buffer>}> {
  const sink = new MemorySink()
  const zip = new ZipWriter(sink, TIME)
  const entries = new Map<string, Buffer>()
  for (let i = 0; i < 5; i++) {
    const data = Buffer.alloc(1000 + i * 777, i + 1)
    entries.set(`chunks/0${i}/entry-${i}`, data)
    await zip.addStored(`chunks/0${i}/entry-${i}`, i % 2 ? [data.subarray(0, 10), data.subarray(10)] : data)
  }
  const image = Buffer.concat([Buffer.alloc(300_000), Buffer.from('hello'), Buffer.alloc(70_000, 7)])
  entries.set('disk.raw', image)
  async function* pieces() {
    for (let o = 0; o < image.length; o += 65536) {
      const plain = image.subarray(o, o + 65536)
      yield {plain}
    }
    yield {encoded: deflateRawSync(image)}
  }
  await zip.addStreamed('disk.raw', METHOD_DEFLATE, pieces())
  entries.set('empty', Buffer.alloc(0))
  await zip.addStored('empty', Buffer.alloc(0))
  await zip.finish('a comment', recordSize)
  return {bytes: sink.bytes, entries}
}

async function readForward(bytes: Buffer): Promise<Map<string, Buffer>> {
  const z = new ZipStreamReader(new ByteReader(Readable.from([bytes.subarray(0, 1000), bytes.subarray(1000)]), 'test.zip'))
  const out = new Map<string, Buffer>()
  for (let e = await z.next(); e; e = await z.next()) {
    if (e.streamed) {
      const parts: Buffer[] = []
      for await (const p of z.inflate(e.header)) parts.push(p)
      out.set(e.header.name, Buffer.concat(parts))
    } else out.set(e.header.name, e.data)
  }
  await z.finish()
  return out
}

describe('ZipWriter and ZipStreamReader', () => {
  it('round trip: the forward reader, node-stream-zip and unzip -t read what the writer wrote', async () => {
    const {bytes, entries} = await smallArchive()
    const back = await readForward(bytes)
    expect([...back.keys()]).toEqual([...entries.keys()])
    for (const [name, data] of entries) expect(back.get(name)!.equals(data), name).toBe(true)
    const path = join(tmp.path, 'small.zip')
    writeFileSync(path, bytes)
    const sz = new StreamZip.async({file: path})
    for (const [name, data] of entries) expect((await sz.entryData(name)).equals(data), name).toBe(true)
    await sz.close()
    const t = spawnSync('unzip', ['-t', path], {encoding: 'utf8'})
    expect(t.status, t.stdout + t.stderr).toBe(0)
    expect(execFileSync('unzip', ['-z', path], {encoding: 'utf8'})).toContain('a comment')
  })

  it('record padding: the archive is a whole number of records, unzip -t passes, the reader skips the padding', async () => {
    for (const rs of [512, 65536, 256 * 1024]) {
      const {bytes, entries} = await smallArchive(rs)
      expect(bytes.length % rs).toBe(0)
      const path = join(tmp.path, `rec-${rs}.zip`)
      writeFileSync(path, Buffer.concat([bytes]))
      expect(spawnSync('unzip', ['-t', path]).status).toBe(0)
      const back = await readForward(bytes)
      expect(back.get(PADDING_NAME)!.every((x) => x === 0)).toBe(true)
      expect(back.size).toBe(entries.size + 1)
    }
  })

  it('every truncation is a DataError naming the archive', async () => {
    const {bytes} = await smallArchive()
    const cuts = new Set<number>([0, 1, 3, 4, 29, 30, 31, bytes.length - 1, bytes.length - 22, bytes.length - 40])
    for (let c = 0; c < bytes.length; c += 997) cuts.add(c)
    await expectCutsRefused(bytes, cuts, readForward, 'test.zip')
  })

  it('a CRC mismatch in a stored entry names the entry', async () => {
    const {bytes} = await smallArchive()
    const bad = Buffer.from(bytes)
    bad[30 + 'chunks/00/entry-0'.length + 500] ^= 1
    await expect(readForward(bad)).rejects.toThrow(/entry chunks\/00\/entry-0 fails its CRC/)
  })

  it('past 4 GiB and 65535 entries: ZIP64 sizes, offsets and end records, accepted by unzip -t and node-stream-zip', async () => {
    const path = join(tmp.path, 'big.zip')
    const sink = new SparseFileSink(path)
    const zip = new ZipWriter(sink, TIME)
    await zip.addStored('first', Buffer.from('before the big entry'))
    const BIG = 4 * 1024 ** 3 + 5 * 1024 * 1024
    const zeros = Buffer.alloc(64 * 1024 * 1024)
    async function* big() {
      for (let done = 0; done < BIG; done += zeros.length) {
        const piece = zeros.subarray(0, Math.min(zeros.length, BIG - done))
        yield {plain: piece, encoded: piece}
      }
    }
    await zip.addStreamed('big.raw', METHOD_STORED, big())
    for (let i = 0; i < 70_000; i++) await zip.addStored(`n/${i}`, Buffer.from(String(i)))
    await zip.addStored('last', Buffer.from('after 4 GiB'))
    await zip.finish()
    await sink.finish()
    expect(sink.position).toBeGreaterThan(2 ** 32)
    // All entries but the 4 GiB hole, whose CRC is checked below (reading
    // it through unzip costs minutes on a busy machine and proves no more).
    const t = spawnSync('unzip', ['-tq', path, '-x', 'big.raw'], {encoding: 'utf8', maxBuffer: 64 * 1024 * 1024})
    expect(t.status, t.stdout.slice(-2000) + t.stderr).toBe(0)
    expect(t.stdout).toContain('No errors detected')
    expect(execFileSync('unzip', ['-p', path, 'last'], {encoding: 'utf8'})).toBe('after 4 GiB')
    const sz = new StreamZip.async({file: path})
    expect(await sz.entriesCount).toBe(70_003)
    const e = (await sz.entry('big.raw'))!
    expect(e.size).toBe(BIG)
    let crc = 0
    for (let done = 0; done < BIG; done += zeros.length) crc = crc32(zeros.subarray(0, Math.min(zeros.length, BIG - done)), crc)
    expect(e.crc >>> 0).toBe(crc >>> 0)
    // local header offsets: the big entry's near the start, the last one's past 4 GiB (ZIP64 extra field)
    expect(e.offset).toBeLessThan(100)
    expect((await sz.entry('last'))!.offset).toBeGreaterThan(2 ** 32)
    expect((await sz.entryData('last')).toString()).toBe('after 4 GiB')
    expect((await sz.entryData('n/69999')).toString()).toBe('69999')
    await sz.close()
  }, 300_000)
})
