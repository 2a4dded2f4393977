// Not a test: backup and restore throughput of one image to each backend
// (local, SFTP via sshd, S3 via s3rver) as a ratio to local, the bytes an
// incremental copy sends for a 1%-changed snapshot against the size of its
// changed blocks, and S3 requests per GiB stored. `npm run bench:remote`.
import {execFileSync} from 'node:child_process'
import {mkdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, it} from 'vitest'
import {startDelayProxy} from '../test/helpers/delay-proxy.js'
import {ROOT, vdsnap, vdsnapJson} from '../test/helpers/cli.js'
import {makeExt4Image, prng, randomAt, tempDir} from '../test/helpers/images.js'
import {S3RVER_ENV, startS3} from '../test/helpers/s3.js'
import {startSshd} from '../test/helpers/sshd.js'

const MiB = 1024 * 1024
const dir = tempDir('vdsnap-remote-')
afterAll(() => dir.cleanup())

it('throughput per backend, incremental copy bytes, S3 requests per GiB', async () => {
  const sizeMiB = Number(process.env.VDSNAP_REMOTE_MIB ?? 256)
  const img = join(dir.path, 'disk.img')
  makeExt4Image(img, sizeMiB * MiB, join(ROOT, 'node_modules'))
  const sshd = await startSshd()
  const s3 = await startS3('bench')
  const proxy = await startDelayProxy(s3.port, 0) // counts S3 requests
  const base = {...S3RVER_ENV, SSH_AUTH_SOCK: undefined, AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${proxy.port}`, VDSNAP_PASSWORD: 'pw'}
  const ssh = ['--ssh-key', sshd.userKeyPath, '--known-hosts', sshd.knownHostsPath]
  const repos = {
    local: {repo: join(dir.path, 'local'), flags: [] as string[]},
    sftp: {repo: `sftp://${sshd.user}@127.0.0.1:${sshd.port}${sshd.rootDir}/r`, flags: ssh},
    s3: {repo: 's3://bench/r', flags: [] as string[]},
  }
  const rows: Record<string, number | string>[] = []
  for (const [name, {repo, flags}] of Object.entries(repos)) {
    const env = {...base, VDSNAP_REPOSITORY: repo}
    await vdsnap(['init', ...flags], env)
    const req0 = proxy.requests
    const t0 = Date.now()
    const b = await vdsnapJson(['backup', img, ...flags], env)
    const backupS = (Date.now() - t0) / 1000
    const backupRequests = proxy.requests - req0
    const t1 = Date.now()
    await vdsnapJson(['restore', b.snapshot, '--to', join(dir.path, `out-${name}.img`), ...flags], env)
    const restoreS = (Date.now() - t1) / 1000
    rows.push({backend: name, readMiB: +(b.bytesRead / MiB).toFixed(1), storedMiB: +(b.bytesStored / MiB).toFixed(1), backupS, restoreS,
      ...(name === 's3' ? {s3RequestsForBackup: backupRequests, s3RequestsPerGiBStored: Math.round(backupRequests / (b.bytesStored / 1024 ** 3))} : {})})
  }
  const local = rows[0]!
  for (const r of rows) {
    r.backupVsLocal = +((local.backupS as number) / (r.backupS as number)).toFixed(2)
    r.restoreVsLocal = +((local.restoreS as number) / (r.restoreS as number)).toFixed(2)
  }
  // incremental copy local → sftp of a 1%-changed snapshot
  const rnd = prng(7)
  const used = sizeMiB * MiB * 0.8
  for (let k = 0; k < Math.round(used / (64 * 1024) / 100); k++) randomAt(img, Math.floor((rnd() * used) / 65536) * 65536, 65536)
  const envLocal = {...base, VDSNAP_REPOSITORY: repos.local.repo}
  const inc = await vdsnapJson(['backup', img], envLocal)
  const copy = await vdsnapJson(['copy', '--to', repos.sftp.repo, ...ssh, 'latest'], envLocal)
  const copyRow = {changedBlocks: inc.changedBlocks, changedMiB: +(inc.bytesChanged / MiB).toFixed(2), newChunkMiB: +(inc.bytesNew / MiB).toFixed(2), copySentMiB: +(copy.bytesSent / MiB).toFixed(2), sentPerChanged: +(copy.bytesSent / inc.bytesChanged).toFixed(3)}
  await proxy.close()
  await sshd.stop()
  await s3.stop()
  const out = {imageMiB: sizeMiB, load: execFileSync('cat', ['/proc/loadavg']).toString().trim(), backends: rows, incrementalCopy: copyRow}
  mkdirSync(join(ROOT, 'bench/results'), {recursive: true})
  writeFileSync(join(ROOT, 'bench/results/remote.json'), JSON.stringify(out, null, 2) + '\n')
  console.log(JSON.stringify(out, null, 2))
}, 1_800_000)
