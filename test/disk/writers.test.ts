// The qcow2, VMDK and VDI writers: raw data written through them (all-zero
// blocks skipped) must pass `qemu-img check` and `qemu-img compare` against
// the raw file, read back identically through our own readers, and leave
// nothing behind on abort().
import {execFileSync} from 'node:child_process'
import {existsSync, readdirSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {FORMATS} from '../../src/disk/formats.js'
import {openImage} from '../../src/disk/open.js'
import type {ImageWriter} from '../../src/disk/types.js'
import {MiB, makeDiskBytes, QEMU_IMG, readWhole, sha256, tempDir, writeRaw} from './image-fixtures.js'

const BLOCK = 64 * 1024
let dir: string
let cleanup: () => void

beforeAll(() => {
  ;({path: dir, cleanup} = tempDir('vdsnap-writers-'))
})
afterAll(() => cleanup())

async function writeThrough(w: ImageWriter, data: Buffer, block = BLOCK): Promise<void> {
  const zero = Buffer.alloc(block)
  for (let at = 0; at < data.length; at += block) {
    const piece = data.subarray(at, Math.min(data.length, at + block))
    if (piece.equals(zero.subarray(0, piece.length))) continue
    await w.write(at, piece)
  }
  await w.close()
}

function qemuOk(args: string[]): {code: number; out: string} {
  try {
    return {code: 0, out: execFileSync(QEMU_IMG, args, {encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']})}
  } catch (e) {
    const err = e as {status: number; stdout: string; stderr: string}
    return {code: err.status, out: `${err.stdout}${err.stderr}`}
  }
}

const cases: [string, string, string | undefined][] = [
  ['qcow2', 'qcow2', undefined],
  ['vmdk monolithicSparse', 'vmdk', undefined],
  ['vmdk streamOptimized', 'vmdk', 'streamOptimized'],
  ['vdi dynamic', 'vdi', undefined],
  ['vdi fixed', 'vdi', 'fixed'],
]
const sizes: [string, number, number][] = [
  ['5 MiB + 7 sectors', 5 * MiB + 7 * 512, BLOCK],
  ['odd tail, 4 KiB blocks', 3 * MiB + 4096 + 300, 4096],
]

describe('image writers', () => {
  for (const [name, format, subformat] of cases) {
    for (const [sizeName, size, block] of sizes) {
      it(`${name}, ${sizeName}`, async () => {
        const data = makeDiskBytes(size, 3)
        const tag = `${name}-${size}`.replace(/\W+/g, '-')
        const rawPath = join(dir, `${tag}.raw`)
        const out = join(dir, `${tag}.${format}`)
        writeRaw(rawPath, data)
        const entry = FORMATS.find((f) => f.name === format)!
        const w = await entry.create!(out, size, {subformat})
        await writeThrough(w, data, block)
        const check = qemuOk(['check', '-f', format, out])
        expect(check.code, check.out).toBe(0)
        expect(check.out).not.toMatch(/leak/i)
        const cmp = qemuOk(['compare', '-f', 'raw', '-F', format, rawPath, out])
        expect(cmp.code, cmp.out).toBe(0)
        const img = await openImage(out)
        try {
          const back = await readWhole(img)
          const padded = Buffer.concat([data, Buffer.alloc(img.virtualSize - size)])
          expect(sha256(back)).toBe(sha256(padded))
          if (subformat) expect((await img.info()).subformat).toBe(subformat)
        } finally {
          await img.close()
        }
      })
    }
  }

  it('abort() leaves no file behind', async () => {
    for (const [name, format, subformat] of cases) {
      const out = join(dir, `aborted-${name.replace(/\W+/g, '-')}`)
      const w = await FORMATS.find((f) => f.name === format)!.create!(out, 4 * MiB, {subformat})
      await w.write(0, Buffer.alloc(BLOCK, 1))
      await w.abort()
      expect(existsSync(out)).toBe(false)
    }
    expect(readdirSync(dir).filter((f) => f.includes('aborted') || f.endsWith('.partial'))).toEqual([])
  })

  it('refuses a subformat it cannot write instead of ignoring it', async () => {
    const create = (format: string, subformat: string) => FORMATS.find((f) => f.name === format)!.create!(join(dir, `sub-${format}`), 4 * MiB, {subformat})
    await expect(create('qcow2', 'v2')).rejects.toThrow(/qcow2 subformat "v2" cannot be written/)
    await expect(create('vmdk', 'monolithicFlat')).rejects.toThrow(/cannot write VMDK subformat "monolithicFlat"/)
    await expect(create('vhd', 'differencing')).rejects.toThrow(/not one of dynamic, fixed/)
    await expect(create('vhdx', 'differencing')).rejects.toThrow(/not one of dynamic, fixed/)
    await expect(create('vhdx', 'sparse')).rejects.toThrow(/not one of dynamic, fixed/)
    await expect(create('vdi', 'differencing')).rejects.toThrow(/VDI subformat "differencing" is not one of dynamic, fixed/)
    const w = await create('qcow2', 'v3')
    await w.abort()
  })

  it('refuses writes out of order or not sector-aligned', async () => {
    const w = await FORMATS.find((f) => f.name === 'qcow2')!.create!(join(dir, 'order.qcow2'), 4 * MiB, {})
    await w.write(MiB, Buffer.alloc(BLOCK, 1))
    await expect(w.write(0, Buffer.alloc(BLOCK, 1))).rejects.toThrow(/ascending/)
    await expect(w.write(2 * MiB, Buffer.alloc(100, 1))).rejects.toThrow(/sector-aligned/)
    await w.abort()
  })
})
