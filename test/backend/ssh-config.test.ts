// ~/.ssh/config, the directives that decide where an sftp:// host connects.
import {homedir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {UsageError} from '../../src/errors.js'
import {expandIdentityPath, patternMatches, sshConfigFor} from '../../src/backend/ssh-config.js'

const CONFIG = `
# global first: applies to every host
IdentityFile ~/.ssh/global_key

Host * !nas
  Port 2022

Host nas backup-?
  HostName 10.0.0.5
  User backup
  Port=2222
  IdentityFile "~/.ssh/my key"

Match host nas
  User never

Host *
  User nobody
  Port 22
  HostName ignored.example
`

describe('sshConfigFor', () => {
  it.each([
    ['nas', {hostName: '10.0.0.5', user: 'backup', port: 2222, identityFiles: ['~/.ssh/global_key', '~/.ssh/my key']}],
    ['backup-1', {hostName: '10.0.0.5', user: 'backup', port: 2022, identityFiles: ['~/.ssh/global_key', '~/.ssh/my key']}],
    ['backup-12', {hostName: 'ignored.example', user: 'nobody', port: 2022, identityFiles: ['~/.ssh/global_key']}],
    ['other', {hostName: 'ignored.example', user: 'nobody', port: 2022, identityFiles: ['~/.ssh/global_key']}],
  ])('%s: first value wins, IdentityFile accumulates, negation and Match respected', (alias, expected) => {
    expect(sshConfigFor(CONFIG, alias, '/cfg')).toEqual(expected)
  })

  it('an empty file gives nothing', () => {
    expect(sshConfigFor('', 'x', '/cfg')).toEqual({identityFiles: []})
  })

  it('a bad Port names the file and line', () => {
    expect(() => sshConfigFor('Host x\n  Port http\n', 'x', '/home/u/.ssh/config')).toThrow(UsageError)
    expect(() => sshConfigFor('Host x\n  Port http\n', 'x', '/home/u/.ssh/config')).toThrow('/home/u/.ssh/config line 2: Port "http" is not a port number')
  })

  it.each([
    ['*', 'anything', true],
    ['nas', 'NAS', true],
    ['backup-?', 'backup-1', true],
    ['backup-?', 'backup-', false],
    ['*.lan', 'a.lan', true],
    ['*.lan', 'alan', false],
    ['a.b', 'axb', false],
  ])('pattern %s vs %s → %s', (pattern, name, expected) => {
    expect(patternMatches(pattern, name)).toBe(expected)
  })

  it('expands ~ and tokens in IdentityFile', () => {
    expect(expandIdentityPath('~/.ssh/k_%h_%r', {host: 'h1', user: 'r1'})).toBe(join(homedir(), '.ssh/k_h1_r1'))
    expect(expandIdentityPath('%d/x%%', {host: 'h', user: 'u'})).toBe(`${homedir()}/x%`)
  })
})
