// --pre-hook / --post-hook: shell commands run around the read of a source
// (freeze a guest's file systems, create and drop an LVM snapshot...). They
// get VDSNAP_SOURCE, VDSNAP_DISK and VDSNAP_HOOK in their environment; their
// output goes to our stderr so it lands in the log, never in --json stdout.
import {spawn} from 'node:child_process'
import {IoError} from '../errors.js'

export async function runHook(kind: 'pre' | 'post', command: string, env: Record<string, string>): Promise<void> {
  const code = await new Promise<number>((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', command], {stdio: ['ignore', process.stderr, process.stderr], env: {...process.env, ...env, VDSNAP_HOOK: kind}})
    child.on('error', reject)
    child.on('exit', (c, sig) => resolve(c ?? (sig ? 128 : 1)))
  })
  if (code !== 0) {
    throw new IoError(`--${kind}-hook "${command}" failed with exit code ${code}`, {
      hint: kind === 'pre' ? 'nothing was backed up; fix the hook and run again' : 'the snapshot was stored; check what the hook should have cleaned up',
    })
  }
}
