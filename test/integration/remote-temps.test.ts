// Temporary objects that dead saves leave behind (".tmp-*": a killed
// process or a connection cut between write and rename) are swept on every
// backend, against OpenSSH's sshd and s3rver on 127.0.0.1: "key passwd"
// removes a stale one in keys/ (a whole key slot under a temporary name),
// prune removes the others once older than the lock staleness limit, keeps
// a fresh one (a save that may still be running), and --dry-run only counts.
import {mkdirSync, readdirSync, utimesSync, writeFileSync} from 'node:fs'
import {dirname} from 'node:path'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {STALE_MS} from '../../src/repo/lock.js'
import {openStorage} from '../../src/repo/storage.js'
import type {StorageBackend} from '../../src/backend/types.js'
import {vdsnap, vdsnapJson} from '../helpers/cli.js'
import {makeExt4Image, tempDir} from '../helpers/images.js'
import {REMOTE_KINDS, useRemoteServers, type RemoteKind} from '../helpers/remote-servers.js'
import {haveSshd} from '../helpers/sshd.js'

const MiB = 1024 * 1024
const STALE = ['chunks/ab/.tmp-0123456789ab', 'indexes/.tmp-aaaaaaaaaaaa', 'keys/.tmp-bbbbbbbbbbbb']
const FRESH = 'snapshots/.tmp-cccccccccccc'

/** Every file below `dir` (recursively) whose path contains `part`. */
function filesWith(dir: string, part: string): string[] {
  return (readdirSync(dir, {recursive: true}) as string[]).map((f) => join(dir, f)).filter((f) => f.includes(part))
}

describe.skipIf(!haveSshd)('stale temporary objects on remote backends', () => {
  const dir = tempDir()
  const servers = useRemoteServers('vdsnap-temps', {setCredentials: true}) // this process saves the planted objects itself
  afterAll(() => dir.cleanup())

  /** Plants the temporary objects; the stale ones get an mtime past the limit on the server's disk. */
  async function plant(kind: RemoteKind, name: string, backend: StorageBackend): Promise<void> {
    const {sshd, s3} = servers
    const old = (Date.now() - STALE_MS - 60_000) / 1000
    if (kind === 'sftp') {
      for (const t of [...STALE, FRESH]) {
        const path = join(sshd.rootDir, name, ...t.split('/'))
        mkdirSync(dirname(path), {recursive: true})
        writeFileSync(path, 'a key slot or a chunk, written but never renamed')
        if (t !== FRESH) utimesSync(path, old, old)
      }
      return
    }
    for (const t of [...STALE, FRESH]) await backend.save(t, Buffer.from('a key slot or a chunk, written but never renamed'))
    for (const t of STALE) {
      const leaf = t.slice(t.lastIndexOf('/') + 1)
      const hits = filesWith(s3.dataDir, leaf)
      expect(hits.length).toBeGreaterThan(0)
      for (const f of hits) utimesSync(f, old, old)
    }
  }

  async function names(backend: StorageBackend): Promise<string[]> {
    const out: string[] = []
    for await (const o of backend.list('')) out.push(o.name)
    for await (const t of backend.listTemps!()) out.push(t.name)
    return out.sort()
  }

  it.each(REMOTE_KINDS)('%s: key passwd removes a stale key slot temp; prune removes the other stale temps and keeps a fresh one', async (kind) => {
    const name = 'temps'
    const location = servers.url(kind, name)
    const flags = servers.flags(kind)
    const env = {...servers.base, VDSNAP_REPOSITORY: location}
    expect((await vdsnap(['init', '--block-size', '64KiB', ...flags], env)).code).toBe(0)
    const img = join(dir.path, `${kind}.img`)
    makeExt4Image(img, 4 * MiB)
    await vdsnapJson(['backup', img, ...flags], env)
    const backend = await openStorage(location, servers.storageOptions())
    try {
      await plant(kind, name, backend)
      const planted = await names(backend)
      for (const t of [...STALE, FRESH]) expect(planted).toContain(t)

      const passwd = await vdsnap(['key', 'passwd', ...flags], {...env, VDSNAP_NEW_PASSWORD: 'two'})
      expect(passwd.code, passwd.stderr).toBe(0)
      const afterKeys = await names(backend)
      expect(afterKeys).not.toContain('keys/.tmp-bbbbbbbbbbbb')
      for (const t of [STALE[0]!, STALE[1]!, FRESH]) expect(afterKeys).toContain(t)
      const env2 = {...env, VDSNAP_PASSWORD: 'two'}

      const before = await names(backend)
      const dry = await vdsnapJson(['prune', '--dry-run', ...flags], env2)
      expect(dry.tempFilesRemoved).toBe(2)
      expect(await names(backend)).toEqual(before)

      const res = await vdsnapJson(['prune', ...flags], env2)
      expect(res.tempFilesRemoved).toBe(2)
      const after = await names(backend)
      expect(after).not.toContain(STALE[0])
      expect(after).not.toContain(STALE[1])
      expect(after).toContain(FRESH) // may be a save still running
      expect(before.filter((n) => !after.includes(n) && !n.startsWith('locks/')).sort()).toEqual([STALE[0], STALE[1]].sort())
      expect((await vdsnap(['check', '--read-data', ...flags], env2)).code).toBe(0)
    } finally {
      await backend.close()
    }
  })
})
