// What the end-to-end format tests share: a temporary workspace with an
// unencrypted repository (encryption is not what they test, and key
// derivation in every CLI run would double their time), qemu-img / qemu-io
// run in that workspace, and restores through the CLI.
import {execFileSync, spawnSync} from 'node:child_process'
import {join} from 'node:path'
import {expect} from 'vitest'
import {vdsnap} from '../helpers/cli.js'
import {tempDir} from '../helpers/images.js'

export const MiB = 1024 * 1024
/** The repositories' block size (set explicitly: the tests count blocks). */
export const BLOCK = 512 * 1024

/** qemu's name for a format. */
export const qfmt = (format: string) => (format === 'vhd' ? 'vpc' : format)

export interface FormatWorkspace {
  dir: string
  at(name: string): string
  /** Environment for vdsnap: the workspace's repository, no password. */
  env: Record<string, string | undefined>
  cleanup(): void
  /** qemu-img in the workspace directory (relative names resolve there); throws on failure. */
  qemuImg(...args: string[]): string
  qemuIo(file: string, format: string, ...cmds: string[]): void
  /** `qemu-img convert -O raw` of an image (of its internal snapshot when given) into `out`; returns `out`. */
  qemuRaw(img: string, format: string, out: string, snapshot?: string): string
  /** A builder: `qemu-img convert` of a raw disk in the workspace into `file`. */
  convert(format: string, opts?: string[], from?: string): (file: string) => string
  /** Restores a snapshot to a raw file through the CLI; returns the file. */
  restoreRaw(snapshot: string, out: string): Promise<string>
}

export function formatWorkspace(prefix: string): FormatWorkspace {
  const tmp = tempDir(prefix)
  const dir = tmp.path
  const at = (name: string) => join(dir, name)
  const env = {VDSNAP_REPOSITORY: at('repo'), VDSNAP_PASSWORD: undefined}
  const qemuImg = (...args: string[]) => execFileSync('qemu-img', args, {cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']})
  return {
    dir,
    at,
    env,
    cleanup: tmp.cleanup,
    qemuImg,
    qemuIo: (file, format, ...cmds) => {
      execFileSync('qemu-io', ['-f', format, ...cmds.flatMap((c) => ['-c', c]), file], {cwd: dir, stdio: 'ignore'})
    },
    qemuRaw: (img, format, out, snapshot) => {
      qemuImg('convert', '-f', qfmt(format), ...(snapshot ? ['-l', snapshot] : []), '-O', 'raw', img, out)
      return out
    },
    convert: (format, opts = [], from = 'disk.raw') => (file) => {
      qemuImg('convert', '-f', 'raw', '-O', qfmt(format), ...opts, from, file)
      return at(file)
    },
    restoreRaw: async (snapshot, out) => {
      const r = await vdsnap(['restore', snapshot, '--to', out], env)
      expect(r.code, r.stderr).toBe(0)
      return out
    },
  }
}

/** Creates the workspace's repository. */
export async function initRepo(ws: FormatWorkspace): Promise<void> {
  const init = await vdsnap(['init', '--no-encryption', '--block-size', `${BLOCK / 1024}KiB`], ws.env)
  expect(init.code, init.stderr).toBe(0)
}

/** qemu-img without throwing: exit status and everything it printed. */
export function qemuStatus(...args: string[]): {status: number | null; out: string} {
  const r = spawnSync('qemu-img', args, {encoding: 'utf8'})
  return {status: r.status, out: `${r.stdout}${r.stderr}`}
}
