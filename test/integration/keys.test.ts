// key add / key passwd / key list through the CLI: passwords are key slots
// around one master key, so adding or changing one re-encrypts no data.
import {createHash} from 'node:crypto'
import {execFileSync} from 'node:child_process'
import {copyFileSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {vdsnap, vdsnapJson, oneLine} from '../helpers/cli.js'
import {randomAt, tempDir} from '../helpers/images.js'

interface Slot {
  id: string
  current: boolean
  kdf: string
}

/** Every file under `root` except keys/ and locks/: name → size, mtime, SHA-256. */
function dataState(root: string): Record<string, string> {
  const state: Record<string, string> = {}
  const walk = (d: string) => {
    for (const e of readdirSync(d, {withFileTypes: true})) {
      const p = join(d, e.name)
      const rel = p.slice(root.length + 1)
      if (e.isDirectory()) {
        if (rel !== 'keys' && rel !== 'locks') walk(p)
      } else {
        const st = statSync(p)
        state[rel] = `${st.size} ${st.mtimeMs} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`
      }
    }
  }
  walk(root)
  return state
}

describe('key slots', () => {
  const dir = tempDir()
  const repo = join(dir.path, 'repo')
  const img = join(dir.path, 'disk.img')
  const as = (password: string | undefined, extra: Record<string, string | undefined> = {}) => ({VDSNAP_REPOSITORY: repo, VDSNAP_PASSWORD: password, ...extra})
  let snapshot = ''
  let firstSlot = ''

  beforeAll(async () => {
    execFileSync('truncate', ['-s', String(3 * 1024 * 1024 + 1234), img])
    randomAt(img, 100_000, 1_500_000)
    expect((await vdsnap(['init', '--block-size', '64KiB'], as('one'))).code).toBe(0)
    snapshot = (await vdsnapJson(['backup', img], as('one'))).snapshot
    const slots = await vdsnapJson<Slot[]>(['key', 'list'], as('one'))
    expect(slots.length).toBe(1)
    firstSlot = slots[0]!.id
  })
  afterAll(() => dir.cleanup())

  it('key add: a second password opens the repository, the first still does; key list shows both and which one is in use', async () => {
    const data = dataState(repo)
    const added = await vdsnapJson<{added: string}>(['key', 'add'], as('one', {VDSNAP_NEW_PASSWORD: 'two'}))
    expect(added.added).not.toBe(firstSlot)
    expect(existsSync(join(repo, 'keys', added.added))).toBe(true)
    for (const pw of ['one', 'two']) expect((await vdsnap(['snapshots'], as(pw))).code, pw).toBe(0)
    const byOne = await vdsnapJson<Slot[]>(['key', 'list'], as('one'))
    expect(byOne.map((s) => s.id).sort()).toEqual([firstSlot, added.added].sort())
    expect(byOne.filter((s) => s.current).map((s) => s.id)).toEqual([firstSlot])
    const byTwo = await vdsnapJson<Slot[]>(['key', 'list'], as('two'))
    expect(byTwo.filter((s) => s.current).map((s) => s.id)).toEqual([added.added])
    expect(byTwo[0]!.kdf).toMatch(/^scrypt N=\d+ r=\d+ p=\d+$/)
    const text = await vdsnap(['key', 'list'], as('two'))
    expect(text.stdout).toContain(firstSlot)
    expect(text.stdout).toMatch(new RegExp(`^\\*\\s+${added.added}`, 'm'))
    // from a file, as --new-password-file says
    const pwFile = join(dir.path, 'pw3')
    writeFileSync(pwFile, 'three\n')
    expect((await vdsnap(['key', 'add', '--new-password-file', pwFile], as('two'))).code).toBe(0)
    expect((await vdsnap(['snapshots'], as('three'))).code).toBe(0)
    expect((await vdsnapJson<Slot[]>(['key', 'list'], as('one'))).length).toBe(3)
    expect(dataState(repo)).toEqual(data) // no object was re-encrypted
  })

  it('key passwd: replaces the slot in use; the old password gets exit 5, others still open it, data still restores', async () => {
    const data = dataState(repo)
    const before = await vdsnapJson<Slot[]>(['key', 'list'], as('two'))
    const twoSlot = before.find((s) => s.current)!.id
    const r = await vdsnapJson<{added: string; removed: string}>(['key', 'passwd'], as('two', {VDSNAP_NEW_PASSWORD: 'four'}))
    expect(r.removed).toBe(twoSlot)
    const old = await vdsnap(['snapshots'], as('two'))
    expect(old.code).toBe(5)
    expect(oneLine(old.stderr)).toMatch(/wrong password/)
    const after = await vdsnapJson<Slot[]>(['key', 'list'], as('four'))
    expect(after.map((s) => s.id).sort()).toEqual(before.map((s) => s.id).filter((id) => id !== twoSlot).concat(r.added).sort())
    expect(after.filter((s) => s.current).map((s) => s.id)).toEqual([r.added])
    for (const pw of ['one', 'three']) expect((await vdsnap(['snapshots'], as(pw))).code, pw).toBe(0)
    const out = join(dir.path, 'restored.img')
    expect((await vdsnap(['restore', snapshot, '--to', out], as('four'))).code).toBe(0)
    expect(readFileSync(out).equals(readFileSync(img))).toBe(true)
    expect((await vdsnap(['check', '--read-data'], as('four'))).code).toBe(0)
    expect(dataState(repo)).toEqual(data)
  })

  it('a key slot left under a temporary name (a killed key passwd): key list and check report it, key remove and key passwd sweep it at their start', async () => {
    const own = join(dir.path, 'temps-repo')
    const env = (pw: string, extra: Record<string, string> = {}) => ({VDSNAP_REPOSITORY: own, VDSNAP_PASSWORD: pw, ...extra})
    expect((await vdsnap(['init', '--block-size', '64KiB'], env('p'))).code).toBe(0)
    const [slot] = await vdsnapJson<Slot[]>(['key', 'list'], env('p'))
    // what a key passwd killed between writing its slot and renaming it leaves (just now: younger than the 15-minute rule)
    const leftover = () => copyFileSync(join(own, 'keys', slot!.id), join(own, 'keys', '.tmp-0123456789ab'))
    const hasTemp = () => readdirSync(join(own, 'keys')).includes('.tmp-0123456789ab')
    leftover()
    const list = await vdsnap(['key', 'list'], env('p'))
    expect(list.code, list.stderr).toBe(0)
    expect(list.stderr).toContain('a key slot was left under a temporary name by an interrupted key command (keys/.tmp-0123456789ab)')
    const check = await vdsnap(['check', '--json'], env('p'))
    expect(check.code, check.stderr).toBe(0)
    expect(JSON.parse(check.stdout).keySlotTemps).toEqual(['keys/.tmp-0123456789ab'])
    expect(hasTemp()).toBe(true) // reported, not removed
    const added = await vdsnapJson<{added: string}>(['key', 'add'], env('p', {VDSNAP_NEW_PASSWORD: 'q'}))
    expect(hasTemp()).toBe(true) // key add (shared lock) leaves a young one: another key add may be writing it
    await vdsnapJson(['key', 'remove', added.added], env('p'))
    expect(hasTemp()).toBe(false)
    leftover()
    await vdsnapJson(['key', 'passwd'], env('p', {VDSNAP_NEW_PASSWORD: 'r'}))
    expect(hasTemp()).toBe(false)
    expect(readdirSync(join(own, 'keys'))).toHaveLength(1)
    const clean = await vdsnap(['check', '--json'], env('r'))
    expect(clean.code, clean.stderr).toBe(0)
    expect(JSON.parse(clean.stdout).keySlotTemps).toEqual([])
  })

  it('refuses without a new password (exit 5), with the wrong current one (exit 5), and on a plaintext repository (exit 2)', async () => {
    const keys = readdirSync(join(repo, 'keys')).sort()
    const none = await vdsnap(['key', 'add'], as('one', {VDSNAP_NEW_PASSWORD: undefined, VDSNAP_NEW_PASSWORD_FILE: undefined}))
    expect(none.code).toBe(5)
    expect(oneLine(none.stderr)).toMatch(/no new password given/)
    const wrong = await vdsnap(['key', 'passwd'], as('two', {VDSNAP_NEW_PASSWORD: 'five'}))
    expect(wrong.code).toBe(5)
    expect(readdirSync(join(repo, 'keys')).sort()).toEqual(keys)
    const plain = join(dir.path, 'plain')
    expect((await vdsnap(['init', '--no-encryption'], {VDSNAP_REPOSITORY: plain})).code).toBe(0)
    const list = await vdsnap(['key', 'list'], {VDSNAP_REPOSITORY: plain})
    expect(list.code).toBe(2)
    expect(oneLine(list.stderr)).toMatch(/is not encrypted/)
  })
})
