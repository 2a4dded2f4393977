// Key slots. The repository's master key (64 random bytes: a 32-byte
// AES-256-GCM data key and a 32-byte HMAC id key) is stored once per
// password, wrapped with AES-256-GCM under a key derived by scrypt from that
// password. Adding or changing a password writes or removes a slot; data is
// never re-encrypted. Slots are JSON objects under keys/<slot id>.
import {createCipheriv, createDecipheriv, randomBytes, scrypt as scryptCb} from 'node:crypto'
import {hostname, userInfo} from 'node:os'
import {promisify} from 'node:util'
import {DataError, PasswordError} from '../errors.js'
import type {Backend} from '../backend/types.js'

const scrypt = promisify(scryptCb) as (pw: string, salt: Buffer, len: number, opts: object) => Promise<Buffer>

export const KEY_SLOT_AAD = Buffer.from('vdsnap key slot v1') // never change
export const DEFAULT_SCRYPT = {N: 2 ** 15, r: 8, p: 1}

export interface MasterKey {
  encKey: Buffer
  idKey: Buffer
}

export interface KeySlot {
  version: 1
  created: string
  host: string
  user: string
  kdf: 'scrypt'
  N: number
  r: number
  p: number
  salt: string
  nonce: string
  data: string
}

export function newMasterKey(): MasterKey {
  const raw = randomBytes(64)
  return {encKey: raw.subarray(0, 32), idKey: raw.subarray(32)}
}

async function derive(password: string, slot: Pick<KeySlot, 'N' | 'r' | 'p' | 'salt'>): Promise<Buffer> {
  const {N, r, p} = slot
  if (!(N >= 2 && N <= 2 ** 22 && r >= 1 && r <= 32 && p >= 1 && p <= 16)) {
    throw new DataError(`key slot has implausible scrypt parameters N=${N} r=${r} p=${p}`)
  }
  return scrypt(password, Buffer.from(slot.salt, 'base64'), 32, {N, r, p, maxmem: 256 * N * r + 16 * 1024 * 1024})
}

export async function makeKeySlot(password: string, master: MasterKey, params = DEFAULT_SCRYPT): Promise<KeySlot> {
  const salt = randomBytes(32).toString('base64')
  const kek = await derive(password, {...params, salt})
  const nonce = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', kek, nonce)
  cipher.setAAD(KEY_SLOT_AAD)
  const ct = Buffer.concat([cipher.update(Buffer.concat([master.encKey, master.idKey])), cipher.final(), cipher.getAuthTag()])
  return {
    version: 1,
    created: new Date().toISOString(),
    host: hostname(),
    user: safeUser(),
    kdf: 'scrypt',
    ...params,
    salt,
    nonce: nonce.toString('base64'),
    data: ct.toString('base64'),
  }
}

/** Returns the master key if `password` opens the slot, else null. */
export async function openKeySlot(password: string, slot: KeySlot): Promise<MasterKey | null> {
  const kek = await derive(password, slot)
  const ct = Buffer.from(slot.data, 'base64')
  if (ct.length !== 64 + 16) throw new DataError('key slot is malformed (wrong length)')
  const decipher = createDecipheriv('aes-256-gcm', kek, Buffer.from(slot.nonce, 'base64'))
  decipher.setAAD(KEY_SLOT_AAD)
  decipher.setAuthTag(ct.subarray(64))
  try {
    const raw = Buffer.concat([decipher.update(ct.subarray(0, 64)), decipher.final()])
    return {encKey: raw.subarray(0, 32), idKey: raw.subarray(32)}
  } catch {
    return null
  }
}

export interface StoredSlot {
  id: string
  slot: KeySlot
}

export async function listKeySlots(backend: Backend): Promise<StoredSlot[]> {
  const out: StoredSlot[] = []
  for await (const obj of backend.list('keys/')) {
    const id = obj.name.slice('keys/'.length)
    try {
      out.push({id, slot: JSON.parse((await backend.load(obj.name)).toString('utf8')) as KeySlot})
    } catch (e) {
      if (e instanceof SyntaxError) throw new DataError(`key slot ${id} is not valid JSON`)
      throw e
    }
  }
  return out.sort((a, b) => a.slot.created.localeCompare(b.slot.created))
}

/** Tries every slot; throws PasswordError when none opens. */
export async function unlockMasterKey(backend: Backend, password: string): Promise<{master: MasterKey; slotId: string}> {
  const slots = await listKeySlots(backend)
  if (slots.length === 0) throw new DataError(`repository at ${backend.location} has no key slots`)
  for (const {id, slot} of slots) {
    const master = await openKeySlot(password, slot)
    if (master) return {master, slotId: id}
  }
  throw new PasswordError(`wrong password: no key slot of ${backend.location} opens with it`, {
    hint: 'check VDSNAP_PASSWORD / --password-file',
  })
}

export async function saveKeySlot(backend: Backend, slot: KeySlot): Promise<string> {
  const id = randomBytes(8).toString('hex')
  await backend.save(`keys/${id}`, Buffer.from(JSON.stringify(slot, null, 2) + '\n'))
  return id
}

function safeUser(): string {
  try {
    return userInfo().username
  } catch {
    return ''
  }
}
