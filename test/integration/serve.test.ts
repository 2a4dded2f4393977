// vdsnap serve against real NBD clients (qemu-img, qemu-io, nbdinfo,
// nbdcopy) on 127.0.0.1 and a unix socket:
//  1. read-only: qemu-img convert and nbdcopy over several connections give
//     the snapshot byte for byte; qemu-img map and nbdinfo --map show its
//     zero blocks as holes;
//  2. --overlay: qemu-io writes (aligned, unaligned, write-zeroes, discard,
//     at the very end) read back through the export, survive a restart of
//     the server, and restore --overlay writes exactly what the client saw;
//     the repository's files are unchanged (names, sizes, hashes); an
//     overlay of another snapshot is refused with one line;
//  3. --listen beyond loopback: a one-line warning, only that address;
//  4. served from an SFTP and an S3 repository: qemu-img convert equals the
//     snapshot;
//  5. a chunk that fails verification is EIO for the reads that need it and a
//     log line; every other read returns the right bytes; the server stays up.
import {execFileSync, spawnSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {cpSync, readdirSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {join, relative} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {oneLine, vdsnap, vdsnapJson} from '../helpers/cli.js'
import {makeExt4Image, prng} from '../helpers/images.js'
import {listeningAddresses, startServe} from '../helpers/serve.js'
import {BLOCK, formatWorkspace, initRepo, MiB} from './format-fixtures.js'
import {NbdTestClient} from '../helpers/nbd-client.js'
import {S3RVER_ENV, startS3} from '../helpers/s3.js'
import {haveSshd, startSshd} from '../helpers/sshd.js'

const DISK = 16 * MiB
const ws = formatWorkspace('vdsnap-serve-')
const {at, env} = ws
let snap = ''
let original: Buffer

/** Every file under `dir` with its size and hash. */
function treeDigest(dir: string): Record<string, string> {
  const out: Record<string, string> = {}
  const walk = (d: string) => {
    for (const e of readdirSync(d, {withFileTypes: true})) {
      const p = join(d, e.name)
      if (e.isDirectory()) walk(p)
      else out[relative(dir, p)] = `${statSync(p).size}:${createHash('sha256').update(readFileSync(p)).digest('hex')}`
    }
  }
  walk(dir)
  return out
}

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, {cwd: ws.dir, encoding: 'utf8'})
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`)
  return r.stdout
}

beforeAll(async () => {
  makeExt4Image(at('disk.raw'), DISK)
  // Random data in a region ext4 leaves empty, so some blocks do not compress away.
  const rnd = prng(7)
  const disk = readFileSync(at('disk.raw'))
  for (let i = 10 * MiB; i < 11 * MiB; i++) disk[i] = Math.floor(rnd() * 256)
  writeFileSync(at('disk.raw'), disk)
  original = disk
  await initRepo(ws)
  snap = (await vdsnapJson(['backup', at('disk.raw'), '--disk', 'web'], env)).snapshot
})
afterAll(() => ws.cleanup())

describe('read-only export', () => {
  it('qemu-img convert and nbdcopy over 4 connections equal the snapshot; map and nbdinfo show the holes', async () => {
    const s = await startServe([snap, '--listen', '127.0.0.1:0', '--name', 'web'], env)
    try {
      expect(s.uri).toMatch(/^nbd:\/\/127\.0\.0\.1:\d+\/web$/)
      // a shared repository lock for the whole run (released on exit: see the overlay test's tree comparison)
      const locks = readdirSync(at('repo/locks')).map((n) => JSON.parse(readFileSync(join(at('repo/locks'), n), 'utf8')))
      expect(locks).toMatchObject([{command: 'serve', exclusive: false, pid: s.pid}])
      run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', s.uri, at('convert.raw')])
      expect(readFileSync(at('convert.raw')).equals(original)).toBe(true)
      run('nbdcopy', ['--threads=4', '--connections=4', '--requests=8', s.uri, at('nbdcopy.raw')])
      expect(readFileSync(at('nbdcopy.raw')).equals(original)).toBe(true)
      // nbdcopy opened 4 connections (multi-conn is advertised): clients #2 to #5 after qemu-img's #1
      await s.waitFor(/client #5 opened export "web"/)

      const map = JSON.parse(run('qemu-img', ['map', '--output=json', '-f', 'raw', s.uri])) as {start: number; length: number; data: boolean; zero: boolean}[]
      const holes = map.filter((e) => !e.data)
      expect(holes.reduce((n, e) => n + e.length, 0)).toBeGreaterThan(4 * MiB)
      for (const e of map) {
        const zero = original.subarray(e.start, e.start + e.length).equals(Buffer.alloc(e.length))
        if (!e.data) expect(zero, `hole at ${e.start}`).toBe(true)
        // a data extent is a whole block boundary range with at least one non-zero block
        else expect(e.start % BLOCK).toBe(0)
      }
      const nbdmap = run('nbdinfo', ['--map', s.uri])
      const nbdHoles = nbdmap.split('\n').filter((l) => /hole,zero/.test(l)).map((l) => l.trim().split(/\s+/).map(Number))
      expect(nbdHoles.map(([start, length]) => ({start, length}))).toEqual(holes.map((e) => ({start: e.start, length: e.length})))
      expect(run('nbdinfo', ['--json', s.uri])).toMatch(/"is_read_only": true/)
    } finally {
      const r = await s.stop('SIGINT')
      expect(r.code, r.stderr).toBe(0)
    }
  })

  it('serves on a unix socket; a write to the read-only export is refused', async () => {
    const s = await startServe([snap, '--socket', at('nbd.sock')], env)
    try {
      expect(s.uri).toBe(`nbd+unix:///web?socket=${at('nbd.sock')}`)
      run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', s.uri, at('unix.raw')])
      expect(readFileSync(at('unix.raw')).equals(original)).toBe(true)
      const w = spawnSync('qemu-io', ['-f', 'raw', '-c', 'write -P 1 0 4k', s.uri], {encoding: 'utf8'})
      expect(`${w.stdout}${w.stderr}`).toMatch(/read-only|Operation not permitted|Permission denied/i)
    } finally {
      expect((await s.stop()).code).toBe(0)
    }
  })
})

