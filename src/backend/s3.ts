// S3 backend: objects are keys "<prefix>/<name>" in one bucket of AWS S3 or
// an S3-compatible service (MinIO, Ceph, s3rver...).
//
// Contract details (see types.ts for the common one):
//  - save is a single PutObject: S3 makes it atomic (readers see the old or
//    the new object). Our objects are at most ~17 MiB, far below the 5 GiB
//    single-PUT limit, so no multipart upload is needed.
//  - load with a range is one Range GET; a range past the end is an
//    ObjectRangeError (range.ts), found from the short reply and a HEAD.
//  - The SDK's own retries are off (maxAttempts 1): the retry wrapper is the
//    single place that retries, using the `retryable` flag set here.
//  - Credentials come from the SDK's default chain (env, AWS_PROFILE and
//    ~/.aws files, SSO, web identity, instance metadata).
//  - Custom endpoints get path-style addressing when the host is an IP or
//    localhost, and checksums only WHEN_REQUIRED: newer SDK defaults send
//    aws-chunked bodies that many S3-compatible servers store corrupted.
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3'
import {IoError, NotFoundError, UsageError, VdsnapError} from '../errors.js'
import {checkRangeInside, describeRange, validateRange} from './range.js'
import {isTransientHttpStatus, isTransientNetworkError} from './transient.js'
import {isTempName, type ByteRange, type ObjectInfo, type StorageBackend, type TempObject} from './types.js'

export interface S3Location {
  bucket: string
  /** Key prefix without leading or trailing slash; "" for the bucket root. */
  prefix: string
}

export interface S3Options {
  /** e.g. "http://127.0.0.1:9000"; default AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL, then AWS. */
  endpoint?: string
  /** Default: true when the endpoint host is an IP address or localhost. */
  pathStyle?: boolean
  /** Default: AWS_REGION, AWS_DEFAULT_REGION, the profile's region, or us-east-1 for custom endpoints. */
  region?: string
  /** Sockets kept per host; default 32. */
  maxSockets?: number
}

const THROTTLING = new Set(['SlowDown', 'Throttling', 'ThrottlingException', 'TooManyRequestsException', 'RequestTimeout', 'InternalError', 'ServiceUnavailable'])
const AUTH = new Set(['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken', 'InvalidToken', 'CredentialsProviderError', 'AuthorizationHeaderMalformed'])

/** Endpoint, addressing and checksum settings for a client; exported for tests. */
export function s3ClientConfig(options: S3Options, env: NodeJS.ProcessEnv = process.env): S3ClientConfig {
  const endpoint = options.endpoint ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL
  const config: S3ClientConfig = {
    maxAttempts: 1,
    requestHandler: {
      connectionTimeout: 10_000,
      requestTimeout: 120_000,
      httpAgent: {keepAlive: true, maxSockets: options.maxSockets ?? 32},
      httpsAgent: {keepAlive: true, maxSockets: options.maxSockets ?? 32},
    },
  }
  const region = options.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION
  if (region) config.region = region
  if (endpoint) {
    let host: string
    try {
      host = new URL(endpoint).hostname
    } catch {
      throw new UsageError(`invalid S3 endpoint ${endpoint}`, {hint: 'give a URL such as http://127.0.0.1:9000'})
    }
    config.endpoint = endpoint
    config.region ??= 'us-east-1'
    config.forcePathStyle = options.pathStyle ?? isIpOrLocalhost(host)
    config.requestChecksumCalculation = 'WHEN_REQUIRED'
    config.responseChecksumValidation = 'WHEN_REQUIRED'
  } else if (options.pathStyle !== undefined) {
    config.forcePathStyle = options.pathStyle
  }
  return config
}

interface RangeReply {
  data: Buffer
  /** Object offset of data[0], from Content-Range; 0 for a whole-object (200) reply. */
  start: number
}

/** "bytes 10-19/300" → 10; absent (a server that ignored Range and sent the whole object) → 0. */
function contentRangeStart(header: string | undefined): number {
  const m = header === undefined ? null : /^bytes (\d+)-\d+\/(?:\d+|\*)$/.exec(header)
  return m ? Number(m[1]) : 0
}

/**
 * The asked-for bytes out of a reply that may hold more: HTTP lets a server
 * ignore Range and send the whole object, and some S3 look-alikes (s3rver)
 * read "bytes=0-0" as "from 0 to the end". Shorter replies are returned as
 * they are, for the caller to check against the size.
 */
