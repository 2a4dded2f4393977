// Raw disks that exist only as a stream, through the CLI: `backup -` from a
// real shell pipe and `--source-command`.
//  1. A chain of backups through a pipe equals the same chain of backups of
//     the file: same blocks changed, same bytes restored, no new chunk (the
//     file went first), zero blocks not stored; the manifest names the
//     source "-" or "command: CMD".
//  2. Refusals store no snapshot: a stream shorter or longer than the disk
//     (exit 6), a first stream without --size and stream-only flags on a
//     file (exit 2), a failing command with its stderr's first line and a
//     command that sends nothing past --source-timeout (exit 7; the command
//     and what it started are stopped).
import {spawn} from 'node:child_process'
import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {BIN, oneLine, vdsnap, vdsnapJson} from '../helpers/cli.js'
import {makeExt4Image, randomAt, resize, sha256File, tempDir, zeroAt} from '../helpers/images.js'

const MiB = 1024 * 1024
const BLOCK = 256 * 1024
const SIZE = 24 * MiB + 3 * 512
const tmp = tempDir('vdsnap-stream-')
const at = (name: string) => `${tmp.path}/${name}`
const env = {VDSNAP_REPOSITORY: at('repo'), VDSNAP_PASSWORD: undefined}

/** `cat FILE | vdsnap ARGS --json` through /bin/sh: a real pipe, as a user types it. */
function piped(file: string, args: string[]): Promise<{code: number; stdout: string; stderr: string}> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', 'cat "$SRC" | "$NODE" "$BIN" "$@"', 'sh', ...args], {
      env: {...process.env, ...env, VDSNAP_REPOSITORY: env.VDSNAP_REPOSITORY, SRC: file, NODE: process.execPath, BIN},
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (d) => out.push(d))
    child.stderr.on('data', (d) => err.push(d))
    child.on('error', reject)
    child.on('close', (code) => resolve({code: code ?? -1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString()}))
  })
}

async function pipedJson(file: string, args: string[]) {
  const r = await piped(file, [...args, '--json'])
  expect(r.code, r.stderr).toBe(0)
  return JSON.parse(r.stdout)
}

async function snapshotCount(): Promise<number> {
  return (await vdsnapJson(['snapshots'], env)).length
}

beforeAll(async () => {
  makeExt4Image(at('disk.raw'), SIZE)
  const init = await vdsnap(['init', '--no-encryption', '--block-size', `${BLOCK / 1024}KiB`], env)
  expect(init.code, init.stderr).toBe(0)
})
afterAll(() => tmp.cleanup())

describe('backup - (a raw disk from a pipe)', () => {
  it('a chain of backups through a pipe equals the chain of backups of the file', async () => {
    const edits = [
      () => randomAt(at('disk.raw'), 3 * MiB + 100, 5000),
      () => {
        randomAt(at('disk.raw'), 20 * MiB, 2 * BLOCK)
        zeroAt(at('disk.raw'), 0, BLOCK)
      },
    ]
    for (let round = 0; round <= edits.length; round++) {
      if (round > 0) edits[round - 1]!()
      const file = await vdsnapJson(['backup', at('disk.raw'), '--disk', 'file'], env)
      // the first stream needs --size; later ones take the previous snapshot's size
      const pipe = await pipedJson(at('disk.raw'), ['backup', '-', '--disk', 'pipe', ...(round === 0 ? ['--size', String(SIZE)] : [])])
      expect(pipe.virtualSize).toBe(SIZE)
      expect(pipe.changedBlocks, `round ${round}`).toBe(file.changedBlocks)
      expect(pipe.indexKind).toBe(file.indexKind)
      expect(pipe.newChunks, 'the file stored every chunk already').toBe(0)
      expect(pipe.bytesRead).toBe(SIZE) // a stream is read whole...
      expect((await vdsnapJson(['diff', file.snapshot, pipe.snapshot], env)).changedBlocks).toBe(0)
      const out = at(`pipe-${round}.raw`)
      expect((await vdsnap(['restore', pipe.snapshot, '--to', out], env)).code).toBe(0)
      expect(sha256File(out)).toBe(sha256File(at('disk.raw')))
    }
    const snaps: {disk: string; source: {path: string; format: string}}[] = await vdsnapJson(['snapshots'], env)
    const mine = snaps.filter((s) => s.disk === 'pipe')
    expect(mine).toHaveLength(3)
    expect(mine.every((s) => s.source.path === '-' && s.source.format === 'raw')).toBe(true)
  })

  it('zero blocks cost nothing: a mostly empty disk stores only its data', async () => {
    writeFileSync(at('sparse.raw'), Buffer.alloc(0))
    randomAt(at('sparse.raw'), 5 * MiB, BLOCK)
    resize(at('sparse.raw'), 8 * MiB)
    const res = await pipedJson(at('sparse.raw'), ['backup', '-', '--disk', 'sparse', '--size', '8MiB'])
    expect(res).toMatchObject({newChunks: 1, changedBlocks: 1, bytesNew: BLOCK, bytesRead: 8 * MiB})
    expect(res.bytesStored).toBeLessThan(BLOCK + 4096)
  })

  it('--source-command reads the command\'s stdout; the manifest names the command', async () => {
    const cmd = `cat '${at('disk.raw')}'`
    const res = await vdsnapJson(['backup', '-', '--disk', 'cmd', '--size', String(SIZE), '--source-command', cmd], env)
    expect(res.newChunks).toBe(0)
    const snaps: {id: string; source: {path: string}}[] = await vdsnapJson(['snapshots', '--disk', 'cmd'], env)
    expect(snaps.map((s) => s.source.path)).toEqual([`command: ${cmd}`])
    const out = at('cmd.raw')
    expect((await vdsnap(['restore', res.snapshot, '--to', out], env)).code).toBe(0)
    expect(sha256File(out)).toBe(sha256File(at('disk.raw')))
  })
})

