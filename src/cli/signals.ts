// SIGINT and SIGTERM: stop, undo what is half done (temporary files, held
// locks; src/flow/interrupt.ts), print one line and exit 130 or 143 (128 +
// the signal number, as shells report it; README's exit-code table). A
// second signal while that clean-up runs exits at once.
import {runInterruptCleanups} from '../flow/interrupt.js'

export const SIGNAL_EXIT_CODES = {SIGINT: 130, SIGTERM: 143} as const

/** How long releasing the locks may take (an unreachable SFTP or S3 store) before we exit anyway. */
const CLEANUP_TIMEOUT_MS = 10_000

let installed = false
let claimant: ((signal: keyof typeof SIGNAL_EXIT_CODES) => void) | undefined

/**
 * A command that stops cleanly by itself (serve: close the server, fsync the
 * overlay, exit 0) takes the first SIGINT/SIGTERM: `onStop` gets it instead
 * of the clean-up-and-exit path. A second signal still exits at once.
 * Returns a function that gives the signals back.
 */
export function claimSignals(onStop: (signal: keyof typeof SIGNAL_EXIT_CODES) => void): () => void {
  claimant = onStop
  return () => {
    if (claimant === onStop) claimant = undefined
  }
}

export function installSignalHandlers(): void {
  if (installed) return
  installed = true
  let stopping = false
  const handler = (signal: keyof typeof SIGNAL_EXIT_CODES) => {
    const code = SIGNAL_EXIT_CODES[signal]
    if (stopping) {
      process.stderr.write(`vdsnap: error: interrupted again by ${signal}: exiting without finishing the clean-up; run "vdsnap unlock" once no vdsnap process uses the repository\n`)
      process.exit(code)
    }
    stopping = true
    if (claimant) {
      claimant(signal)
      return
    }
    void runInterruptCleanups(CLEANUP_TIMEOUT_MS).then((ok) => {
      process.stderr.write(
        ok
          ? `vdsnap: error: interrupted by ${signal}: stopped; locks released and temporary files removed (run the command again to finish)\n`
          : `vdsnap: error: interrupted by ${signal}: stopped, but a lock could not be released in time; run "vdsnap unlock" once no vdsnap process uses the repository\n`,
      )
      process.exit(code)
    })
  }
  process.on('SIGINT', handler)
  process.on('SIGTERM', handler)
}