describe('writable export with --overlay', () => {
  const writes = [
    'write -P 0xab 1M 64k',
    'write -P 0xcd 5000 1000', // inside one sector, not aligned
    'write -P 0x5a 12284 8200', // across three sectors, ragged both ends
    'write -z 3M 1M',
    'write -z 10485761 4000', // inside the random region, ragged
    'discard 8M 512k',
    `write -P 0xef ${DISK - 700} 700`, // the disk's last bytes
  ]
  /** The disk as the client must see it after `writes`. */
  function expected(): Buffer {
    const d = Buffer.from(original)
    d.fill(0xab, MiB, MiB + 65536)
    d.fill(0xcd, 5000, 6000)
    d.fill(0x5a, 12284, 12284 + 8200)
    d.fill(0, 3 * MiB, 4 * MiB)
    d.fill(0, 10485761, 10485761 + 4000)
    d.fill(0, 8 * MiB, 8 * MiB + 512 * 1024)
    d.fill(0xef, DISK - 700, DISK)
    return d
  }

  it('writes land in the overlay, survive a restart, restore --overlay equals them, the repository is unchanged', async () => {
    const before = treeDigest(at('repo'))
    const ov = at('web.overlay')
    let s = await startServe([snap, '--listen', '127.0.0.1:0', '--overlay', ov], env)
    try {
      const out = run('qemu-io', ['-f', 'raw', ...writes.flatMap((c) => ['-c', c]), '-c', 'read -P 0xab 1M 64k', '-c', 'read -P 0xcd 5000 1000', s.uri])
      expect(out).not.toMatch(/fail|error/i)
      run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', s.uri, at('written.raw')])
      expect(readFileSync(at('written.raw')).equals(expected())).toBe(true)
      // the zeroed megabyte and the discarded range are holes now; the written one is data
      const map = JSON.parse(run('qemu-img', ['map', '--output=json', '-f', 'raw', s.uri])) as {start: number; length: number; data: boolean}[]
      const at3M = map.find((e) => e.start <= 3 * MiB && e.start + e.length > 3 * MiB)!
      expect(at3M.data).toBe(false)
      expect(map.find((e) => e.start <= MiB && e.start + e.length > MiB)!.data).toBe(true)
    } finally {
      const r = await s.stop('SIGTERM')
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout).toMatch(/overlay .* holds .* \(fsynced\)/)
    }
    // a new server continues the overlay
    s = await startServe([snap, '--listen', '127.0.0.1:0', '--overlay', ov], env)
    try {
      expect(s.stderr()).toMatch(/written before/)
      run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', s.uri, at('again.raw')])
      expect(readFileSync(at('again.raw')).equals(expected())).toBe(true)
      run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 2M 4k', s.uri])
    } finally {
      expect((await s.stop('SIGINT')).code).toBe(0)
    }
    const want = expected()
    want.fill(0x11, 2 * MiB, 2 * MiB + 4096)
    const r = await vdsnap(['restore', snap, '--overlay', ov, '--to', at('restored.raw')], env)
    expect(r.code, r.stderr).toBe(0)
    expect(readFileSync(at('restored.raw')).equals(want)).toBe(true)
    // the snapshot itself is untouched
    const plain = await vdsnap(['restore', snap, '--to', at('plain.raw')], env)
    expect(plain.code, plain.stderr).toBe(0)
    expect(readFileSync(at('plain.raw')).equals(original)).toBe(true)
    // rollback-style: a target holding the snapshot gets only the overlay's blocks
    cpSync(at('plain.raw'), at('delta.raw'))
    const delta = await vdsnapJson(['restore', snap, '--delta-from', snap, '--overlay', ov, '--to', at('delta.raw')], env)
    expect(readFileSync(at('delta.raw')).equals(want)).toBe(true)
    expect(delta.blocksWritten + delta.zeroBlocks).toBeLessThanOrEqual(8) // blocks the overlay touches, not the disk's 32
    expect(treeDigest(at('repo'))).toEqual(before)
  })

  it('a server killed with SIGKILL after the client flushed: a new server takes the overlay over with every flushed write', async () => {
    const ov = at('killed.overlay')
    const s = await startServe([snap, '--listen', '127.0.0.1:0', '--overlay', ov], env)
    // qemu-io flushes when it closes the image
    run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x33 2M 128k', '-c', 'write -z 6M 1M', '-c', 'flush', s.uri])
    const killed = await s.stop('SIGKILL')
    expect(killed.code).toBe(null)
    const again = await startServe([snap, '--listen', '127.0.0.1:0', '--overlay', ov], env)
    try {
      run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', again.uri, at('killed.raw')])
      const want = Buffer.from(original)
      want.fill(0x33, 2 * MiB, 2 * MiB + 128 * 1024)
      want.fill(0, 6 * MiB, 7 * MiB)
      expect(readFileSync(at('killed.raw')).equals(want)).toBe(true)
    } finally {
      expect((await again.stop()).code).toBe(0)
    }
  })

  it('an overlay of another snapshot is refused with one line (serve and restore)', async () => {
    writeFileSync(at('other.raw'), Buffer.alloc(DISK, 3))
    const other = (await vdsnapJson(['backup', at('other.raw'), '--disk', 'other'], env)).snapshot
    const ov = at('web2.overlay')
    const s = await startServe([snap, '--listen', '127.0.0.1:0', '--overlay', ov], env)
    await s.stop()
    const serve = await vdsnap(['serve', other, '--listen', '127.0.0.1:0', '--overlay', ov], env)
    expect(serve.code).toBe(2)
    expect(oneLine(serve.stderr)).toContain(`overlay ${ov} belongs to snapshot ${snap.slice(0, 8)}, not ${other.slice(0, 8)}`)
    const restore = await vdsnap(['restore', other, '--overlay', ov, '--to', at('x.raw')], env)
    expect(restore.code).toBe(2)
    expect(oneLine(restore.stderr)).toContain('belongs to snapshot')
    const notOverlay = await vdsnap(['serve', snap, '--overlay', at('disk.raw')], env)
    expect(notOverlay.code).toBe(6)
    expect(oneLine(notOverlay.stderr)).toContain('is not a vdsnap overlay file')
  })
})

