// Repository locations and the one place wrappers are composed.
import {userInfo} from 'node:os'
import {resolve} from 'node:path'
import {describe, expect, it} from 'vitest'
import {UsageError} from '../../src/errors.js'
import {BandwidthBackend} from '../../src/backend/bandwidth.js'
import {ConcurrencyBackend} from '../../src/backend/concurrency.js'
import {LocalBackend} from '../../src/backend/local.js'
import {RetryBackend} from '../../src/backend/retry.js'
import {openStorage, parseLocation} from '../../src/repo/storage.js'

describe('parseLocation', () => {
  it.each([
    ['/srv/repo', {kind: 'local', path: '/srv/repo'}],
    ['relative/repo', {kind: 'local', path: resolve('relative/repo')}],
    ['file:///srv/my%20repo', {kind: 'local', path: '/srv/my repo'}],
    ['sftp://backup@nas.lan/srv/repo', {kind: 'sftp', sftp: {user: 'backup', host: 'nas.lan', port: 22, path: '/srv/repo'}, given: {user: true, port: false}}],
    ['sftp://backup@nas.lan:2222/srv/repo/', {kind: 'sftp', sftp: {user: 'backup', host: 'nas.lan', port: 2222, path: '/srv/repo'}, given: {user: true, port: true}}],
    ['sftp://backup@nas.lan/~/repo', {kind: 'sftp', sftp: {user: 'backup', host: 'nas.lan', port: 22, path: 'repo'}, given: {user: true, port: false}}],
    ['sftp://backup@[::1]:2222/r', {kind: 'sftp', sftp: {user: 'backup', host: '::1', port: 2222, path: '/r'}, given: {user: true, port: true}}],
    ['sftp://nas.lan/r', {kind: 'sftp', sftp: {user: userInfo().username, host: 'nas.lan', port: 22, path: '/r'}, given: {user: false, port: false}}],
    ['s3://bucket/some/prefix/', {kind: 's3', s3: {bucket: 'bucket', prefix: 'some/prefix'}}],
    ['s3://bucket', {kind: 's3', s3: {bucket: 'bucket', prefix: ''}}],
  ])('%s', (location, expected) => {
    expect(parseLocation(location)).toEqual(expected)
  })

  it.each(['http://example.com/repo', 'sftp:///path', 'sftp://u:secret@host/p', 's3:///prefix', ''])('rejects %j with a UsageError', (location) => {
    expect(() => parseLocation(location)).toThrow(UsageError)
  })
})

describe('openStorage', () => {
  const unwrap = (b: unknown): unknown[] => {
    const chain: unknown[] = []
    for (let cur = b; cur; cur = (cur as {inner?: unknown}).inner) chain.push(cur)
    return chain
  }

  it('composes retry → bandwidth → concurrency → raw backend', async () => {
    const b = await openStorage('/tmp/x', {limitUpload: 1000, limitDownload: 2000})
    expect(unwrap(b).map((x) => (x as object).constructor)).toEqual([RetryBackend, BandwidthBackend, ConcurrencyBackend, LocalBackend])
    expect(b.isLocal).toBe(true)
    expect(typeof b.create).toBe('function')
  })

  it('leaves the bandwidth wrapper out without limits', async () => {
    const b = await openStorage('/tmp/x')
    expect(unwrap(b).map((x) => (x as object).constructor)).toEqual([RetryBackend, ConcurrencyBackend, LocalBackend])
  })

  it('loads the SFTP and S3 backends lazily and connects only on first use', async () => {
    const s = await openStorage('sftp://u@127.0.0.1:1/r')
    expect(s.location).toBe('sftp://u@127.0.0.1:1/r')
    expect(s.isLocal).toBeUndefined()
    await s.close()
    const t = await openStorage('s3://b/p', {s3Endpoint: 'http://127.0.0.1:1'})
    expect(t.location).toBe('s3://b/p')
    await t.close()
  })
})
