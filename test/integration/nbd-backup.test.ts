// backup from NBD servers: qemu-nbd exporting a qcow2 with a persistent
// dirty bitmap (writes made by qemu-io, so the bitmap records them), nbdkit
// as a second server, and a TCP proxy that cuts the connection at a known
// request. Every restore is compared with what qemu-img / nbdcopy read.
import {execFileSync} from 'node:child_process'
import {readFileSync} from 'node:fs'
import {createServer} from 'node:net'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {oneLine, vdsnap, vdsnapJson} from '../helpers/cli.js'
import {tempDir} from '../helpers/images.js'
import {startNbdkit, startQemuNbd, unixUrl, type NbdServer} from '../helpers/nbd.js'
import {startNbdProxy} from '../helpers/nbd-proxy.js'

const KiB = 1024
const MiB = 1024 * KiB
const BLOCK = 64 * KiB
/** Allocated after the first test's writes: 0-4M, 8M-10M less the zeroed block, and blocks 100, 320, 640, 641. */
const ALLOCATED = 99 * BLOCK

function qemuIo(image: string, ...commands: string[]): void {
  execFileSync('qemu-io', ['-f', 'qcow2', ...commands.flatMap((c) => ['-c', c]), image], {stdio: 'ignore'})
}

/** The dirty blocks as nbdinfo (libnbd) reads the bitmap: an independent client. */
function dirtyBlocks(url: string, bitmap: string): number[] {
  const map = JSON.parse(execFileSync('nbdinfo', ['--json', `--map=qemu:dirty-bitmap:${bitmap}`, url], {encoding: 'utf8'})) as {offset: number; length: number; type: number}[]
  const blocks = new Set<number>()
  for (const e of map) if (e.type & 1) for (let b = Math.floor(e.offset / BLOCK); b * BLOCK < e.offset + e.length; b++) blocks.add(b)
  return [...blocks].sort((a, b) => a - b)
}

