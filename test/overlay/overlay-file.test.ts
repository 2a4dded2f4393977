// The overlay file: header codec (round trip, truncated, damaged, another
// snapshot), copy-on-write semantics (partial sectors merged with the base,
// whole-sector zeroes stored as map entries), and the crash contract: what a
// second reader finds on disk before and after flush().
import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import {hostname} from 'node:os'
import {afterAll, describe, expect, it} from 'vitest'
import {DataError, LockedError, NotFoundError, UsageError} from '../../src/errors.js'
import {BASE, DATA, OverlayFile, ZERO} from '../../src/overlay/overlay-file.js'
import {decodeHeader, encodeHeader, HEADER_SIZE, newHeader, SECTOR} from '../../src/overlay/overlay-header.js'
import {tempDir} from '../helpers/images.js'

const tmp = tempDir('vdsnap-overlay-')
afterAll(() => tmp.cleanup())
const SNAP = 'ab'.repeat(32)
const SIZE = 1024 * 1024 + 1000 // not a whole number of sectors
const base = Buffer.alloc(SIZE)
for (let i = 0; i < SIZE; i++) base[i] = (i * 7) & 0xff
const readBase = async (offset: number, length: number) => Buffer.from(base.subarray(offset, offset + length))
const open = (path: string, readOnly = false, create = !readOnly) => OverlayFile.open(path, {snapshotId: SNAP, virtualSize: SIZE, create, readOnly})
async function view(ov: OverlayFile, offset = 0, length = SIZE): Promise<Buffer> {
  const b = await readBase(offset, length)
  await ov.patch(b, offset)
  return b
}

describe('header', () => {
  it('round-trips and lays out map and data', () => {
    const h = newHeader(SNAP, SIZE)
    expect(decodeHeader(encodeHeader(h), 'x')).toEqual(h)
    expect(h.mapOffset).toBe(HEADER_SIZE)
    expect(h.mapLength).toBe(SECTOR) // 257 sectors, 2 bits each
    expect(h.dataOffset).toBe(1024 * 1024)
  })
  it('refuses truncated, damaged and foreign files with one line', async () => {
    const enc = encodeHeader(newHeader(SNAP, SIZE))
    expect(() => decodeHeader(enc.subarray(0, 100), 'f')).toThrow(/f is not a vdsnap overlay file/)
    const bad = Buffer.from(enc)
    bad[20]! ^= 1
    expect(() => decodeHeader(bad, 'f')).toThrow(/checksum mismatch/)
    const path = `${tmp.path}/foreign`
    writeFileSync(path, Buffer.alloc(8192, 1))
    await expect(open(path)).rejects.toThrow(DataError)
    await expect(open(`${tmp.path}/missing`, true)).rejects.toThrow(NotFoundError)
  })
  it('refuses an overlay of another snapshot', async () => {
    const path = `${tmp.path}/other`
    await (await open(path)).close()
    const e = await OverlayFile.open(path, {snapshotId: 'cd'.repeat(32), virtualSize: SIZE, create: true, readOnly: false}).catch((x) => x)
    expect(e).toBeInstanceOf(UsageError)
    expect(e.message).toBe(`overlay ${path} belongs to snapshot abababab, not cdcdcdcd`)
  })
})

describe('copy on write', () => {
  it('merges partial sectors with the base, keeps whole-sector zeroes as map entries, and reads back after reopening', async () => {
    const path = `${tmp.path}/cow`
    const ov = await open(path)
    const want = Buffer.from(base)
    await ov.write(100, Buffer.alloc(50, 0xaa), readBase)
    want.fill(0xaa, 100, 150)
    await ov.write(SECTOR - 10, Buffer.alloc(SECTOR + 20, 0xbb), readBase)
    want.fill(0xbb, SECTOR - 10, 2 * SECTOR + 10)
    await ov.zero(5 * SECTOR + 1, 3 * SECTOR, readBase)
    want.fill(0, 5 * SECTOR + 1, 8 * SECTOR + 1)
    await ov.write(SIZE - 3, Buffer.from([1, 2, 3]), readBase)
    want.set([1, 2, 3], SIZE - 3)
    expect((await view(ov)).equals(want)).toBe(true)
    expect([0, 1, 2, 5, 6, 7, 8, 9].map((s) => ov.state(s))).toEqual([DATA, DATA, DATA, DATA, ZERO, ZERO, DATA, BASE])
    expect(ov.covers(SECTOR, SECTOR)).toBe(true)
    expect(ov.touches(9 * SECTOR, SECTOR)).toBe(false)
    await ov.close()
    const again = await open(path, true)
    expect((await view(again)).equals(want)).toBe(true)
    expect(again.changedSectors()).toBe(8) // sectors 0-2, 5-8 and the last
    await again.close()
  })

  it('a crash before flush leaves the on-disk map as it was; after flush a new reader sees the writes', async () => {
    const path = `${tmp.path}/crash`
    const ov = await open(path)
    await ov.write(0, Buffer.alloc(SECTOR, 0x42), readBase)
    const early = await open(path, true)
    expect(early.state(0)).toBe(BASE)
    expect((await view(early, 0, SECTOR)).equals(base.subarray(0, SECTOR))).toBe(true)
    await early.close()
    await ov.flush()
    const late = await open(path, true)
    expect(late.state(0)).toBe(DATA)
    expect((await view(late, 0, SECTOR)).equals(Buffer.alloc(SECTOR, 0x42))).toBe(true)
    await late.close()
    await ov.close()
  })

  it('refuses a map entry that means nothing', async () => {
    const path = `${tmp.path}/badmap`
    await (await open(path)).close()
    const bytes = readFileSync(path)
    bytes[HEADER_SIZE] = 0b11
    writeFileSync(path, bytes)
    await expect(open(path)).rejects.toThrow(/map entry for sector 0 is invalid/)
  })
})

describe('one writer at a time', () => {
  it('refuses an overlay a live process holds (writers and readers), takes over a dead one\'s lock, releases on close', async () => {
    const path = `${tmp.path}/locked`
    await (await open(path)).close()
    expect(existsSync(`${path}.lock`)).toBe(false)
    writeFileSync(`${path}.lock`, JSON.stringify({host: hostname(), pid: 1}))
    const w = await open(path).catch((e) => e)
    expect(w).toBeInstanceOf(LockedError)
    expect(w.message).toBe(`overlay ${path} is in use by process 1 on ${hostname()}`)
    await expect(open(path, true)).rejects.toThrow(LockedError)
    writeFileSync(`${path}.lock`, JSON.stringify({host: hostname(), pid: 2 ** 22 + 1})) // above pid_max: no such process
    const ov = await open(path)
    expect(JSON.parse(readFileSync(`${path}.lock`, 'utf8')).pid).toBe(process.pid)
    await ov.close()
    expect(existsSync(`${path}.lock`)).toBe(false)
  })
})
