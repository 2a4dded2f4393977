// writeFileAtomic: the target is the old file or the new one, never a part,
// and no temporary file is left behind whether the write succeeds or fails.
import {mkdirSync, readdirSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {writeFileAtomic} from '../../src/fs/atomic-write.js'
import {tempDir} from '../helpers/images.js'

describe('writeFileAtomic', () => {
  let dir: {path: string; cleanup(): void}
  let target: string
  beforeEach(() => {
    dir = tempDir()
    target = join(dir.path, 'state.json')
  })
  afterEach(() => dir.cleanup())

  it('creates, then replaces, a file and leaves nothing else in the directory', async () => {
    await writeFileAtomic(target, 'one\n')
    expect(readFileSync(target, 'utf8')).toBe('one\n')
    await writeFileAtomic(target, Buffer.from('two\n'), {mode: 0o600})
    expect(readFileSync(target, 'utf8')).toBe('two\n')
    expect(readdirSync(dir.path)).toEqual(['state.json'])
  })

  it('a write that fails half way leaves the old file and no temporary file', async () => {
    writeFileSync(target, 'old')
    const err = await writeFileAtomic(target, async (fh) => {
      await fh.write(Buffer.from('half of the new con'))
      throw Object.assign(new Error('no space left on device'), {code: 'ENOSPC'})
    }).catch((e: unknown) => e)
    expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC')
    expect(readFileSync(target, 'utf8')).toBe('old')
    expect(readdirSync(dir.path)).toEqual(['state.json'])
  })

  it('a rename that fails (the target is a non-empty directory) leaves it and no temporary file', async () => {
    mkdirSync(join(target, 'inside'), {recursive: true})
    await expect(writeFileAtomic(target, 'new')).rejects.toMatchObject({code: expect.stringMatching(/^(EISDIR|ENOTEMPTY|EEXIST)$/)})
    expect(statSync(target).isDirectory()).toBe(true)
    expect(readdirSync(dir.path)).toEqual(['state.json'])
  })

  it('a missing directory is the system error, and nothing is created', async () => {
    await expect(writeFileAtomic(join(dir.path, 'no', 'f'), 'x')).rejects.toMatchObject({code: 'ENOENT'})
    expect(readdirSync(dir.path)).toEqual([])
  })

  it('writes under the temporary name given, in the same directory, and removes it on failure', async () => {
    const tempPath = join(dir.path, '.tmp-fixed')
    let seen: string[] = []
    await writeFileAtomic(target, async (fh) => {
      seen = readdirSync(dir.path)
      await fh.write(Buffer.from('x'))
    }, {tempPath, syncDir: false})
    expect(seen).toEqual(['.tmp-fixed'])
    expect(readdirSync(dir.path)).toEqual(['state.json'])
    await expect(writeFileAtomic(target, async () => Promise.reject(new Error('boom')), {tempPath})).rejects.toThrow('boom')
    expect(readdirSync(dir.path)).toEqual(['state.json'])
    expect(readFileSync(target, 'utf8')).toBe('x')
  })
})
