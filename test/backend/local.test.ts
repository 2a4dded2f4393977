// The conformance suite against the local file system backend.
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe} from 'vitest'
import {openStorage} from '../../src/repo/storage.js'
import {backendConformance} from './conformance.js'

describe('local backend', () => {
  let dir = ''
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vdsnap-local-'))
  })
  afterAll(async () => {
    await rm(dir, {recursive: true, force: true})
  })
  backendConformance((sub) => openStorage(join(dir, sub)))
})

// openStorage adds the bandwidth wrapper only for a limit; with limits far
// above what the tests move, every wrapper (retry, bandwidth, concurrency)
// is in the stack and must pass ranges and range errors through unchanged.
describe('local backend behind the retry, bandwidth and concurrency wrappers', () => {
  let dir = ''
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vdsnap-local-wrapped-'))
  })
  afterAll(async () => {
    await rm(dir, {recursive: true, force: true})
  })
  backendConformance((sub) => openStorage(join(dir, sub), {connections: 2, limitUpload: 2 ** 40, limitDownload: 2 ** 40}))
})
