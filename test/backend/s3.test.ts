// The conformance suite against s3rver on 127.0.0.1, plus: objects written
// by vdsnap are visible to an independent client (s3cmd), client settings
// for custom endpoints, and permanent errors for a missing bucket.
import {execFile} from 'node:child_process'
import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {IoError, NotFoundError, UsageError, type VdsnapError} from '../../src/errors.js'
import {S3Backend, s3ClientConfig} from '../../src/backend/s3.js'
import {openStorage} from '../../src/repo/storage.js'
import {startS3, useTestCredentials, type TestS3} from '../helpers/s3.js'
import {backendConformance} from './conformance.js'

const run = promisify(execFile)
const S3CMD = '/usr/bin/s3cmd'

describe('s3 backend (s3rver on 127.0.0.1)', () => {
  let s3: TestS3
  beforeAll(async () => {
    useTestCredentials()
    s3 = await startS3()
  })
  afterAll(async () => {
    await s3?.stop()
  })

  backendConformance((sub) => openStorage(`s3://${s3.bucket}/repos/${sub}`, {s3Endpoint: s3.endpoint}), {
    // s3rver truncates and rewrites the object file in place on PUT; AWS S3,
    // MinIO and Ceph replace objects atomically, which is what save relies on.
    nonAtomicReplace: 's3rver rewrites objects in place',
    // s3rver walks its key directories one by one, so "a/b/z" comes before
    // "a/b-1"; AWS S3 (and MinIO, Ceph) sort by UTF-8 bytes. Repository
    // names never pit a "directory" against a longer name like that.
    directoryOrder: 's3rver lists a key "directory" before keys that extend its name with - or .',
  })

  it('writes objects a second client sees (s3cmd, installed by the test command)', async () => {
    const b = await openStorage(`s3://${s3.bucket}/shared`, {s3Endpoint: s3.endpoint})
    await b.save('chunks/ab/abcdef', Buffer.from('hello'))
    await b.save('snapshots/0123', Buffer.alloc(70_000, 7))
    await b.close()
    const host = s3.endpoint.replace('http://', '')
    const home = mkdtempSync(join(tmpdir(), 'vdsnap-s3cmd-'))
    const s3cmd = (args: string[]) =>
      run(S3CMD, ['--config=/dev/null', `--host=${host}`, `--host-bucket=${host}`, '--no-ssl', '--access_key=S3RVER', '--secret_key=S3RVER', ...args], {env: {...process.env, HOME: home}})
    const {stdout} = await s3cmd(['ls', '--recursive', `s3://${s3.bucket}/shared/`])
    expect(stdout).toMatch(new RegExp(`\\s5\\s+s3://${s3.bucket}/shared/chunks/ab/abcdef`))
    expect(stdout).toMatch(new RegExp(`\\s70000\\s+s3://${s3.bucket}/shared/snapshots/0123`))
    const got = join(home, 'got')
    await s3cmd(['get', `s3://${s3.bucket}/shared/chunks/ab/abcdef`, got])
    expect(readFileSync(got, 'utf8')).toBe('hello')
    rmSync(home, {recursive: true, force: true})
  })

  it('takes the endpoint from the environment when no option is given', async () => {
    process.env.AWS_ENDPOINT_URL_S3 = s3.endpoint
    try {
      const b = await openStorage(`s3://${s3.bucket}/from-env`)
      await b.save('x', Buffer.from('1'))
      expect(await b.stat('x')).toEqual({name: 'x', size: 1})
      await b.close()
    } finally {
      delete process.env.AWS_ENDPOINT_URL_S3
    }
  })

  it('fails permanently, with a hint, for a missing bucket', async () => {
    const b = await openStorage('s3://no-such-bucket/x', {s3Endpoint: s3.endpoint})
    const err = (await b.save('y', Buffer.from('1')).catch((e: unknown) => e)) as VdsnapError
    await b.close()
    expect(err).toBeInstanceOf(IoError)
    expect(err.retryable).toBe(false)
    expect(err.oneLine()).toContain('create the bucket')
  })

  it('treats a dead endpoint as retryable once it has answered before', async () => {
    const other = await startS3('gone')
    const b = await openStorage(`s3://gone/x`, {s3Endpoint: other.endpoint, retry: {maxAttempts: 1}})
    await b.save('y', Buffer.from('1'))
    await other.stop()
    const err = (await b.load('y').catch((e: unknown) => e)) as VdsnapError
    await b.close()
    expect(err).toBeInstanceOf(IoError)
    expect(err.retryable).toBe(true)
  })
})