describe('stream refusals store no snapshot', () => {
  const refused = async (r: {code: number; stderr: string}, code: number, pattern: RegExp, before: number) => {
    expect(r.code, r.stderr).toBe(code)
    expect(oneLine(r.stderr)).toMatch(pattern)
    expect(await snapshotCount()).toBe(before)
  }

  it('a stream shorter than --size, or than the previous snapshot, and one longer (exit 6)', async () => {
    const before = await snapshotCount()
    writeFileSync(at('short.raw'), readFileSync(at('disk.raw')).subarray(0, SIZE - 512))
    await refused(await piped(at('short.raw'), ['backup', '-', '--disk', 'pipe']), 6, new RegExp(`-: the stream ended after ${SIZE - 512} bytes, but the disk is ${SIZE} bytes`), before)
    await refused(await piped(at('short.raw'), ['backup', '-', '--disk', 'new-disk', '--size', String(SIZE)]), 6, /stream ended after/, before)
    writeFileSync(at('long.raw'), Buffer.concat([readFileSync(at('disk.raw')), Buffer.alloc(512)]))
    await refused(await piped(at('long.raw'), ['backup', '-', '--disk', 'pipe']), 6, new RegExp(`the stream is longer than the disk's ${SIZE} bytes`), before)
    const cmd = await vdsnap(['backup', '-', '--disk', 'pipe', '--source-command', `head -c 1000 '${at('disk.raw')}'`], env)
    await refused(cmd, 6, /command: head -c 1000 .*: the stream ended after 1000 bytes/, before)
  })

  it('usage errors: a first stream without --size, no --disk, stream flags on a file (exit 2)', async () => {
    const before = await snapshotCount()
    await refused(await piped(at('disk.raw'), ['backup', '-', '--disk', 'fresh']), 2, /disk "fresh" has no snapshot yet, so a stream needs --size BYTES/, before)
    await refused(await piped(at('disk.raw'), ['backup', '-']), 2, /a stream source needs --disk NAME/, before)
    await refused(await vdsnap(['backup', at('disk.raw'), '--size', '1M'], env), 2, /--size applies to stream sources only/, before)
    await refused(await piped(at('disk.raw'), ['backup', '-', '--disk', 'pipe', '--changed-blocks', at('x.json')]), 2, /--changed-blocks does not apply to a stream/, before)
    await refused(await vdsnap(['backup', at('disk.raw'), '--disk', 'x', '--source-command', 'true'], env), 2, /the source must be "-"/, before)
  })

  it('a failing source command: its exit status and the first line of its stderr (exit 7)', async () => {
    const before = await snapshotCount()
    const r = await vdsnap(['backup', '-', '--disk', 'pipe', '--source-command', `head -c 4096 '${at('disk.raw')}'; echo 'rbd: error opening image vm-1: (2) No such file or directory' >&2; echo more >&2; exit 2`], env)
    await refused(r, 7, /source command ".*" exited with status 2: rbd: error opening image vm-1: \(2\) No such file or directory;/, before)
  })

  it('a command that sends nothing past --source-timeout is stopped, with what it started (exit 7)', async () => {
    const before = await snapshotCount()
    const pidFile = at('hung.pid')
    // the shell starts a child that would hang for ever; both must be gone afterwards
    const cmd = `sleep 600 & echo $! > '${pidFile}'; wait`
    const r = await vdsnap(['backup', '-', '--disk', 'pipe', '--source-command', cmd, '--source-timeout', '1s'], env)
    await refused(r, 7, /the source waited more than 1s to send data \(--source-timeout\); it was stopped/, before)
    const pid = Number(readFileSync(pidFile, 'utf8'))
    expect(pid).toBeGreaterThan(0)
    expect(existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z '), `sleep ${pid} still runs`).toBe(false)
  })
})