describe('backup from NBD servers', () => {
  const dir = tempDir()
  const image = join(dir.path, 'vm.qcow2')
  const env = {VDSNAP_REPOSITORY: join(dir.path, 'repo'), VDSNAP_PASSWORD: 'pw'}
  let server: NbdServer | undefined
  const stop = async (): Promise<void> => {
    await server?.stop()
    server = undefined
  }
  const serve = async (bitmap = 'b0'): Promise<string> => {
    await stop() // a failed test may have left one running
    server = startQemuNbd(dir.path, image, {bitmap})
    return server.url
  }
  const restoredEqualsImage = async (snapshot: string, name: string): Promise<void> => {
    const out = join(dir.path, `${name}.restored`)
    const raw = join(dir.path, `${name}.raw`)
    expect((await vdsnap(['restore', snapshot, '--to', out], env)).code).toBe(0)
    execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', image, raw])
    expect(readFileSync(out).equals(readFileSync(raw))).toBe(true)
  }

  beforeAll(async () => {
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', image, String(48 * MiB)])
    qemuIo(image, 'write -P 1 0 4M', 'write -P 3 8M 2M', 'write -P 4 20M 64k')
    execFileSync('qemu-img', ['bitmap', '--add', image, 'b0'])
    expect((await vdsnap(['init', '--block-size', '64KiB'], env)).code).toBe(0)
  })
  afterAll(async () => {
    await stop()
    dir.cleanup()
  })

  it('a backup by bitmap reads only the dirty blocks and restores byte-identical to qemu-img convert', async () => {
    const first = await vdsnapJson(['backup', await serve(), '--disk', 'vm', '--bitmap', 'b0'], env)
    await stop()
    expect(first.parent).toBeNull()
    expect(first.bytesRead).toBe(6 * MiB + BLOCK) // allocation from base:allocation: holes are not read
    expect(first.notices.join(' ')).toMatch(/no parent snapshot/)
    const snaps = await vdsnapJson(['snapshots', '--disk', 'vm'], env)
    expect(snaps[0].source).toMatchObject({path: expect.stringMatching(/^nbd\+unix:\/\/\/disk\?socket=/), format: 'nbd', bitmap: {export: 'disk', name: 'b0'}})

    // The guest writes: a whole block, 8 KiB inside another, two blocks where
    // nothing was, and zeroes over a block of data.
    qemuIo(image, `write -P 7 ${5 * BLOCK} 64k`, `write -P 8 ${100 * BLOCK + 4 * KiB} 8k`, 'write -P 9 40M 128k', `write -z ${128 * BLOCK} 64k`)
    const url = await serve()
    expect(dirtyBlocks(url, 'b0')).toEqual([5, 100, 128, 640, 641])
    const inc = await vdsnapJson(['backup', url, '--disk', 'vm', '--bitmap', 'b0'], env)
    await stop()
    expect(inc.parent).toBe(first.snapshot)
    expect(inc.changeSource).toBe('bitmap')
    expect(inc.warnings).toEqual([])
    // blocks 5, 100, 640 and 641 are read; block 128 now reads as zero
    // (base:allocation says so): changed without a read
    expect(inc.bytesRead).toBe(4 * BLOCK)
    expect(inc.changedBlocks).toBe(5)
    await restoredEqualsImage(inc.snapshot, 'inc')
  })

  it('trust but verify: writes the bitmap did not record are found by the sample, and everything is read', async () => {
    execFileSync('qemu-img', ['bitmap', '--disable', image, 'b0'])
    qemuIo(image, 'write -P 11 0 4M') // 64 of ~100 allocated blocks, unrecorded: a 64-block sample must hit one
    execFileSync('qemu-img', ['bitmap', '--enable', image, 'b0'])
    const r = await vdsnapJson(['backup', await serve(), '--disk', 'vm', '--bitmap', 'b0'], env, 3)
    await stop()
    expect(r.warnings.join(' ')).toMatch(/dirty bitmap "b0" missed a change/)
    expect(r.changeSource).toBeNull()
    expect(r.bytesRead).toBe(ALLOCATED)
    await restoredEqualsImage(r.snapshot, 'verify')
  })

  it('a bitmap the server does not export, or one the parent did not record, falls back to a full read with exit 3', async () => {
    const missing = await vdsnap(['backup', await serve(), '--disk', 'vm', '--bitmap', 'nope', '--json'], env)
    expect(missing.code).toBe(3)
    const m = JSON.parse(missing.stdout)
    expect(m.warnings.join(' ')).toMatch(/exports no dirty bitmap "nope"/)
    expect(m.bytesRead).toBe(ALLOCATED)
    expect(m.changeSource).toBeNull()
    // That snapshot could not record "nope": the next run with it falls back too,
    // and so does b0, whose lineage the last snapshot broke.
    const again = await vdsnap(['backup', server!.url, '--disk', 'vm', '--bitmap', 'b0', '--json'], env)
    expect(again.code).toBe(3)
    expect(JSON.parse(again.stdout).warnings.join(' ')).toMatch(/was not taken with dirty bitmap "b0" of export "disk"/)
    // ... which recorded b0 again: now the bitmap is trusted.
    await stop() // qemu-io needs the image unlocked
    qemuIo(image, `write -P 12 ${7 * BLOCK} 64k`)
    const ok = await vdsnapJson(['backup', await serve(), '--disk', 'vm', '--bitmap', 'b0'], env)
    await stop()
    expect(ok.changeSource).toBe('bitmap')
    expect(ok.bytesRead).toBeLessThan(2 * MiB)
    await restoredEqualsImage(ok.snapshot, 'ok')
  })

  it('--bitmap needs an NBD source and excludes --changed-blocks (exit 2)', async () => {
    const notNbd = await vdsnap(['backup', image, '--bitmap', 'b0'], env)
    expect(notNbd.code).toBe(2)
    expect(oneLine(notNbd.stderr)).toMatch(/--bitmap needs an NBD source/)
    const both = await vdsnap(['backup', unixUrl('/nonexistent.sock', 'disk'), '--bitmap', 'b0', '--changed-blocks', image], env)
    expect(both.code).toBe(2)
  })

  it('nbdkit (sparse-random) as a second server: holes are not read and the restore equals nbdcopy\'s copy', async () => {
    const kit = startNbdkit(dir.path, ['sparse-random', '64M', 'seed=7', 'percent=10', 'runlength=262144'])
    try {
      const r = await vdsnapJson(['backup', kit.url, '--disk', 'random'], env)
      expect(r.bytesRead).toBeGreaterThan(0)
      expect(r.bytesRead).toBeLessThan(32 * MiB)
      const copy = join(dir.path, 'nbdcopy.raw')
      execFileSync('nbdcopy', [kit.url, copy])
      const out = join(dir.path, 'random.restored')
      expect((await vdsnap(['restore', r.snapshot, '--to', out], env)).code).toBe(0)
      expect(readFileSync(out).equals(readFileSync(copy))).toBe(true)
    } finally {
      await kit.stop()
    }
  })

  it('nbd:// over TCP, and a server that dies mid-read: one line naming the URL, exit 7, no snapshot', async () => {
    await serve()
    const whole = await startNbdProxy(server!.socket)
    const tcp = await vdsnapJson(['backup', whole.url('disk'), '--disk', 'tcp'], env)
    expect(whole.readsForwarded).toBeGreaterThan(1)
    await whole.close()
    await restoredEqualsImage(tcp.snapshot, 'tcp')

    const before = (await vdsnapJson(['snapshots'], env)).length
    const cutting = await startNbdProxy(server!.socket, 2)
    const r = await vdsnap(['backup', cutting.url('disk'), '--disk', 'tcp', '--full'], env)
    await cutting.close()
    expect(cutting.cuts).toBe(1)
    expect(r.code).toBe(7)
    expect(oneLine(r.stderr)).toContain(`${cutting.url('disk')}: lost the connection to the NBD server during a read`)
    expect((await vdsnapJson(['snapshots'], env)).length).toBe(before)
    await stop()
  })

  it('an unreachable server (exit 7), an unknown export (exit 8) and a peer that is not an NBD server (exit 6)', async () => {
    const gone = unixUrl(join(dir.path, 'nobody.sock'), 'disk')
    const r1 = await vdsnap(['backup', gone, '--disk', 'x'], env)
    expect(r1.code).toBe(7)
    expect(oneLine(r1.stderr)).toContain(gone)

    await serve()
    const wrong = unixUrl(server!.socket, 'other')
    const r2 = await vdsnap(['backup', wrong, '--disk', 'x'], env)
    await stop()
    expect(r2.code).toBe(8)
    expect(oneLine(r2.stderr)).toMatch(/no such export/)

    const liar = createServer((s) => s.end('HTTP/1.1 400 Bad Request\r\n\r\n'))
    await new Promise<void>((resolve) => liar.listen(0, '127.0.0.1', resolve))
    const liarUrl = `nbd://127.0.0.1:${(liar.address() as {port: number}).port}/disk`
    const r3 = await vdsnap(['backup', liarUrl, '--disk', 'x'], env)
    await new Promise((resolve) => liar.close(resolve))
    expect(r3.code).toBe(6)
    expect(oneLine(r3.stderr)).toMatch(/not an NBD server/)
  })
})