describe('s3 client settings', () => {
  it.each([
    ['http://127.0.0.1:9000', true],
    ['http://localhost:9000', true],
    ['http://[::1]:9000', true],
    ['https://minio.example.com', false],
  ])('path-style for %s is %s', (endpoint, pathStyle) => {
    const c = s3ClientConfig({endpoint}, {})
    expect(c.forcePathStyle).toBe(pathStyle)
    expect(c.requestChecksumCalculation).toBe('WHEN_REQUIRED')
    expect(c.responseChecksumValidation).toBe('WHEN_REQUIRED')
    expect(c.region).toBe('us-east-1')
    expect(c.maxAttempts).toBe(1)
  })

  it('prefers the option, then AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL; an explicit path-style wins', () => {
    const env = {AWS_ENDPOINT_URL_S3: 'http://s3only:1', AWS_ENDPOINT_URL: 'http://all:2', AWS_REGION: 'eu-west-3'}
    expect(s3ClientConfig({endpoint: 'http://opt:3'}, env).endpoint).toBe('http://opt:3')
    expect(s3ClientConfig({}, env).endpoint).toBe('http://s3only:1')
    expect(s3ClientConfig({}, {AWS_ENDPOINT_URL: 'http://all:2'}).endpoint).toBe('http://all:2')
    expect(s3ClientConfig({}, env).region).toBe('eu-west-3')
    expect(s3ClientConfig({endpoint: 'http://10.0.0.5:9000', pathStyle: false}, {}).forcePathStyle).toBe(false)
    const aws = s3ClientConfig({}, {})
    expect(aws.endpoint).toBeUndefined()
    expect(aws.requestChecksumCalculation).toBeUndefined()
  })
})

describe('s3 error classification (stubbed client)', () => {
  const sdkError = (name: string, status?: number, extra: object = {}) =>
    Object.assign(new Error(`${name} happened`), {name, $metadata: {httpStatusCode: status}, ...extra})

  it.each([
    ['SlowDown 503', sdkError('SlowDown', 503), IoError, true],
    ['InternalError 500', sdkError('InternalError', 500), IoError, true],
    ['throttling 429', sdkError('TooManyRequestsException', 429), IoError, true],
    ['connection reset', Object.assign(new Error('read ECONNRESET'), {code: 'ECONNRESET'}), IoError, true],
    ['socket hang up', new Error('socket hang up'), IoError, true],
    ['first-contact refusal', Object.assign(new Error('connect ECONNREFUSED'), {code: 'ECONNREFUSED'}), IoError, false],
    ['AccessDenied 403', sdkError('AccessDenied', 403), IoError, false],
    ['bad key id', sdkError('InvalidAccessKeyId', 403), IoError, false],
    ['NoSuchBucket', sdkError('NoSuchBucket', 404), IoError, false],
    ['NoSuchKey', sdkError('NoSuchKey', 404), NotFoundError, false],
    ['no region', new Error('Region is missing'), UsageError, false],
    ['clock skew (no status)', sdkError('RequestTimeTooSkewed', undefined, {$retryable: {}}), IoError, false],
  ])('%s', async (_label, thrown, type, retryable) => {
    const b = new S3Backend({bucket: 'b', prefix: 'p'}, {endpoint: 'http://127.0.0.1:1'})
    ;(b as unknown as {client: {send: () => Promise<never>}}).client.send = () => Promise.reject(thrown)
    const err = (await b.load('x').catch((e: unknown) => e)) as VdsnapError
    expect(err).toBeInstanceOf(type)
    expect(err.retryable).toBe(retryable)
    expect(err.oneLine()).not.toContain('\n')
    await b.close()
  })

  it('a skewed clock is permanent and says to check the clock', async () => {
    const b = new S3Backend({bucket: 'b', prefix: 'p'}, {endpoint: 'http://127.0.0.1:1'})
    ;(b as unknown as {client: {send: () => Promise<never>}}).client.send = () => Promise.reject(sdkError('RequestTimeTooSkewed', 403))
    const err = (await b.save('x', Buffer.from('1')).catch((e: unknown) => e)) as VdsnapError
    await b.close()
    expect(err.retryable).toBe(false)
    expect(err.oneLine()).toMatch(/RequestTimeTooSkewed.*clock/)
    expect(err.oneLine()).not.toMatch(/credentials/)
  })
})