describe('refusals', () => {
  it('bad --listen, a port in use, an overlay in use: one line and the documented exit code', async () => {
    const bad = await vdsnap(['serve', snap, '--listen', 'nonsense'], env)
    expect(bad.code).toBe(2)
    expect(oneLine(bad.stderr)).toContain('--listen nonsense is not HOST:PORT')
    const both = await vdsnap(['serve', snap, '--listen', '127.0.0.1:0', '--socket', at('x.sock')], env)
    expect(both.code).toBe(2)
    expect(oneLine(both.stderr)).toContain('--listen and --socket cannot be combined')
    const ov = at('busy.overlay')
    const s = await startServe([snap, '--listen', '127.0.0.1:0', '--overlay', ov], env)
    try {
      const port = await vdsnap(['serve', snap, '--listen', s.where], env)
      expect(port.code).toBe(7)
      expect(oneLine(port.stderr)).toContain(`cannot listen on ${s.where}: something already listens there`)
      const again = await vdsnap(['serve', snap, '--listen', '127.0.0.1:0', '--overlay', ov], env)
      expect(again.code).toBe(4)
      expect(oneLine(again.stderr)).toContain(`overlay ${ov} is in use by process ${s.pid}`)
      const restore = await vdsnap(['restore', snap, '--overlay', ov, '--to', at('busy.raw')], env)
      expect(restore.code).toBe(4)
    } finally {
      expect((await s.stop()).code).toBe(0)
    }
  })
})

