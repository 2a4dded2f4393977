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
