// What a SIGINT or SIGTERM must undo before the process exits: temporary
// files (removed synchronously, so nothing can run in between) and held
// repository locks (removed through their backend, awaited up to a bound).
// It lives at the bottom of the tree so backends, disk writers and locks can
// register what they create without knowing about the CLI, which installs
// the signal handlers (src/cli/signals.ts).
import {unlinkSync} from 'node:fs'

const tempFiles = new Set<string>()
const cleanups = new Set<() => Promise<void>>()

/** Registers a temporary file to remove on interrupt; call the result once it is renamed or removed. */
export function trackTempFile(path: string): () => void {
  tempFiles.add(path)
  return () => void tempFiles.delete(path)
}

/** Registers an async clean-up (a lock release) to run on interrupt; call the result when done. */
export function onInterrupt(fn: () => Promise<void>): () => void {
  cleanups.add(fn)
  return () => void cleanups.delete(fn)
}

function removeTempFiles(): void {
  for (const path of tempFiles) {
    try {
      unlinkSync(path)
    } catch {} // never created, or already gone
  }
}

/**
 * Runs every registered clean-up; resolves false when one failed or they
 * did not all finish within `timeoutMs`. Temporary files are removed before
 * and again after (a write that was opening one meanwhile).
 */
export async function runInterruptCleanups(timeoutMs: number): Promise<boolean> {
  removeTempFiles()
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs)
  })
  const all = Promise.all([...cleanups].map((fn) => fn().then(() => true, () => false))).then((r) => r.every(Boolean))
  const ok = await Promise.race([all, timeout])
  clearTimeout(timer)
  removeTempFiles()
  return ok
}