describe('beyond this machine', () => {
  it('--listen 0.0.0.0:0 warns once that the disk is served without TLS, listens only there, and SIGTERM ends it with 0', async () => {
    const s = await startServe([snap, '--listen', '0.0.0.0:0'], env)
    try {
      expect(s.where).toMatch(/^0\.0\.0\.0:\d+$/)
      const warnings = s.stderr().split('\n').filter((l) => /beyond this machine, without TLS/.test(l))
      expect(warnings).toHaveLength(1)
      // (a timestamp first: serve's stderr is a log)
      expect(warnings[0]).toMatch(/ warning: listening on (\S+), beyond this machine, without TLS: anyone who reaches it can read the disk$/)
      expect(warnings[0]).toContain(` ${s.where}, `)
      // exactly the address it named, nothing else (no second socket, no IPv6 wildcard)
      expect(listeningAddresses(s.pid)).toEqual([s.where])
      // reached here through loopback only
      expect(run('nbdinfo', ['--size', `nbd://127.0.0.1:${s.where.split(':')[1]}/web`]).trim()).toBe(String(DISK))
    } finally {
      const r = await s.stop('SIGTERM')
      expect(r.code, r.stderr).toBe(0)
    }
    // on loopback there is nothing to warn about
    const local = await startServe([snap, '--listen', '127.0.0.1:0'], env)
    try {
      expect(listeningAddresses(local.pid)).toEqual([local.where])
      expect(local.stderr()).not.toMatch(/without TLS/)
    } finally {
      expect((await local.stop('SIGTERM')).code).toBe(0)
    }
  })
})

