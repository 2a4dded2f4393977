// Not a test: measures backup and restore throughput to SFTP with and
// without a 50 ms round trip (a delaying TCP proxy in front of sshd), to
// show whether transfers are latency-bound. Run with `npm run bench:latency`.
//
// Each run also pays a fixed cost that no parallelism can hide: the SSH
// handshake (about a dozen round trips), opening the repository, taking and
// dropping the lock, committing the index and manifest. So two sources are
// backed up and restored, one with SMALL and one with LARGE MiB of
// incompressible data: the difference between the two runs cancels the
// fixed cost and gives the transfer rate itself ("marginal"); the large
// run's wall-clock rate is reported too. Both round trips go through the
// same proxy (delay 0 or 25 ms each way), so the proxy's own CPU cost is in
// both figures; each figure is the best of REPEAT runs (the machine is shared).
import {execFileSync} from 'node:child_process'
import {mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, it} from 'vitest'
import {startDelayProxy} from '../test/helpers/delay-proxy.js'
import {ROOT, vdsnap, vdsnapJson} from '../test/helpers/cli.js'
import {randomAt, tempDir} from '../test/helpers/images.js'
import {startSshd} from '../test/helpers/sshd.js'

const MiB = 1024 * 1024
const SMALL = 32
const LARGE = 160
const REPEAT = 2
const dir = tempDir('vdsnap-latency-')
afterAll(() => dir.cleanup())

const rate = (mib: number, ms: number) => +(mib / (ms / 1000)).toFixed(1)

it('backup and restore over SFTP at 0 and 50 ms round trips', async () => {
  const sshd = await startSshd()
  const images: Record<number, string> = {}
  for (const mib of [SMALL, LARGE]) {
    images[mib] = join(dir.path, `disk-${mib}.img`)
    execFileSync('truncate', ['-s', String(256 * MiB), images[mib]!])
    randomAt(images[mib]!, 0, mib * MiB) // incompressible: measures the link, not zstd
  }
  const results: Record<string, unknown>[] = []
  for (const rtt of [0, 50]) {
    const proxy = await startDelayProxy(sshd.port, rtt / 2)
    const port = proxy.port
    // known_hosts names the port: a proxy on another port needs its own entry
    const kh = join(dir.path, `kh-${rtt}`)
    writeFileSync(kh, readFileSync(sshd.knownHostsPath, 'utf8').replace(`]:${sshd.port} `, `]:${port} `))
    const flags = ['--ssh-key', sshd.userKeyPath, '--known-hosts', kh]
    const ms: Record<string, number> = {}
    const best = (key: string, t0: number) => (ms[key] = Math.min(ms[key] ?? Infinity, Date.now() - t0))
    let stored = 0
    let env = {}
    for (let r = 0; r < REPEAT; r++) {
      env = {VDSNAP_REPOSITORY: `sftp://${sshd.user}@127.0.0.1:${port}${sshd.rootDir}/r${rtt}-${r}`, VDSNAP_PASSWORD: 'pw', SSH_AUTH_SOCK: undefined}
      await vdsnap(['init', ...flags], env)
      for (const mib of [SMALL, LARGE]) {
        let t = Date.now()
        const b = await vdsnapJson(['backup', images[mib]!, '--disk', `d${mib}`, ...flags], env)
        best(`backup${mib}`, t)
        stored = b.bytesStored / MiB
        t = Date.now()
        await vdsnapJson(['restore', b.snapshot, '--to', join(dir.path, `out-${rtt}-${r}-${mib}.img`), ...flags], env)
        best(`restore${mib}`, t)
      }
    }
    const t = Date.now()
    await vdsnapJson(['snapshots', ...flags], env)
    const fixed = Date.now() - t
    const delta = LARGE - SMALL
    results.push({
      rttMs: rtt,
      storedMiB: +stored.toFixed(1),
      backupMs: ms[`backup${LARGE}`],
      restoreMs: ms[`restore${LARGE}`],
      backupMiBs: rate(LARGE, ms[`backup${LARGE}`]!),
      restoreMiBs: rate(LARGE, ms[`restore${LARGE}`]!),
      marginalBackupMiBs: rate(delta, ms[`backup${LARGE}`]! - ms[`backup${SMALL}`]!),
      marginalRestoreMiBs: rate(delta, ms[`restore${LARGE}`]! - ms[`restore${SMALL}`]!),
      snapshotsCommandMs: fixed,
    })
    await proxy.close()
  }
  await sshd.stop()
  const [lan, wan] = results as {backupMiBs: number; restoreMiBs: number; marginalBackupMiBs: number; marginalRestoreMiBs: number}[]
  const out = {
    sourceMiB: {small: SMALL, large: LARGE},
    load: readFileSync('/proc/loadavg', 'utf8').trim(),
    runs: results,
    wanVsLan: {
      backup: +(wan!.backupMiBs / lan!.backupMiBs).toFixed(2),
      restore: +(wan!.restoreMiBs / lan!.restoreMiBs).toFixed(2),
      marginalBackup: +(wan!.marginalBackupMiBs / lan!.marginalBackupMiBs).toFixed(2),
      marginalRestore: +(wan!.marginalRestoreMiBs / lan!.marginalRestoreMiBs).toFixed(2),
    },
  }
  mkdirSync(join(ROOT, 'bench/results'), {recursive: true})
  writeFileSync(join(ROOT, 'bench/results/latency.json'), JSON.stringify(out, null, 2) + '\n')
  console.log(JSON.stringify(out, null, 2))
}, 900_000)
