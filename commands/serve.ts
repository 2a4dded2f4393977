import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../src/cli/base-command.js'
import {formatBytes} from '../src/cli/output.js'
import {claimSignals} from '../src/cli/signals.js'
import {parseSize} from '../src/repo/config.js'
import {REFRESH_MS} from '../src/repo/lock.js'
import {shortId} from '../src/repo/manifest.js'
import {selectSnapshot} from '../src/repo/select.js'
import {isLoopback, parseListen} from '../src/serve/listen-address.js'
import {runServe, type ServeResult} from '../src/serve/serve.js'
import {runServeArchive} from '../src/serve/serve-archive.js'
import {passwordSource} from '../src/cli/password.js'
import {UsageError} from '../src/errors.js'
import type {Manifest} from '../src/repo/manifest.js'
import type {ListenAddress} from '../src/nbd/server.js'

export default class Serve extends BaseCommand<typeof Serve> {
  static override summary = 'Serve a snapshot as an NBD export (instant recovery): boot a VM from the backup now, restore later.'
  static override description =
    'Read-only unless --overlay FILE is given: then writes, trims and write-zeroes land in that local copy-on-write file, never in the repository, and "serve SNAP --overlay FILE" again continues it; "restore SNAP --overlay FILE --to TARGET" writes the snapshot with those writes to a real disk. Prints "listening on ..." when ready; stops cleanly on SIGINT/SIGTERM (the overlay fsynced). There is no TLS: listen on loopback or a unix socket and reach it through an ssh tunnel from elsewhere.'
  static override examples = [
    '<%= config.bin %> serve web@latest --repo /srv/backup/vdsnap',
    '<%= config.bin %> serve web@latest --overlay /var/tmp/web-overlay.vdov --name web',
    '<%= config.bin %> serve 1a2b3c4d --socket /run/vdsnap-web.sock',
    '<%= config.bin %> serve --from-archive /mnt/tape-copy/web.zip --overlay /var/tmp/web-overlay.vdov',
    'qemu-system-x86_64 -m 2G -drive file=nbd://127.0.0.1:10809/web,format=raw',
  ]
  static override args = {
    snapshot: Args.string({description: 'Snapshot: id, unique id prefix, latest or DISK@latest (none with --from-archive).'}),
  }
  static override flags = {
    listen: Flags.string({summary: 'Listen on HOST:PORT (default 127.0.0.1:10809; port 0 picks a free one). Any other address than loopback must be given here explicitly.'}),
    socket: Flags.string({summary: 'Listen on this unix socket instead of TCP.'}),
    name: Flags.string({summary: 'Export name (default: the snapshot\'s disk name). Clients asking for the default export ("") get it too.'}),
    'from-archive': Flags.string({
      summary: 'Serve the snapshot of this archive file (vdsnap export, ZIP; every volume of a split one) instead of a repository. Not -, a pipe, a tar or a portable archive: they cannot be read at random offsets.',
      multiple: true,
    }),
    overlay: Flags.string({summary: 'Make the export writable: keep the writes in this copy-on-write file (created if missing, continued if it exists).'}),
    'cache-size': Flags.string({summary: 'Memory for decoded chunks, e.g. 64MiB (default), 1GiB.', default: '64MiB'}),
    'verify-digests': Flags.boolean({
      summary: 'Re-hash every chunk and compare it with its id (default). --no-verify-digests trusts the GCM tag of an encrypted repository\'s chunks instead.',
      default: true,
      allowNo: true,
    }),
  }

  async run(): Promise<void> {
    const f = this.flags
    const listen = parseListen(f.listen, f.socket)
    const cacheBytes = parseSize(f['cache-size'])
    if (f['from-archive']) return this.fromArchive(f['from-archive'], listen, cacheBytes)
    if (!this.args.snapshot) throw new UsageError('name the snapshot to serve (an id, latest or DISK@latest), or give --from-archive ARCHIVE')
    const repo = await this.openRepo({lock: 'shared', command: 'serve'})
    const snapshot = await selectSnapshot(repo, this.args.snapshot)
    const name = f.name ?? snapshot.disk
    const log = (line: string) => this.out.log(line)
    const {stop, release} = this.stopSignal()
    // A server runs for days: say so once if its lock is lost (a prune may then remove chunks it serves).
    const watch = setInterval(() => {
      this.assertLockHeld().catch((e: Error) => {
        clearInterval(watch)
        this.out.warn(`${e.message}; a prune may now remove chunks this export reads: restart serve`)
      })
    }, REFRESH_MS)
    watch.unref()
    let res: ServeResult
    try {
      res = await runServe(repo, {
        snapshot,
        listen,
        name,
        overlay: f.overlay,
        rehash: f['verify-digests'],
        cacheBytes,
        log,
        stop,
        onListening: (where, overlayBytes) => this.ready(listen, name, snapshot, where, overlayBytes),
      })
    } finally {
      clearInterval(watch)
      release()
    }
    this.out.result(res, () => this.summary(res))
  }

  private async fromArchive(archives: string[], listen: ListenAddress, cacheBytes: number): Promise<void> {
    const f = this.flags
    if (this.args.snapshot) throw new UsageError('--from-archive serves the archive\'s own snapshot: give no snapshot argument')
    let snapshot: Manifest | undefined
    const {stop, release} = this.stopSignal()
    let res: ServeResult & {archive: string}
    try {
      res = await runServeArchive(archives, passwordSource(this.passwordFlags()), {
        listen,
        name: f.name,
        overlay: f.overlay,
        rehash: f['verify-digests'],
        cacheBytes,
        log: (line) => this.out.log(line),
        stop,
        onOpened: (snap) => (snapshot = snap),
        onListening: (where, overlayBytes) => this.ready(listen, f.name ?? snapshot!.disk, snapshot!, where, overlayBytes),
      })
    } finally {
      release()
    }
    this.out.result(res, () => `${this.summary(res)}; from ${res.archive}`)
  }

  /** serve stops by itself on the first SIGINT/SIGTERM (server closed, overlay fsynced, exit 0); a second one exits at once (cli/signals.ts). */
  private stopSignal(): {stop: Promise<string>; release: () => void} {
    let release = () => {}
    const stop = new Promise<string>((resolve) => {
      release = claimSignals(resolve)
    })
    return {stop, release: () => release()}
  }

  private ready(listen: ListenAddress, name: string, snapshot: Manifest, where: string, overlayBytes?: number): void {
    const f = this.flags
    if (!isLoopback(listen)) this.out.warn(`listening on ${where}, beyond this machine, without TLS: anyone who reaches it can read${f.overlay ? ' and write' : ''} the disk`)
    const url = 'path' in listen ? `nbd+unix:///${name}?socket=${where}` : `nbd://${where}/${name}`
    const mode = f.overlay ? `writable, overlay ${f.overlay}${overlayBytes ? ` (${formatBytes(overlayBytes)} written before)` : ''}` : 'read-only'
    // The readiness line scripts wait for: printed even with --quiet.
    process.stderr.write(`vdsnap: serving ${shortId(snapshot.id)} (${snapshot.disk}, ${formatBytes(snapshot.virtualSize)}, ${mode}): listening on ${where} (${url})\n`)
  }

  private summary(res: ServeResult): string {
    return `served ${shortId(res.snapshot)} as "${res.export}" until ${res.stoppedBy}; ${res.chunksRead} chunks read${res.overlay ? `; overlay ${res.overlay} holds ${formatBytes(res.overlayBytes)} (fsynced)` : ''}`
  }
}