function rangeOf(reply: RangeReply, range: ByteRange): Buffer {
  const skip = range.offset - reply.start
  if (skip < 0 || skip > reply.data.length) return Buffer.alloc(0)
  return reply.data.subarray(skip, skip + range.length)
}

function isIpOrLocalhost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '')
  return h === 'localhost' || h.endsWith('.localhost') || /^\d{1,3}(\.\d{1,3}){3}$/.test(h) || h.includes(':')
}

export class S3Backend implements StorageBackend {
  readonly location: string
  private readonly client: S3Client
  private readonly keyPrefix: string
  private reachedOnce = false

  constructor(
    private readonly where: S3Location,
    options: S3Options = {},
  ) {
    this.location = `s3://${where.bucket}${where.prefix ? `/${where.prefix}` : ''}`
    this.keyPrefix = where.prefix ? `${where.prefix}/` : ''
    // The SDK warns on every run that its 2027 releases need Node 22; the
    // version is pinned (see TOOLCHAIN.md), so the notice is for us, not users.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
    this.client = new S3Client(s3ClientConfig(options))
  }

  private key(name: string): string {
    return this.keyPrefix + name
  }

  /** Sends one command, turning SDK failures into classified VdsnapErrors. */
  private async send<T>(doing: string, fn: () => Promise<T>): Promise<T> {
    try {
      const out = await fn()
      this.reachedOnce = true
      return out
    } catch (e) {
      throw this.classify(e, doing)
    }
  }

  private classify(err: unknown, doing: string): VdsnapError {
    if (err instanceof VdsnapError) return err
    const e = err as Error & {code?: string; $metadata?: {httpStatusCode?: number}; $retryable?: unknown}
    const status = e.$metadata?.httpStatusCode
    const what = `${doing} (${this.location})`
    if (e.name === 'NoSuchKey' || e.name === 'NotFound' || (status === 404 && e.name !== 'NoSuchBucket')) {
      return new NotFoundError(`${what}: no such object`, {cause: err})
    }
    if (e.name === 'NoSuchBucket') {
      return new IoError(`${what}: bucket ${this.where.bucket} does not exist`, {cause: err, hint: 'create the bucket first, or check the name and endpoint'})
    }
    // A skewed clock fails every request the same way: retrying for minutes
    // cannot help, the clock has to be fixed.
    if (e.name === 'RequestTimeTooSkewed') {
      return new IoError(`${what}: the server refused the request time (RequestTimeTooSkewed)`, {
        cause: err,
        hint: "this host's clock is off: check it (timedatectl, NTP) and run again",
      })
    }
    if (AUTH.has(e.name) || status === 401 || status === 403) {
      return new IoError(`${what}: access denied (${e.name})`, {
        cause: err,
        hint: 'check the AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and the bucket policy',
      })
    }
    if (/region is missing/i.test(e.message)) {
      return new UsageError('no AWS region configured', {cause: err, hint: 'set AWS_REGION or pass --s3-region'})
    }
    const transient =
      THROTTLING.has(e.name) ||
      isTransientHttpStatus(status) ||
      e.$retryable !== undefined ||
      isTransientNetworkError(err) ||
      (e.code === 'ECONNREFUSED' && this.reachedOnce)
    return new IoError(`${what}: ${e.name !== 'Error' ? `${e.name}: ` : ''}${e.message}`, {cause: err, retryable: transient})
  }

  async create(): Promise<void> {
    await this.send(`checking bucket ${this.where.bucket}`, () => this.client.send(new HeadBucketCommand({Bucket: this.where.bucket}))).catch((e) => {
      if (e instanceof NotFoundError) throw new IoError(`bucket ${this.where.bucket} does not exist`, {hint: 'create the bucket first'})
      throw e
    })
    const out = await this.send('checking the repository prefix', () =>
      this.client.send(new ListObjectsV2Command({Bucket: this.where.bucket, Prefix: this.keyPrefix, MaxKeys: 1})),
    )
    if ((out.KeyCount ?? 0) > 0) throw new UsageError(`${this.location} exists and is not empty`, {hint: 'choose another prefix'})
  }

  /** Single PUT, atomic; throws IoError (retryable for 5xx, throttling, resets). Safe to retry. */
  async save(name: string, data: Buffer): Promise<void> {
    await this.send(`writing ${name}`, () =>
      this.client.send(new PutObjectCommand({Bucket: this.where.bucket, Key: this.key(name), Body: data, ContentLength: data.length})),
    )
  }

