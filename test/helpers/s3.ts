// Starts s3rver (an S3-compatible server, from node_modules) on 127.0.0.1
// for tests: a free port, a temp data directory, one bucket. Credentials are
// s3rver's fixed S3RVER/S3RVER; `useTestCredentials` points the AWS SDK at
// them and away from the user's ~/.aws files.
import {spawn, type ChildProcess} from 'node:child_process'
import {mkdtemp, rm} from 'node:fs/promises'
import {createRequire} from 'node:module'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {freePort, waitForPort} from './sshd.js'

export interface TestS3 {
  endpoint: string
  bucket: string
  port: number
  /** The s3rver process (SIGSTOP it to make every request hang). */
  pid: number
  /** s3rver's data directory (an object's LastModified is its file's mtime there). */
  dataDir: string
  stop(): Promise<void>
}

export const S3RVER_ENV = {
  AWS_ACCESS_KEY_ID: 'S3RVER',
  AWS_SECRET_ACCESS_KEY: 'S3RVER',
  AWS_REGION: 'us-east-1',
  AWS_CONFIG_FILE: '/dev/null',
  AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
  AWS_EC2_METADATA_DISABLED: 'true',
}

/** Sets the s3rver credentials in this process's environment. */
export function useTestCredentials(): void {
  Object.assign(process.env, S3RVER_ENV)
  delete process.env.AWS_PROFILE
  delete process.env.AWS_SESSION_TOKEN
  delete process.env.AWS_ENDPOINT_URL
  delete process.env.AWS_ENDPOINT_URL_S3
}

export async function startS3(bucket = 'vdsnap-test'): Promise<TestS3> {
  const dir = await mkdtemp(join(tmpdir(), 'vdsnap-s3rver-'))
  const port = await freePort()
  const require = createRequire(import.meta.url)
  const bin = join(dirname(require.resolve('s3rver/package.json')), 'bin', 's3rver.js')
  const child: ChildProcess = spawn(
    process.execPath,
    // s3rver encrypts ListObjectsV2 continuation tokens with DES, which
    // OpenSSL 3 only offers through its legacy provider: without the flag
    // every listing past the first 1000 keys fails with a 500.
    ['--openssl-legacy-provider', bin, '-d', dir, '-a', '127.0.0.1', '-p', String(port), '--silent', '--configure-bucket', bucket],
    {stdio: ['ignore', 'ignore', 'pipe']},
  )
  let stderr = ''
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
  try {
    await waitForPort(port, child)
  } catch (e) {
    child.kill('SIGKILL')
    throw new Error(`${(e as Error).message}\n${stderr}`)
  }
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    port,
    pid: child.pid!,
    dataDir: dir,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r))
        child.kill('SIGTERM')
        await exited
      }
      await rm(dir, {recursive: true, force: true})
    },
  }
}