describe('from an S3 repository', () => {
  it('serves an encrypted snapshot from s3rver, writable; SIGTERM with a client connected ends it cleanly with the overlay on disk', async () => {
    const s3 = await startS3('vdsnap-serve')
    try {
      const s3env = {...S3RVER_ENV, AWS_ENDPOINT_URL: undefined, AWS_ENDPOINT_URL_S3: s3.endpoint, VDSNAP_PASSWORD: 'pw', VDSNAP_REPOSITORY: `s3://${s3.bucket}/vm`}
      const init = await vdsnap(['init'], s3env)
      expect(init.code, init.stderr).toBe(0)
      const id = (await vdsnapJson(['backup', at('disk.raw'), '--disk', 'web'], s3env)).snapshot
      const ov = at('s3.overlay')
      const s = await startServe([id, '--listen', '127.0.0.1:0', '--overlay', ov], s3env)
      const c = await NbdTestClient.connect({host: '127.0.0.1', port: Number(s.where.split(':')[1])})
      try {
        run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', s.uri, at('s3.raw')])
        expect(readFileSync(at('s3.raw')).equals(original)).toBe(true)
        run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x77 64k 64k', s.uri])
        await c.handshake()
        await c.go('web')
        const r = await c.read(64 * 1024, 4096)
        expect(r.data!.equals(Buffer.alloc(4096, 0x77))).toBe(true)
      } finally {
        const r = await s.stop('SIGTERM')
        expect(r.code, r.stderr).toBe(0)
        expect(r.stderr).toMatch(/ended: server shutting down/)
      }
      const want = Buffer.from(original)
      want.fill(0x77, 64 * 1024, 128 * 1024)
      const restored = await vdsnap(['restore', id, '--overlay', ov, '--to', at('s3-restored.qcow2'), '--format', 'qcow2'], s3env)
      expect(restored.code, restored.stderr).toBe(0)
      run('qemu-img', ['check', at('s3-restored.qcow2')])
      run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', at('s3-restored.qcow2'), at('s3-restored.raw')])
      expect(readFileSync(at('s3-restored.raw')).equals(want)).toBe(true)
    } finally {
      await s3.stop()
    }
  })
})

describe.skipIf(!haveSshd)('from an SFTP repository', () => {
  it('serves a snapshot from sshd on 127.0.0.1: qemu-img convert from the export equals the snapshot', async () => {
    const sshd = await startSshd()
    try {
      const ssh = ['--ssh-key', sshd.userKeyPath, '--known-hosts', sshd.knownHostsPath]
      const sftpEnv = {...env, SSH_AUTH_SOCK: undefined, VDSNAP_REPOSITORY: `sftp://${sshd.user}@127.0.0.1:${sshd.port}${sshd.rootDir}/repo`}
      const init = await vdsnap(['init', '--no-encryption', '--block-size', `${BLOCK / 1024}KiB`, ...ssh], sftpEnv)
      expect(init.code, init.stderr).toBe(0)
      const id = (await vdsnapJson(['backup', at('disk.raw'), '--disk', 'web', ...ssh], sftpEnv)).snapshot
      const s = await startServe([id, '--listen', '127.0.0.1:0', ...ssh], sftpEnv)
      try {
        run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', s.uri, at('sftp.raw')])
        expect(readFileSync(at('sftp.raw')).equals(original)).toBe(true)
      } finally {
        const r = await s.stop('SIGTERM')
        expect(r.code, r.stderr).toBe(0)
      }
    } finally {
      await sshd.stop()
    }
  })
})

describe('a chunk that fails verification', () => {
  it('is EIO and a log line for the reads that need it; other reads are right; the server stays up', async () => {
    cpSync(at('repo'), at('bad-repo'), {recursive: true})
    const chunks = readdirSync(at('bad-repo/chunks'), {recursive: true, withFileTypes: true}).filter((e) => e.isFile())
    // the largest chunk: random data, used by one block
    const victim = chunks.map((e) => join(e.parentPath, e.name)).sort((a, b) => statSync(b).size - statSync(a).size)[0]!
    const bytes = readFileSync(victim)
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff
    writeFileSync(victim, bytes)
    const s = await startServe([snap, '--listen', '127.0.0.1:0'], {...env, VDSNAP_REPOSITORY: at('bad-repo')})
    try {
      const c = await NbdTestClient.connect({host: '127.0.0.1', port: Number(s.where.split(':')[1])})
      await c.handshake()
      await c.go('web')
      let failed = 0
      for (let off = 0; off < DISK; off += BLOCK) {
        const r = await c.read(off, BLOCK)
        if (r.error) {
          expect(r.error).toBe(5) // EIO
          failed++
        } else expect(r.data!.equals(original.subarray(off, off + BLOCK)), `block at ${off}`).toBe(true)
      }
      expect(failed).toBeGreaterThanOrEqual(1)
      expect(failed).toBeLessThan(DISK / BLOCK / 2)
      await c.disconnect()
      await s.waitFor(/read at \d+\+\d+ failed: /)
      // still serving
      expect(run('nbdinfo', ['--size', s.uri]).trim()).toBe(String(DISK))
    } finally {
      expect((await s.stop()).code).toBe(0)
    }
  })
})
