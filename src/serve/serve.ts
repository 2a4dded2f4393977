// Instant recovery: serve a snapshot as an NBD export until told to stop.
//
// 1. Open the snapshot's BlockSource (verified plaintext; a byte-bounded
//    chunk cache; read-ahead for clients that read in order): from a
//    repository here, from an archive file in serve-archive.ts.
// 2. With an overlay file, open or create it (it must belong to this
//    snapshot): the export is then writable, and writes land there only.
// 3. Listen (TCP or unix socket), report where, serve clients until `stop`
//    resolves (SIGINT/SIGTERM in the command).
// 4. Stop accepting, end the connections and wait for their requests in
//    flight, then flush and fsync the overlay and close the source.
import type {Manifest} from '../repo/manifest.js'
import type {Repository} from '../repo/repository.js'
import {NbdServer, type ListenAddress} from '../nbd/server.js'
import {OverlayFile} from '../overlay/overlay-file.js'
import {SECTOR} from '../overlay/overlay-header.js'
import {IoError, UsageError, toVdsnapError, type VdsnapError} from '../errors.js'
import {BlockSource, type BlockSourceOptions} from '../repo/block-source.js'
import {ServedDisk} from './served-disk.js'

export const SERVE_CACHE_BYTES = 64 * 1024 * 1024
export const SERVE_READ_AHEAD_BYTES = 8 * 1024 * 1024

export interface ServeOptions {
  snapshot: Manifest
  listen: ListenAddress
  name: string
  overlay?: string
  rehash?: boolean
  cacheBytes?: number
  log: (line: string) => void
  /** Called once the server accepts connections, with where it listens. */
  onListening: (where: string, overlayChanged?: number) => void
  /** Resolves with the reason to stop (e.g. the signal's name). */
  stop: Promise<string>
}

export interface ServeResult {
  snapshot: string
  export: string
  listen: string
  overlay: string | null
  /** Bytes the overlay holds (whole 4 KiB sectors written or zeroed). */
  overlayBytes: number
  chunksRead: number
  stoppedBy: string
}

/** The BlockSource options serving uses (verified, a bounded cache, read-ahead a quarter of it). */
export function serveSourceOptions(opts: Pick<ServeOptions, 'rehash' | 'cacheBytes'>): BlockSourceOptions {
  const cacheBytes = opts.cacheBytes ?? SERVE_CACHE_BYTES
  return {rehash: opts.rehash ?? true, cacheBytes, readAheadBytes: Math.min(SERVE_READ_AHEAD_BYTES, cacheBytes / 4)}
}

export async function runServe(repo: Repository, opts: ServeOptions): Promise<ServeResult> {
  return serveSource(await BlockSource.open(repo, opts.snapshot, serveSourceOptions(opts)), opts)
}

/** Serves `source` (the snapshot's blocks, from a repository or an archive) until `stop`; closes it. */
export async function serveSource(source: BlockSource, opts: ServeOptions): Promise<ServeResult> {
  const snap = opts.snapshot
  let overlay: OverlayFile | undefined
  try {
    if (opts.overlay) overlay = await OverlayFile.open(opts.overlay, {snapshotId: snap.id, virtualSize: snap.virtualSize, create: true, readOnly: false})
    const disk = new ServedDisk(opts.name, source, overlay, `vdsnap snapshot ${snap.id.slice(0, 8)} of ${snap.disk} (${snap.time})`)
    const server = new NbdServer(disk, {log: opts.log})
    const where = await server.listen(opts.listen).catch((e) => Promise.reject(listenError(opts.listen, e)))
    let stoppedBy: string
    try {
      opts.onListening(where, overlay ? overlay.changedSectors() * SECTOR : undefined)
      stoppedBy = await opts.stop
      opts.log(`${stoppedBy}: stopping (${server.connections} clients connected)`)
    } finally {
      await server.close()
    }
    const overlayBytes = overlay ? overlay.changedSectors() * SECTOR : 0
    await overlay?.close()
    return {snapshot: snap.id, export: opts.name, listen: where, overlay: opts.overlay ?? null, overlayBytes, chunksRead: source.chunksRead, stoppedBy}
  } finally {
    await overlay?.close()
    await source.close()
  }
}

function listenError(addr: ListenAddress, e: NodeJS.ErrnoException): VdsnapError {
  const at = 'path' in addr ? addr.path : `${addr.host}:${addr.port}`
  switch (e.code) {
    case 'EADDRINUSE':
      return new IoError(`cannot listen on ${at}: something already listens there`, {cause: e, hint: 'pick another --listen port or --socket path, or stop the other server'})
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND':
      return new UsageError(`cannot listen on ${at}: not an address of this machine`, {cause: e})
    default:
      return toVdsnapError(e, `listening on ${at}`)
  }
}
