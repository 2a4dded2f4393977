// Runs the built CLI (bin/run.js) as a user would, in a child process.
import {expect} from 'vitest'
import {spawn} from 'node:child_process'
import {fileURLToPath} from 'node:url'
import {resolve} from 'node:path'

export const ROOT = resolve(fileURLToPath(import.meta.url), '../../..')
export const BIN = resolve(ROOT, 'bin/run.js')

export interface RunResult {
  code: number
  stdout: string
  stderr: string
}

export function vdsnap(args: string[], env: Record<string, string | undefined> = {}, opts: {cwd?: string; input?: string} = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const childEnv: Record<string, string> = {}
    for (const [k, v] of Object.entries({...process.env, ...env})) if (v !== undefined) childEnv[k] = v
    const child = spawn(process.execPath, [BIN, ...args], {cwd: opts.cwd, env: childEnv, stdio: ['pipe', 'pipe', 'pipe']})
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (d) => out.push(d))
    child.stderr.on('data', (d) => err.push(d))
    child.on('error', reject)
    child.on('close', (code) => resolvePromise({code: code ?? -1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString()}))
    child.stdin.end(opts.input ?? '')
  })
}

/** Runs and parses --json output; throws with stderr when the exit code is not the expected one. */
export async function vdsnapJson<T = any>(args: string[], env: Record<string, string | undefined> = {}, expectCode = 0): Promise<T> {
  const r = await vdsnap([...args, '--json'], env)
  if (r.code !== expectCode) throw new Error(`vdsnap ${args.join(' ')} exited ${r.code}, expected ${expectCode}: ${r.stderr}`)
  return JSON.parse(r.stdout) as T
}

/** The one `vdsnap: error` line of a failed command's stderr (asserts there is exactly one). */
export function oneLine(stderr: string): string {
  const lines = stderr.trim().split('\n').filter((l) => l.includes('vdsnap: error'))
  expect(lines, stderr).toHaveLength(1)
  return lines[0]!
}
