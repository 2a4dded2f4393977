// Registry entry for VHD (qemu calls it "vpc"). A dynamic or differencing
// VHD starts with a footer copy ("conectix" at offset 0); a fixed VHD has
// its footer only in the last 512 bytes, so the probe also looks there,
// with one small synchronous read (the registry's probe is synchronous).
import {closeSync, fstatSync, openSync, readSync} from 'node:fs'
import {open} from 'node:fs/promises'
import type {FormatEntry} from './types.js'
import {FOOTER_COOKIE, FOOTER_SIZE, parseFooter} from './vhd-footer.js'
import {VhdImage} from './vhd-reader.js'
import {createVhdWriter} from './vhd-writer.js'

function isVhdFooter(buf: Buffer): boolean {
  if (buf.length < FOOTER_SIZE || buf.toString('latin1', 0, 8) !== FOOTER_COOKIE) return false
  try {
    parseFooter(buf, '')
    return true
  } catch {
    return false
  }
}

/** True when the file ends with a valid VHD footer (how fixed VHDs are recognised). */
export async function probeVhdFooter(path: string): Promise<boolean> {
  const fh = await open(path, 'r').catch(() => undefined)
  if (!fh) return false
  try {
    const st = await fh.stat()
    if (!st.isFile() || st.size < FOOTER_SIZE) return false
    const buf = Buffer.alloc(FOOTER_SIZE)
    await fh.read(buf, 0, FOOTER_SIZE, st.size - FOOTER_SIZE)
    return isVhdFooter(buf)
  } finally {
    await fh.close()
  }
}

function probeTailSync(path: string): boolean {
  let fd: number | undefined
  try {
    fd = openSync(path, 'r')
    const st = fstatSync(fd)
    if (!st.isFile() || st.size < FOOTER_SIZE) return false
    const buf = Buffer.alloc(FOOTER_SIZE)
    readSync(fd, buf, 0, FOOTER_SIZE, st.size - FOOTER_SIZE)
    return isVhdFooter(buf)
  } catch {
    return false
  } finally {
    if (fd !== undefined) closeSync(fd)
  }
}

export const VHD_FORMAT: FormatEntry = {
  name: 'vhd',
  probe: (head, path) => head.toString('latin1', 0, 8) === FOOTER_COOKIE || probeTailSync(path),
  open: (path, options) => VhdImage.open(path, options),
  create: (path, virtualSize, options) => createVhdWriter(path, virtualSize, options),
}
