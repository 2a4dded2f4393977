// A storage fault in the middle of a backup ends the run with that error —
// promptly, never a hang — and leaves no snapshot; the next run completes
// and reuses what was stored. (A lost upload budget once made a failed
// upload hang every batch still waiting for room.)
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {LocalBackend} from '../../src/backend/local.js'
import {runBackup} from '../../src/backup/backup.js'
import {IoError} from '../../src/errors.js'
import {Repository} from '../../src/repo/repository.js'
import {FaultyBackend} from '../helpers/faulty-backend.js'
import {randomAt, tempDir} from '../helpers/images.js'
import {execFileSync} from 'node:child_process'

describe('storage fault mid-backup', () => {
  const d = tempDir()
  afterAll(() => d.cleanup())

  it.each([3, 40])('save #%i fails: the backup rejects with the fault, stores no snapshot, and a rerun completes', async (failAt) => {
    const img = join(d.path, `disk-${failAt}.img`)
    execFileSync('truncate', ['-s', String(96 << 20), img])
    randomAt(img, 0, 96 << 20)
    const root = join(d.path, `repo-${failAt}`)
    await Repository.init(new LocalBackend(root), {blockSize: 64 * 1024, level: 1})
    const faulty = new FaultyBackend(new LocalBackend(root)).failCalls('save', failAt, failAt + 1000, new IoError('injected: connection reset', {retryable: false}))
    const repo = await Repository.open(faulty, async () => '')
    await expect(runBackup(repo, {source: img})).rejects.toThrow(/injected/)
    expect(await repo.listSnapshots()).toEqual([])
    const again = await Repository.open(new LocalBackend(root), async () => '')
    const res = await runBackup(again, {source: img})
    expect(res.snapshot.stats.blocksNew).toBe(1536 - (failAt - 1))
  })
})
