// known_hosts parsing and matching, table-driven (the sshd tests cover the
// end-to-end refusal messages).
import {createHmac, randomBytes} from 'node:crypto'
import {describe, expect, it} from 'vitest'
import {
  blobKeyType,
  checkHostKey,
  fingerprint,
  hostFieldMatches,
  knownHostsName,
  parseKnownHosts,
  preferredHostKeyAlgorithms,
} from '../../src/backend/known-hosts.js'

function blob(type: string, body = randomBytes(32)): Buffer {
  const t = Buffer.from(type)
  const len = Buffer.alloc(4)
  len.writeUInt32BE(t.length)
  return Buffer.concat([len, t, body])
}

function hashed(name: string): string {
  const salt = randomBytes(20)
  return `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update(name).digest('base64')}`
}

describe('known_hosts', () => {
  it.each([
    ['backup.example.com', 22, 'backup.example.com'],
    ['10.0.0.1', 2222, '[10.0.0.1]:2222'],
  ])('names %s port %s as %s', (host, port, name) => {
    expect(knownHostsName(host, port)).toBe(name)
  })

  it.each([
    ['backup.example.com', 'backup.example.com', true],
    ['other,backup.example.com', 'backup.example.com', true],
    ['*.example.com', 'backup.example.com', true],
    ['*.example.com,!backup.example.com', 'backup.example.com', false],
    ['backup?.example.com', 'backup1.example.com', true],
    ['[10.0.0.1]:2222', '[10.0.0.1]:2222', true],
    ['10.0.0.1', '[10.0.0.1]:2222', false],
    ['[10.0.0.1]:2222', '10.0.0.1', false],
    [hashed('[127.0.0.1]:2200'), '[127.0.0.1]:2200', true],
    [hashed('[127.0.0.1]:2200'), '[127.0.0.1]:2201', false],
    ['b.example.com', 'backup.example.com', false],
  ])('field %s matches %s: %s', (field, name, expected) => {
    expect(hostFieldMatches(field, name)).toBe(expected)
  })

  it('accepts a listed key, refuses a changed, unknown or revoked one', () => {
    const good = blob('ssh-ed25519')
    const other = blob('ssh-ed25519')
    const revoked = blob('ssh-rsa')
    const text = [
      '# comment',
      '',
      `host1 ssh-ed25519 ${good.toString('base64')} comment`,
      `@revoked host1 ssh-rsa ${revoked.toString('base64')}`,
      `@cert-authority *.example.com ssh-ed25519 ${other.toString('base64')}`,
      'garbage',
    ].join('\n')
    const entries = parseKnownHosts(text)
    expect(entries).toHaveLength(3)
    expect(checkHostKey(entries, 'host1', good)).toEqual({status: 'match'})
    expect(checkHostKey(entries, 'host1', other)).toEqual({status: 'changed'})
    expect(checkHostKey(entries, 'host1', revoked)).toEqual({status: 'revoked'})
    expect(checkHostKey(entries, 'host2', good)).toEqual({status: 'unknown'})
    expect(checkHostKey(entries, 'a.example.com', other)).toEqual({status: 'unknown'})
  })

  it('reads the key type from a blob and prints OpenSSH fingerprints', () => {
    const b = blob('ecdsa-sha2-nistp256', Buffer.alloc(0))
    expect(blobKeyType(b)).toBe('ecdsa-sha2-nistp256')
    expect(blobKeyType(Buffer.alloc(2))).toBe('unknown')
    expect(fingerprint(b)).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/)
  })

  it('offers the host key algorithms it can verify first', () => {
    expect(preferredHostKeyAlgorithms(['ssh-rsa']).slice(0, 3)).toEqual(['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'])
    expect(preferredHostKeyAlgorithms([])[0]).toBe('ssh-ed25519')
    expect(new Set(preferredHostKeyAlgorithms(['ecdsa-sha2-nistp256'])).size).toBe(7)
  })
})
