// The pax tar writer and forward reader: a round trip through our reader
// and GNU tar (-tvf, -xSf giving a sparse file), every truncation a
// DataError, a corrupt header checksum named; the sparse map codec and the
// manifest decoder on bad input.
import {execFileSync, spawnSync} from 'node:child_process'
import {readFileSync, statSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {afterAll, describe, expect, it} from 'vitest'
import {ByteReader} from '../../src/archive/byte-reader.js'
import {decodeManifest} from '../../src/archive/layout.js'
import {decodeSparseMap, encodeSparseMap} from '../../src/archive/tar-format.js'
import {TarStreamReader} from '../../src/archive/tar-stream-reader.js'
import {TarWriter} from '../../src/archive/tar-writer.js'
import {DataError} from '../../src/errors.js'
import {tempDir} from '../helpers/images.js'
import {expectCutsRefused, MemorySink} from '../helpers/memory-sink.js'

const tmp = tempDir('vdsnap-tar-')
afterAll(() => tmp.cleanup())

const BS = 65536
const SIZE = 10 * BS + 123 // last block short, and a hole at the end
const dataBlocks = new Set([1, 2, 5, 10])
function blockOf(b: number): Buffer | null {
  if (!dataBlocks.has(b)) return null
  return Buffer.alloc(Math.min(BS, SIZE - b * BS), b + 1)
}
const longName = `chunks/ab/${'a'.repeat(64)}/${'b'.repeat(40)}` // > 100 bytes: a pax path record

async function archive(): Promise<Buffer> {
  const sink = new MemorySink()
  const w = new TarWriter(sink, 1_700_000_000)
  await w.addStored('manifest.json', Buffer.from('{"a":1}\n'))
  await w.addStored(longName, [Buffer.from('x'.repeat(600)), Buffer.from('y')])
  const segments = [...dataBlocks].sort((a, b) => a - b).map((b) => ({offset: b * BS, length: Math.min(BS, SIZE - b * BS)}))
  const merged = segments.reduce<{offset: number; length: number}[]>((acc, s) => {
    const l = acc[acc.length - 1]
    if (l && l.offset + l.length === s.offset) l.length += s.length
    else acc.push({...s})
    return acc
  }, [])
  async function* blocks() {
    for (let b = 0; b * BS < SIZE; b++) yield {length: Math.min(BS, SIZE - b * BS), data: blockOf(b)}
  }
  await w.addImage('disk.raw', SIZE, merged, blocks())
  await w.addStored('SHA256SUMS', Buffer.from('z\n'))
  await w.finish()
  return sink.bytes
}

function expected(): Buffer {
  const out = Buffer.alloc(SIZE)
  for (const b of dataBlocks) blockOf(b)!.copy(out, b * BS)
  return out
}

async function readAll(bytes: Buffer): Promise<Map<string, Buffer>> {
  const r = new TarStreamReader(new ByteReader(Readable.from([bytes.subarray(0, 700), bytes.subarray(700)]), 'test.tar'))
  const out = new Map<string, Buffer>()
  for (let e = await r.next(); e; e = await r.next()) {
    if (e.streamed) {
      const parts: Buffer[] = []
      for await (const p of r.image(e)) parts.push(p)
      out.set(e.header.name, Buffer.concat(parts))
    } else out.set(e.header.name, e.data)
  }
  await r.finish()
  return out
}

describe('TarWriter and TarStreamReader', () => {
  it('round trip through our reader and GNU tar; tar -xSf gives the image back as a sparse file', async () => {
    const bytes = await archive()
    const back = await readAll(bytes)
    expect([...back.keys()]).toEqual(['manifest.json', longName, 'disk.raw', 'SHA256SUMS'])
    expect(back.get(longName)!.toString()).toBe('x'.repeat(600) + 'y')
    expect(back.get('disk.raw')!.equals(expected())).toBe(true)
    const path = join(tmp.path, 'a.tar')
    writeFileSync(path, bytes)
    const list = execFileSync('tar', ['-tvf', path], {encoding: 'utf8'})
    expect(list).toContain(longName)
    expect(list).toMatch(/disk\.raw/)
    execFileSync('tar', ['-xSf', path, '-C', tmp.path])
    expect(readFileSync(join(tmp.path, 'disk.raw')).equals(expected())).toBe(true)
    expect(statSync(join(tmp.path, 'disk.raw')).blocks * 512).toBeLessThan(SIZE)
    expect(spawnSync('tar', ['-tf', path]).status).toBe(0)
  })

  it('every truncation is a DataError naming the archive', async () => {
    const bytes = await archive()
    const cuts = new Set([0, 1, 511, 512, 513, 1024, bytes.length - 1024 - 1])
    for (let c = 0; c < bytes.length - 1024; c += 3001) cuts.add(c)
    await expectCutsRefused(bytes, cuts, readAll, 'test.tar')
  })

  it('a corrupt header fails its checksum; data after the end is refused', async () => {
    const bytes = await archive()
    const bad = Buffer.from(bytes)
    bad[10] ^= 1
    await expect(readAll(bad)).rejects.toThrow(/checksum/)
    await expect(readAll(Buffer.concat([bytes, Buffer.from('junk')]))).rejects.toThrow(/data follows the end/)
  })
})

describe('codecs on bad input', () => {
  it('sparse map: round trip, out-of-range and overlapping segments refused, an unfinished map asks for more', () => {
    const segs = [{offset: 0, length: 10}, {offset: 512, length: 100}]
    const enc = encodeSparseMap(segs)
    expect(enc.length % 512).toBe(0)
    expect(decodeSparseMap(enc, 1000, 'x')).toEqual({segments: segs, mapBytes: 512})
    expect(() => decodeSparseMap(encodeSparseMap(segs), 300, 'x')).toThrow(DataError)
    expect(() => decodeSparseMap(encodeSparseMap([{offset: 10, length: 10}, {offset: 5, length: 1}]), 100, 'x')).toThrow(DataError)
    expect(decodeSparseMap(Buffer.from('2\n0\n'), 100, 'x')).toBeNull()
    expect(() => decodeSparseMap(Buffer.from('x\n'), 100, 'x')).toThrow(DataError)
  })

  it('manifest.json: newer format, missing fields, inconsistent counts, not JSON', () => {
    const ok = {vdsnapArchive: 1, kind: 'chunks', disk: 'd', virtualSize: 100, blockSize: 64, blockCount: 2, chunkCount: 1}
    expect(decodeManifest(Buffer.from(JSON.stringify(ok)), 'a').disk).toBe('d')
    expect(() => decodeManifest(Buffer.from(JSON.stringify({...ok, vdsnapArchive: 2})), 'a')).toThrow(/archive format 2; this vdsnap reads format 1/)
    expect(() => decodeManifest(Buffer.from(JSON.stringify({...ok, blockCount: 3})), 'a')).toThrow(/inconsistent block count/)
    expect(() => decodeManifest(Buffer.from(JSON.stringify({...ok, virtualSize: -1})), 'a')).toThrow(DataError)
    expect(() => decodeManifest(Buffer.from('{"a":'), 'a')).toThrow(/not valid JSON/)
    expect(() => decodeManifest(Buffer.from('[]'), 'a')).toThrow(/not a vdsnap archive/)
  })
})