  /** Throws NotFoundError (permanent) for a missing object, ObjectRangeError past its end. Safe to retry. */
  async load(name: string, range?: ByteRange): Promise<Buffer> {
    if (!range) return this.get(name)
    validateRange(name, range)
    // HTTP cannot ask for zero bytes; the size says whether the empty range is inside.
    if (range.length === 0) return this.checkAgainstSize(name, range, Buffer.alloc(0))
    try {
      const reply = await this.get(name, `bytes=${range.offset}-${range.offset + range.length - 1}`)
      const data = rangeOf(reply, range)
      // S3 answers a range that runs past the end with the bytes that exist.
      return data.length === range.length ? data : await this.checkAgainstSize(name, range, data)
    } catch (e) {
      const cause = (e as VdsnapError).cause as {name?: string} | undefined
      // 416: the range starts at or after the end.
      if (cause?.name === 'InvalidRange') return this.checkAgainstSize(name, range, Buffer.alloc(0))
      throw e
    }
  }

  private get(name: string): Promise<Buffer>
  private get(name: string, Range: string): Promise<RangeReply>
  private async get(name: string, Range?: string): Promise<Buffer | RangeReply> {
    return this.send(`reading ${name}`, async () => {
      const out = await this.client.send(new GetObjectCommand({Bucket: this.where.bucket, Key: this.key(name), Range}))
      const bytes = await out.Body!.transformToByteArray()
      const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
      return Range === undefined ? data : {data, start: contentRangeStart(out.ContentRange)}
    })
  }

  /** Returns `data` when the range lies inside the object; NotFoundError or ObjectRangeError otherwise. */
  private async checkAgainstSize(name: string, range: ByteRange, data: Buffer): Promise<Buffer> {
    const info = await this.stat(name)
    if (info === null) throw new NotFoundError(`reading ${name} (${this.location}): no such object`)
    checkRangeInside(name, this.location, range, info.size)
    if (data.length !== range.length) throw new IoError(`reading ${describeRange(range)} of ${name} (${this.location}): the server sent ${data.length} bytes`, {retryable: true})
    return data
  }

  /** Null when missing. Safe to retry. */
  async stat(name: string): Promise<ObjectInfo | null> {
    try {
      const out = await this.send(`examining ${name}`, () => this.client.send(new HeadObjectCommand({Bucket: this.where.bucket, Key: this.key(name)})))
      return {name, size: out.ContentLength ?? 0}
    } catch (e) {
      if (e instanceof NotFoundError) return null
      throw e
    }
  }

  /**
   * Pages through ListObjectsV2 (1000 keys a page). Keys come in ascending
   * UTF-8 byte order, the order types.ts asks for (true of general purpose
   * buckets and of S3-compatible servers; S3 Express directory buckets do
   * not sort, and the retry wrapper then refuses the listing).
   */
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const dir = prefix.replace(/\/?$/, '/').replace(/^\/$/, '')
    let token: string | undefined
    do {
      const out = await this.send(`listing ${dir || '/'}`, () =>
        this.client.send(new ListObjectsV2Command({Bucket: this.where.bucket, Prefix: this.keyPrefix + dir, ContinuationToken: token})),
      )
      for (const obj of out.Contents ?? []) {
        if (obj.Key === undefined || obj.Key.endsWith('/') || isTempName(obj.Key)) continue // temporary objects: listTemps
        yield {name: obj.Key.slice(this.keyPrefix.length), size: obj.Size ?? 0}
      }
      token = out.IsTruncated ? out.NextContinuationToken : undefined
    } while (token)
  }

  /**
   * Objects whose last name part starts with ".tmp-": a single PUT never
   * leaves one, but a repository moved here from a directory or an SFTP
   * server (with a sync tool) brings the leftovers of its dead saves.
   */
  async *listTemps(): AsyncIterable<TempObject> {
    let token: string | undefined
    do {
      const out = await this.send('listing temporary objects', () =>
        this.client.send(new ListObjectsV2Command({Bucket: this.where.bucket, Prefix: this.keyPrefix, ContinuationToken: token})),
      )
      for (const obj of out.Contents ?? []) {
        if (obj.Key === undefined || !isTempName(obj.Key)) continue
        yield {name: obj.Key.slice(this.keyPrefix.length), size: obj.Size ?? 0, mtimeMs: obj.LastModified?.getTime() ?? 0}
      }
      token = out.IsTruncated ? out.NextContinuationToken : undefined
    } while (token)
  }

  /** Deleting a missing key succeeds in S3. Safe to retry. */
  async remove(name: string): Promise<void> {
    await this.send(`removing ${name}`, () => this.client.send(new DeleteObjectCommand({Bucket: this.where.bucket, Key: this.key(name)})))
  }

  async close(): Promise<void> {
    this.client.destroy()
  }
}
