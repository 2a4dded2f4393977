// The conformance suite against OpenSSH's sshd on 127.0.0.1, plus the SFTP
// failure modes: unknown/changed host key, hashed known_hosts, wrong key,
// server killed mid-transfer and restarted.
import {execFile} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {copyFile, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {promisify} from 'node:util'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {IoError, type VdsnapError} from '../../src/errors.js'
import {SftpBackend} from '../../src/backend/sftp.js'
import {openStorage, type StorageOptions} from '../../src/repo/storage.js'
import {startGateProxy} from '../helpers/gate-proxy.js'
import {haveSshd, startSshd, type TestSshd} from '../helpers/sshd.js'
import {backendConformance} from './conformance.js'

const run = promisify(execFile)

describe.skipIf(!haveSshd)('sftp backend (OpenSSH sshd on 127.0.0.1; skipped: /usr/sbin/sshd missing, install openssh-server)', () => {
  let sshd: TestSshd
  let savedAgent: string | undefined
  const url = (sub: string) => `sftp://${sshd.user}@127.0.0.1:${sshd.port}${sshd.rootDir}/${sub}`
  const opts = (extra: StorageOptions = {}): StorageOptions => ({sshKey: sshd.userKeyPath, knownHostsFile: sshd.knownHostsPath, ...extra})

  beforeAll(async () => {
    savedAgent = process.env.SSH_AUTH_SOCK
    delete process.env.SSH_AUTH_SOCK
    sshd = await startSshd()
  })
  afterAll(async () => {
    if (savedAgent !== undefined) process.env.SSH_AUTH_SOCK = savedAgent
    await sshd?.stop()
  })

  backendConformance((sub) => openStorage(url(sub), opts()))

  /** The first call's error, and how many times the retry wrapper would have tried again (a permanent error: none). */
  async function failure(options: StorageOptions): Promise<{err: VdsnapError; retries: number}> {
    let retries = 0
    const b = await openStorage(url('denied'), {...options, retry: {onRetry: () => void retries++}})
    const err = (await b.stat('x').then(
      () => undefined,
      (e: unknown) => e,
    )) as VdsnapError
    await b.close()
    return {err, retries}
  }

  it('refuses an unknown host key fast, with a one-line error saying how to trust it', async () => {
    const empty = join(sshd.rootDir, '..', 'known_hosts_empty')
    await writeFile(empty, '')
    const {err, retries} = await failure(opts({knownHostsFile: empty}))
    expect(err).toBeInstanceOf(IoError)
    expect(err.retryable).toBe(false)
    expect(err.oneLine()).not.toContain('\n')
    expect(err.oneLine()).toContain(`ssh-keyscan -p ${sshd.port} 127.0.0.1 >> ${empty}`)
    expect(err.oneLine()).toMatch(/SHA256:/)
    expect(retries).toBe(0) // fast: given up at the first attempt, no backoff
  })

  it('refuses a changed host key', async () => {
    const other = join(sshd.rootDir, '..', 'other_host')
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other])
    const pub = (await readFile(`${other}.pub`, 'utf8')).split(' ')
    const changed = join(sshd.rootDir, '..', 'known_hosts_changed')
    await writeFile(changed, `[127.0.0.1]:${sshd.port} ${pub[0]} ${pub[1]}\n`)
    const {err, retries} = await failure(opts({knownHostsFile: changed}))
    expect(err.message).toContain('CHANGED')
    expect(err.oneLine()).toContain(`ssh-keygen -R '[127.0.0.1]:${sshd.port}'`)
    expect(err.retryable).toBe(false)
    expect(retries).toBe(0)
  })

  it('accepts hashed known_hosts entries (ssh-keygen -H)', async () => {
    const hashed = join(sshd.rootDir, '..', 'known_hosts_hashed')
    await copyFile(sshd.knownHostsPath, hashed)
    await run('ssh-keygen', ['-q', '-H', '-f', hashed])
    expect(await readFile(hashed, 'utf8')).toMatch(/^\|1\|/)
    const b = await openStorage(url('hashed'), opts({knownHostsFile: hashed}))
    await b.save('x', Buffer.from('ok'))
    expect((await b.load('x')).toString()).toBe('ok')
    await b.close()
  })

  it('fails fast with a wrong key, as a permanent error', async () => {
    const wrong = join(sshd.rootDir, '..', 'wrong_key')
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', wrong])
    const {err, retries} = await failure(opts({sshKey: wrong}))
    expect(err).toBeInstanceOf(IoError)
    expect(err.message).toContain('login')
    expect(err.oneLine()).toContain('authorized_keys')
    expect(err.retryable).toBe(false)
    expect(retries).toBe(0) // fast: given up at the first attempt, no backoff
  })

  it('saves many objects at once into directories that do not exist yet (two first saves into one directory raced)', async () => {
    const b = await openStorage(url('fresh-dirs'), opts())
    const names = Array.from({length: 64}, (_, i) => `chunks/${(i % 8).toString(16).padStart(2, '0')}/n${i}`)
    await Promise.all(names.map((n) => b.save(n, Buffer.from(n))))
    for (const n of names) expect((await b.load(n)).toString()).toBe(n)
    await b.close()
  })

  it('turns a server killed mid-transfer into a retryable error, and the retry wrapper rides out the restart', async () => {
    // The client talks to sshd through a gate that stalls the upload after
    // 8 MiB: the server is killed while the save is provably unfinished.
    const gate = await startGateProxy(sshd.port)
    const knownHosts = join(sshd.rootDir, '..', 'known_hosts_gate')
    await writeFile(knownHosts, (await readFile(sshd.knownHostsPath, 'utf8')).replaceAll(`]:${sshd.port} `, `]:${gate.port} `))
    const raw = new SftpBackend({user: sshd.user, host: '127.0.0.1', port: gate.port, path: `${sshd.rootDir}/killed`}, {sshKey: sshd.userKeyPath, knownHostsFile: knownHosts})
    try {
      await raw.save('warm', Buffer.from('up'))
      const stalled = gate.stallAfter(8 << 20)
      const pending = raw.save('big', randomBytes(96 << 20)).then(
        () => undefined,
        (e: unknown) => e as VdsnapError,
      )
      await stalled
      await sshd.kill()
      const err = await pending
      expect(err, 'the save finished before the server was killed').toBeInstanceOf(IoError)
      expect(err!.retryable).toBe(true)
      // While the server is down, a fresh call fails retryably too (refused connection).
      const down = (await raw.stat('warm').catch((e: unknown) => e)) as VdsnapError
      expect(down.retryable).toBe(true)
    } finally {
      await raw.close()
      await gate.close()
    }
    await sshd.start()

    // Restarted from the retry wrapper's first retry: the save has provably
    // failed once, and the retries then wait for the server however long it
    // takes to come up.
    let restarting: Promise<void> | undefined
    const retry = {baseDelayMs: 100, maxDelayMs: 400, maxAttempts: 1000, onRetry: () => void (restarting ??= sshd.start())}
    const b = await openStorage(url('killed'), opts({retry}))
    await b.stat('warm') // connected once, so a refused connection now counts as transient
    await sshd.kill()
    const data = randomBytes(4 << 20)
    await b.save('after-restart', data)
    expect(restarting, 'the save never failed while the server was down').toBeDefined()
    await restarting
    expect((await b.load('after-restart')).equals(data)).toBe(true)
    await b.close()
  })
})
