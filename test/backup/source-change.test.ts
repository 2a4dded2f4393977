// The source changing during the read (SPEC §4.8), made deterministic by
// touching the file from the progress callback at the end of the scan.
import {utimesSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {LocalBackend} from '../../src/backend/local.js'
import {runBackup} from '../../src/backup/backup.js'
import {IoError} from '../../src/errors.js'
import {Repository} from '../../src/repo/repository.js'
import {makeExt4Image, tempDir} from '../helpers/images.js'

describe('source changed during the read', () => {
  const d = tempDir()
  const img = join(d.path, 'disk.img')
  let repo: Repository
  beforeAll(async () => {
    makeExt4Image(img, 16 * 1024 * 1024)
    repo = await Repository.init(new LocalBackend(join(d.path, 'repo')), {blockSize: 1 << 20, level: 3})
  })
  afterAll(() => d.cleanup())

  let bump = 0
  const atEnd = (ev: {phase: string; bytesDone: number; bytesTotal: number}) => ev.phase === 'scan' && ev.bytesDone === ev.bytesTotal
  const touch = (ev: {phase: string; bytesDone: number; bytesTotal: number}) => {
    if (atEnd(ev)) utimesSync(img, new Date(), new Date(Date.now() + 10_000 + ++bump * 1000))
  }

  it('warns and still stores the snapshot (warn)', async () => {
    const r = await runBackup(repo, {source: img, onProgress: touch})
    expect(r.warnings.join()).toMatch(/source changed during the read/)
    // dates, not epoch floats
    expect(r.warnings[0]).toMatch(/modified \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z→\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/)
    expect(r.warnings[0]).not.toMatch(/\d{10,}/)
    expect(r.snapshot.warnings?.length).toBe(1)
    expect((await repo.listSnapshots()).length).toBe(1)
  })

  it('fails and stores no snapshot (fail)', async () => {
    await expect(runBackup(repo, {source: img, onSourceChange: 'fail', onProgress: touch})).rejects.toBeInstanceOf(IoError)
    expect((await repo.listSnapshots()).length).toBe(1)
  })

  it('retries up to three reads (retry)', async () => {
    let attempts = 0
    let touched = false
    const r = await runBackup(repo, {
      source: img,
      onSourceChange: 'retry',
      onProgress: (ev) => {
        if (ev.phase === 'index') attempts++
        if (atEnd(ev) && !touched) {
          touched = true
          touch(ev)
        }
      },
    })
    // the first read saw the change and stored nothing; the second stored the snapshot
    expect(touched).toBe(true)
    expect(attempts).toBe(1)
    expect((await repo.listSnapshots()).length).toBe(2) // the changed read stored no snapshot
    expect(r.warnings).toEqual([])
  })
})
