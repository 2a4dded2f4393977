// RepoSession: the one place that opens and locks repositories, for the
// CLI's commands and for jobs. Against a real local repository.
import {readdirSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {initRepository} from '../../src/repo/init.js'
import {RepoSession, withRepoLock} from '../../src/repo/session.js'
import {tempDir} from '../helpers/images.js'

describe('RepoSession', () => {
  const dir = tempDir()
  const location = join(dir.path, 'repo')
  const password = async () => 'pw'
  const locks = () => readdirSync(join(location, 'locks')).filter((n) => !n.startsWith('.tmp-'))

  beforeAll(async () => {
    await initRepository(location, {blockSize: 65536, level: 1, password: 'pw', syntheticFullEvery: 0})
  })
  afterAll(() => dir.cleanup())

  it('opens, locks, and releases and closes everything on close()', async () => {
    const s = new RepoSession()
    const repo = await s.open(location, password)
    expect(s.repositories).toEqual([repo])
    await s.lock(repo, {exclusive: true, command: 'test'})
    expect(locks()).toHaveLength(1)
    await s.assertLocksHeld()
    // another session is refused while the exclusive lock is held
    const other = new RepoSession()
    const again = await other.open(location, password)
    await expect(other.lock(again, {exclusive: false, command: 'test2', waitMs: 0})).rejects.toMatchObject({kind: 'locked', code: 'LOCKED'})
    await s.close()
    expect(s.repositories).toEqual([])
    expect(locks()).toHaveLength(0)
    await other.lock(again, {exclusive: true, command: 'test2'})
    await other.close(again)
    expect(locks()).toHaveLength(0)
  })

  it('a location with no repository is REPO_NOT_FOUND and leaves nothing open', async () => {
    const s = new RepoSession()
    await expect(s.open(join(dir.path, 'nothing-here'), password)).rejects.toMatchObject({kind: 'notFound', code: 'REPO_NOT_FOUND'})
    expect(s.repositories).toEqual([])
  })

  it('a wrong password is refused and leaves nothing open', async () => {
    const s = new RepoSession()
    await expect(s.open(location, async () => 'wrong')).rejects.toMatchObject({kind: 'password'})
    expect(s.repositories).toEqual([])
  })

  it('withRepoLock releases the lock when the step fails', async () => {
    const s = new RepoSession()
    const repo = await s.open(location, password)
    await expect(
      withRepoLock(repo, {exclusive: true, command: 'step'}, async () => {
        expect(locks()).toHaveLength(1)
        throw new Error('step failed')
      }),
    ).rejects.toThrow('step failed')
    expect(locks()).toHaveLength(0)
    await s.close()
  })

  it('refuses to lock a repository it did not open', async () => {
    const a = new RepoSession()
    const repo = await a.open(location, password)
    await expect(new RepoSession().lock(repo, {exclusive: false, command: 'x'})).rejects.toThrow(/did not open/)
    expect(locks()).toHaveLength(0)
    await a.close()
  })
})
