// Opening what a backup reads, and the facts the manifest records about it.
// A source is an image file or device (opened by content, disk/open.ts), or
// a raw disk from a stream: standard input (`backup -`) or a command's
// stdout (--source-command). A stream has no path to stat and can be read
// only once, so:
//  - its size is --size, else the disk's previous snapshot's size (a first
//    backup without --size is refused: the size is never guessed from the
//    stream, or a cut-short stream would become a smaller disk);
//  - it needs --disk, and refuses what would re-read or seek (--changed-blocks,
//    --image-snapshot, a non-raw --format);
//  - its facts are its label ("-" or "command: CMD") and size, with no mtime.
import {stat} from 'node:fs/promises'
import {resolve} from 'node:path'
import type {Readable} from 'node:stream'
import {NbdImage} from '../disk/nbd-image.js'
import {openImage} from '../disk/open.js'
import {StreamImage} from '../disk/stream-image.js'
import {commandSource, stdinSource} from '../disk/stream-source.js'
import type {DiskImage} from '../disk/types.js'
import {UsageError, toVdsnapError} from '../errors.js'
import {isNbdUrl} from '../nbd/url.js'
import type {LayerFacts, SourceFacts} from '../repo/manifest.js'

export interface SourceOptions {
  source: string
  format?: string
  /** Read this internal snapshot of the image (qcow2) instead of its active layer. */
  imageSnapshot?: string
  changedBlocksFile?: string
  /** NBD sources: read only the blocks this QEMU dirty bitmap marks (bitmap-source.ts). */
  bitmap?: string
  /** Stream sources: the disk's size in bytes. */
  size?: number
  /** Read the disk from this shell command's stdout. */
  sourceCommand?: string
  /** Stream sources: fail when the source sends nothing for this long. */
  sourceTimeoutMs?: number
  /** Standard input, injectable for tests. */
  stdin?: Readable
}

/** How a command source's label begins (sourceLabel); standard input's label is "-". */
const COMMAND_LABEL = 'command: '

export function isStream(opts: SourceOptions): boolean {
  return isStreamLabel(sourceLabel(opts))
}

/** Whether a source label (sourceLabel; a manifest's source path) names a stream: standard input or a command. */
export function isStreamLabel(label: string): boolean {
  return label === '-' || label.startsWith(COMMAND_LABEL)
}

/** The source's name in hooks, messages and the manifest. */
export function sourceLabel(opts: SourceOptions): string {
  if (opts.sourceCommand !== undefined) return `${COMMAND_LABEL}${opts.sourceCommand}`
  if (isNbdUrl(opts.source)) return opts.source
  return opts.source === '-' ? '-' : resolve(opts.source)
}

/** Refuses flag combinations a stream (or a file) cannot honour, before anything runs. */
export function checkSourceOptions(opts: SourceOptions & {disk?: string}): void {
  if (opts.bitmap !== undefined && !isNbdUrl(opts.source)) {
    throw new UsageError(`--bitmap needs an NBD source (nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH), not ${opts.source}`)
  }
  if (opts.bitmap !== undefined && opts.changedBlocksFile) throw new UsageError('--bitmap and --changed-blocks are two change sources: give one')
  if (!isStream(opts)) {
    for (const [flag, v] of [['--size', opts.size], ['--source-timeout', opts.sourceTimeoutMs]] as const) {
      if (v !== undefined) throw new UsageError(`${flag} applies to stream sources only (backup - or --source-command)`)
    }
    return
  }
  if (opts.sourceCommand !== undefined && opts.source !== '-') {
    throw new UsageError(`--source-command reads the disk from the command, so the source must be "-", not ${opts.source}`)
  }
  if (opts.sourceCommand !== undefined && opts.sourceCommand.trim() === '') throw new UsageError('--source-command is empty')
  if (!opts.disk) throw new UsageError('a stream source needs --disk NAME (there is no file name to take it from)')
  if (opts.changedBlocksFile) throw new UsageError('--changed-blocks does not apply to a stream: it is read whole anyway (zero blocks cost nothing)')
  if (opts.imageSnapshot !== undefined) throw new UsageError('--image-snapshot does not apply to a stream (it is a raw disk)')
  if (opts.format && opts.format.toLowerCase() !== 'raw') throw new UsageError(`a stream is read as a raw disk, not ${opts.format}`)
  if (opts.size !== undefined && (!Number.isSafeInteger(opts.size) || opts.size <= 0)) throw new UsageError(`--size ${opts.size} is not a positive number of bytes`)
}

/** A character device, FIFO or socket has no size to read up to: it is a stream, read by "backup -". */
async function refuseSpecialFile(path: string): Promise<void> {
  const st = await stat(path).catch(() => null)
  if (st && !st.isFile() && !st.isBlockDevice() && !st.isDirectory()) {
    throw new UsageError(`${path} is neither a disk image file nor a block device`, {
      hint: `to back up a stream, pipe it in: vdsnap backup - --disk NAME --size BYTES < ${path}`,
    })
  }
}

/** Opens the source; `previousSize` is the disk's newest snapshot's size (streams without --size). */
export async function openSource(opts: SourceOptions, disk: string, previousSize: () => Promise<number | undefined>): Promise<DiskImage> {
  if (!isStream(opts)) {
    if (!isNbdUrl(opts.source)) await refuseSpecialFile(opts.source)
    return openImage(opts.source, {format: opts.format, imageSnapshot: opts.imageSnapshot, bitmap: opts.bitmap})
  }
  const size = opts.size ?? (await previousSize())
  if (size === undefined) {
    throw new UsageError(`disk "${disk}" has no snapshot yet, so a stream needs --size BYTES`, {
      hint: 'e.g. --size $(blockdev --getsize64 /dev/vg/lv), or the size rbd info / zfs get volsize reports',
    })
  }
  const source = opts.sourceCommand !== undefined ? commandSource(opts.sourceCommand) : stdinSource(opts.stdin as Readable & {isTTY?: boolean})
  return new StreamImage(source, size, opts.sourceTimeoutMs)
}

async function layerFacts(path: string, virtualSize: number): Promise<LayerFacts> {
  const st = await stat(path).catch((e) => Promise.reject(toVdsnapError(e, `examining ${path}`)))
  return {path: resolve(path), size: st.isBlockDevice() ? virtualSize : st.size, mtimeMs: st.mtimeMs}
}

/** Path, size and mtime of every layer of the source (a stream: its label and size). */
export async function sourceFacts(image: DiskImage): Promise<SourceFacts> {
  // A stream or an NBD export has no file to stat: its label (or URL) and size are what can be known.
  if (image instanceof StreamImage || image instanceof NbdImage) {
    const layer = {path: image.path, size: image.virtualSize, mtimeMs: 0}
    return {...layer, format: image instanceof StreamImage ? 'raw' : image.format, layers: [layer]}
  }
  const layers: LayerFacts[] = []
  for (let img: DiskImage | undefined = image; img; img = img.parent) layers.push(await layerFacts(img.path, img.virtualSize))
  return {...layers[0]!, format: image.format, layers, ...(image.identity ? {identity: image.identity} : {})}
}
