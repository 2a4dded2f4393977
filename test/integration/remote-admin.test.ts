// Repository administration on the remote backends, through the CLI against
// OpenSSH's sshd and s3rver on 127.0.0.1: forget by policy with a chain
// merge, then prune (every kept snapshot still restores byte-identical,
// check --read-data clean); key add and key passwd; and a lock written by
// another host — fresh, it makes backup and prune give up with exit 4 after
// --lock-wait; older than the staleness limit, it is ignored.
import {randomBytes} from 'node:crypto'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {STALE_MS} from '../../src/repo/lock.js'
import {openStorage} from '../../src/repo/storage.js'
import {vdsnap, vdsnapJson} from '../helpers/cli.js'
import {makeExt4Image, randomAt, sha256File, tempDir} from '../helpers/images.js'
import {REMOTE_KINDS, useRemoteServers, type RemoteKind} from '../helpers/remote-servers.js'
import {haveSshd} from '../helpers/sshd.js'

const MiB = 1024 * 1024

describe.skipIf(!haveSshd)('remote administration: forget, prune, keys, locks of other hosts', () => {
  const dir = tempDir()
  const servers = useRemoteServers('vdsnap-admin', {setCredentials: true}) // this process writes other hosts' locks itself
  afterAll(() => dir.cleanup())

  async function newRepo(kind: RemoteKind, name: string) {
    const env = {...servers.base, VDSNAP_REPOSITORY: servers.url(kind, name)}
    const flags = servers.flags(kind)
    const r = await vdsnap(['init', '--block-size', '64KiB', ...flags], env)
    expect(r.code, r.stderr).toBe(0)
    const run = (args: string[], extra: Record<string, string | undefined> = {}) => vdsnap([...args, ...flags], {...env, ...extra})
    const json = <T = any>(args: string[], extra: Record<string, string | undefined> = {}, code = 0) => vdsnapJson<T>([...args, ...flags], {...env, ...extra}, code)
    return {env, flags, run, json}
  }

  it.each(REMOTE_KINDS)('%s: forget --keep-last merges the chain, prune frees the chunks, every kept snapshot restores', async (kind) => {
    const repo = await newRepo(kind, 'forget')
    const img = join(dir.path, `${kind}-forget.img`)
    makeExt4Image(img, 6 * MiB)
    const ids: string[] = []
    const hashes: string[] = []
    for (let i = 0; i < 4; i++) {
      randomAt(img, 1 * MiB, 512 * 1024) // the same range each time: older versions' chunks become garbage
      ids.push((await repo.json(['backup', img, '--disk', 'vm'])).snapshot)
      hashes.push(sha256File(img))
    }
    const forget = await repo.json(['forget', '--keep-last', '2'])
    expect(forget.remove.map((m: {id: string}) => m.id).sort()).toEqual(ids.slice(0, 2).sort())
    expect(forget.keep.map((k: {id: string}) => k.id).sort()).toEqual(ids.slice(2).sort())
    // the third snapshot was a delta on the second: it now rests on nothing, with a full index
    expect(forget.rebased).toEqual([expect.objectContaining({id: ids[2], newParent: null, indexKind: 'full'})])
    const pruned = await repo.json(['prune'])
    expect(pruned.chunksRemoved).toBeGreaterThanOrEqual(8) // the two forgotten versions of the changed range
    expect(pruned.bytesFreed).toBeGreaterThan(0)
    expect((await repo.json(['check', '--read-data'])).findings).toEqual([])
    expect((await repo.json<any[]>(['snapshots'])).map((s) => s.id)).toEqual(ids.slice(2))
    for (const i of [2, 3]) {
      const out = join(dir.path, `${kind}-forget-${i}.img`)
      const r = await repo.run(['restore', ids[i]!, '--to', out])
      expect(r.code, r.stderr).toBe(0)
      expect(sha256File(out)).toBe(hashes[i])
    }
    expect((await repo.json(['prune', '--dry-run'])).chunksRemoved).toBe(0)
  })

  it.each(REMOTE_KINDS)('%s: key add and key passwd', async (kind) => {
    const repo = await newRepo(kind, 'keys')
    const added = await repo.json(['key', 'add'], {VDSNAP_NEW_PASSWORD: 'two'})
    expect(added.added).toMatch(/^[0-9a-f]+$/)
    expect((await repo.json<any[]>(['key', 'list'])).length).toBe(2)
    expect((await repo.run(['snapshots'], {VDSNAP_PASSWORD: 'two'})).code).toBe(0)
    const changed = await repo.json(['key', 'passwd'], {VDSNAP_PASSWORD: 'two', VDSNAP_NEW_PASSWORD: 'three'})
    expect(changed.removed).toBe(added.added)
    const old = await repo.run(['snapshots'], {VDSNAP_PASSWORD: 'two'})
    expect(old.code).toBe(5)
    expect(old.stderr).toMatch(/vdsnap: error: .*password/)
    expect((await repo.run(['snapshots'], {VDSNAP_PASSWORD: 'three'})).code).toBe(0)
    expect((await repo.run(['snapshots'], {VDSNAP_PASSWORD: 'pw'})).code).toBe(0) // the first slot is untouched
    expect((await repo.json<any[]>(['key', 'list'], {VDSNAP_PASSWORD: 'three'})).length).toBe(2)
  })

  it.each(REMOTE_KINDS)('%s: a fresh lock of another host stops backup and prune (exit 4 after --lock-wait); an old one is stale', async (kind) => {
    const repo = await newRepo(kind, 'locks')
    const img = join(dir.path, `${kind}-locks.img`)
    makeExt4Image(img, 4 * MiB)
    await repo.json(['backup', img, '--disk', 'vm'])
    const storage = await openStorage(servers.url(kind, 'locks'), servers.storageOptions())
    const putLock = async (exclusive: boolean, ageMs: number): Promise<string> => {
      const name = `locks/${randomBytes(16).toString('hex')}`
      const t = new Date(Date.now() - ageMs).toISOString()
      const info = {host: 'backup-02.elsewhere.example', pid: 4242, exclusive, command: exclusive ? 'prune' : 'backup', created: t, refreshed: t}
      await storage.save(name, Buffer.from(JSON.stringify(info)))
      return name
    }
    try {
      const exclusive = await putLock(true, 5_000)
      const shared = await putLock(false, 5_000)

      let t0 = Date.now()
      const backup = await repo.run(['backup', img, '--disk', 'vm', '--lock-wait', '2s'])
      expect(backup.code, backup.stderr).toBe(4)
      expect(Date.now() - t0).toBeGreaterThanOrEqual(2000)
      expect(backup.stderr.trim().split('\n').filter((l) => l.startsWith('vdsnap: error'))).toEqual([
        expect.stringMatching(/locked exclusively by "prune" \(pid 4242 on backup-02\.elsewhere\.example/),
      ])
      await storage.remove(exclusive)
      t0 = Date.now()
      const prune = await repo.run(['prune', '--lock-wait', '1s'])
      expect(prune.code, prune.stderr).toBe(4)
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1000)
      expect(prune.stderr).toMatch(/locked by "backup" \(pid 4242 on backup-02\.elsewhere\.example/)
      // a shared lock does not stop another shared one
      expect((await repo.run(['backup', img, '--disk', 'vm'])).code).toBe(0)
      await storage.remove(shared)

      // not refreshed for longer than the staleness limit: the other host is gone
      await putLock(true, STALE_MS + 60_000)
      await putLock(false, STALE_MS + 60_000)
      const b = await repo.run(['backup', img, '--disk', 'vm'])
      expect(b.code, b.stderr).toBe(0)
      const p = await repo.run(['prune'])
      expect(p.code, p.stderr).toBe(0)
      const unlocked = await repo.json(['unlock'])
      expect(unlocked.removed).toHaveLength(2)
      expect(unlocked.removed.every((l: {stale: boolean; host: string}) => l.stale && l.host === 'backup-02.elsewhere.example')).toBe(true)
    } finally {
      await storage.close()
    }
  })
})
