// ~/.ssh/config is honoured for sftp:// hosts, against OpenSSH's sshd on
// 127.0.0.1: with a temp HOME whose config maps an alias to HostName,
// Port, User and IdentityFile, `init`, `backup` and `snapshots` work with
// sftp://alias/path and no other settings; without the config the alias is
// not a host (one line, exit 7, nothing created).
import {copyFileSync, existsSync, mkdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {oneLine, vdsnap, vdsnapJson} from '../helpers/cli.js'
import {makeExt4Image, tempDir} from '../helpers/images.js'
import {haveSshd, startSshd, type TestSshd} from '../helpers/sshd.js'

const MiB = 1024 * 1024

describe.skipIf(!haveSshd)('~/.ssh/config for sftp:// hosts', () => {
  const dir = tempDir()
  const home = join(dir.path, 'home')
  let sshd: TestSshd
  let env: Record<string, string | undefined> = {}

  beforeAll(async () => {
    sshd = await startSshd()
    mkdirSync(join(home, '.ssh'), {recursive: true})
    copyFileSync(sshd.userKeyPath, join(home, '.ssh', 'backup_key'))
    copyFileSync(sshd.knownHostsPath, join(home, '.ssh', 'known_hosts'))
    env = {HOME: home, SSH_AUTH_SOCK: undefined, VDSNAP_PASSWORD: 'pw'}
  })
  afterAll(async () => {
    await sshd?.stop()
    dir.cleanup()
  })

  it('without a config the alias is no host: exit 7, one line naming it, nothing created', async () => {
    const r = await vdsnap(['init', '--repo', `sftp://backup-box${sshd.rootDir}/none`], env)
    expect(r.code).toBe(7)
    expect(oneLine(r.stderr)).toMatch(/backup-box/)
    expect(existsSync(join(sshd.rootDir, 'none'))).toBe(false)
  })

  it('an alias with HostName, Port, User and IdentityFile: init, backup and snapshots need nothing else', async () => {
    writeFileSync(
      join(home, '.ssh', 'config'),
      [
        '# first match wins: the later "Host *" block must not override the alias',
        'Host * !backup-box',
        '  Port 1',
        'Host backup-box',
        '  HostName 127.0.0.1',
        `  Port ${sshd.port}`,
        `  User ${sshd.user}`,
        '  IdentityFile ~/.ssh/backup_key',
        'Host *',
        '  Port 2',
        '  User nobody',
        '  IdentityFile ~/.ssh/missing',
        '',
      ].join('\n'),
    )
    const repo = `sftp://backup-box${sshd.rootDir}/cfg`
    const init = await vdsnap(['init', '--repo', repo, '--block-size', '64KiB'], env)
    expect(init.code, init.stderr).toBe(0)
    expect(existsSync(join(sshd.rootDir, 'cfg', 'config'))).toBe(true)
    const img = join(dir.path, 'disk.img')
    makeExt4Image(img, 4 * MiB)
    const b = await vdsnapJson(['backup', img, '--repo', repo], env)
    const list = await vdsnapJson<{id: string}[]>(['snapshots', '--repo', repo], env)
    expect(list.map((s) => s.id)).toEqual([b.snapshot])
  })
})
