// Not a test: measures backup and restore throughput to SFTP with and
// without a 50 ms round trip (a delaying TCP proxy in front of sshd), to
// show whether transfers are latency-bound. Run with `npm run bench:latency`.
import {mkdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, it} from 'vitest'
import {startDelayProxy} from '../test/helpers/delay-proxy.js'
import {ROOT, vdsnap, vdsnapJson} from '../test/helpers/cli.js'
import {randomAt, tempDir} from '../test/helpers/images.js'
import {startSshd} from '../test/helpers/sshd.js'
import {execFileSync} from 'node:child_process'

const MiB = 1024 * 1024
const dir = tempDir('vdsnap-latency-')
afterAll(() => dir.cleanup())

it('backup and restore over SFTP at 0 and 50 ms round trips', async () => {
  const sshd = await startSshd()
  const img = join(dir.path, 'disk.img')
  execFileSync('truncate', ['-s', String(256 * MiB), img])
  randomAt(img, 0, 96 * MiB) // incompressible: measures the link, not zstd
  const results: Record<string, unknown>[] = []
  for (const rtt of [0, 50]) {
    const proxy = rtt ? await startDelayProxy(sshd.port, rtt / 2) : null
    const port = proxy?.port ?? sshd.port
    // known_hosts names the port: a proxy on another port needs its own entry
    const kh = join(dir.path, `kh-${rtt}`)
    const line = execFileSync('cat', [sshd.knownHostsPath]).toString().replace(`]:${sshd.port} `, `]:${port} `)
    writeFileSync(kh, line)
    const env = {VDSNAP_REPOSITORY: `sftp://${sshd.user}@127.0.0.1:${port}${sshd.rootDir}/r${rtt}`, VDSNAP_PASSWORD: 'pw', SSH_AUTH_SOCK: undefined}
    const flags = ['--ssh-key', sshd.userKeyPath, '--known-hosts', kh]
    await vdsnap(['init', ...flags], env)
    const t0 = Date.now()
    const b = await vdsnapJson(['backup', img, ...flags], env)
    const backupMs = Date.now() - t0
    const t1 = Date.now()
    await vdsnapJson(['restore', b.snapshot, '--to', join(dir.path, `out${rtt}.img`), ...flags], env)
    const restoreMs = Date.now() - t1
    results.push({rttMs: rtt, storedMiB: +(b.bytesStored / MiB).toFixed(1), backupMs, restoreMs, backupMiBs: +((b.bytesStored / MiB) / (backupMs / 1000)).toFixed(1), restoreMiBs: +((96) / (restoreMs / 1000)).toFixed(1)})
    await proxy?.close()
  }
  await sshd.stop()
  mkdirSync(join(ROOT, 'bench/results'), {recursive: true})
  writeFileSync(join(ROOT, 'bench/results/latency.json'), JSON.stringify(results, null, 2) + '\n')
  console.log(JSON.stringify(results, null, 2))
}, 600_000)
