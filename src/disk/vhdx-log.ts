// VHDX log replay, in memory only. A VHDX whose header names a log (LogGuid
// not zero) may hold metadata writes that never reached their place in the
// file; readers must apply them first. We never write the file: the replayed
// writes become a FileOverlay that patches every later read.
// Steps (MS-VHDX "log replay"):
//  1. Read the whole log ring (LogOffset/LogLength, bounded in size).
//  2. Parse a candidate entry at every 4 KiB position: signature "loge",
//     CRC-32C over the entry, LogGuid equal to the header's, descriptors and
//     data sectors carrying the entry's sequence number.
//  3. The active sequence is found from the highest-numbered entry down: walk
//     from the entry its Tail field names, forward through consecutive
//     sequence numbers, until the head is reached. No complete sequence means
//     nothing to replay (as qemu does).
//  4. Apply every zero and data descriptor of the sequence, tail to head, in
//     order; the file is considered at least LastFileOffset long afterwards.
import {ImageFormatError} from '../errors.js'
import {MAX_METADATA_READ, u64le, type ImageFile, type FileOverlay} from './image-file.js'
import {crc32cWithZeroedField} from './crc32c.js'
import {MIB, ZERO_GUID, readGuid, type VhdxHeader} from './vhdx-structures.js'

const LOG_SECTOR = 4096
const ENTRY_HEADER_SIZE = 64
const DESCRIPTOR_SIZE = 32
const DATA_PAYLOAD = 4084
const LEADING_BYTES = 8
const TRAILING_BYTES = 4
/** Candidate heads tried, newest first; bounds the search on hostile logs. */
const MAX_HEAD_CANDIDATES = 64

interface LogOp {
  fileOffset: number
  length: number
  /** Undefined for a zero descriptor. */
  data?: Buffer
}

interface LogEntry {
  offset: number
  length: number
  sequence: number
  tail: number
  flushedFileOffset: number
  lastFileOffset: number
  ops: LogOp[]
}

/** Replays the log of `header` in memory; undefined when there is nothing to replay. */
export async function replayLog(file: ImageFile, header: VhdxHeader): Promise<FileOverlay | undefined> {
  if (header.logGuid === ZERO_GUID) return undefined
  const {logOffset, logLength} = header
  if (logLength > MAX_METADATA_READ) {
    throw new ImageFormatError(file.path, `VHDX log of ${logLength} bytes needs replay but is larger than the ${MAX_METADATA_READ} bytes we replay in memory`)
  }
  if (logOffset < MIB || logOffset % MIB !== 0 || logLength === 0 || logLength % MIB !== 0) {
    throw new ImageFormatError(file.path, `VHDX log at ${logOffset} (${logLength} bytes) is not a valid log region`)
  }
  const log = await file.readStruct(logOffset, logLength, 'VHDX log')
  const entries = new Map<number, LogEntry>()
  for (let off = 0; off < logLength; off += LOG_SECTOR) {
    const e = parseEntry(log, off, header.logGuid, file.path)
    if (e) entries.set(off, e)
  }
  const sequence = activeSequence(entries, logLength)
  if (!sequence) return undefined
  const head = sequence[sequence.length - 1]!
  if (head.flushedFileOffset > file.physicalSize) {
    throw new ImageFormatError(file.path, `VHDX log expects the file to be at least ${head.flushedFileOffset} bytes, it is ${file.physicalSize} (truncated)`)
  }
  return new LogOverlay(sequence.flatMap((e) => e.ops), Math.max(head.lastFileOffset, file.physicalSize))
}

/** Bytes [off, off+n) of the ring, wrapping at its end. */
function ring(log: Buffer, off: number, n: number): Buffer {
  if (off + n <= log.length) return log.subarray(off, off + n)
  const first = log.subarray(off)
  return Buffer.concat([first, log.subarray(0, n - first.length)])
}

function parseEntry(log: Buffer, off: number, logGuid: string, path: string): LogEntry | undefined {
  const h = log.subarray(off, off + ENTRY_HEADER_SIZE)
  if (h.toString('latin1', 0, 4) !== 'loge') return undefined
  const length = h.readUInt32LE(8)
  const tail = h.readUInt32LE(12)
  const count = h.readUInt32LE(24)
  if (length === 0 || length % LOG_SECTOR !== 0 || length > log.length || tail % LOG_SECTOR !== 0 || tail >= log.length) return undefined
  if (readGuid(h, 32) !== logGuid) return undefined
  const descBytes = Math.ceil((ENTRY_HEADER_SIZE + count * DESCRIPTOR_SIZE) / LOG_SECTOR) * LOG_SECTOR
  if (descBytes > length) return undefined
  const entry = ring(log, off, length)
  if (crc32cWithZeroedField(entry, 4) !== h.readUInt32LE(4)) return undefined
  const sequence = u64le(h, 16, path, 'VHDX log sequence number')
  const ops: LogOp[] = []
  let dataSector = descBytes
  for (let i = 0; i < count; i++) {
    const d = entry.subarray(ENTRY_HEADER_SIZE + i * DESCRIPTOR_SIZE, ENTRY_HEADER_SIZE + (i + 1) * DESCRIPTOR_SIZE)
    const kind = d.toString('latin1', 0, 4)
    const fileOffset = u64le(d, 16, path, 'VHDX log descriptor offset')
    if (u64le(d, 24, path, 'VHDX log descriptor sequence') !== sequence || fileOffset % LOG_SECTOR !== 0) return undefined
    if (kind === 'zero') {
      const zeroLength = u64le(d, 8, path, 'VHDX log zero length')
      if (zeroLength % LOG_SECTOR !== 0 || fileOffset + zeroLength > Number.MAX_SAFE_INTEGER) return undefined
      ops.push({fileOffset, length: zeroLength})
    } else if (kind === 'desc') {
      if (dataSector + LOG_SECTOR > length) return undefined
      const s = entry.subarray(dataSector, dataSector + LOG_SECTOR)
      if (s.toString('latin1', 0, 4) !== 'data' || s.readUInt32LE(4) * 2 ** 32 + s.readUInt32LE(4092) !== sequence) return undefined
      const data = Buffer.alloc(LOG_SECTOR)
      d.copy(data, 0, 8, 8 + LEADING_BYTES)
      s.copy(data, LEADING_BYTES, 8, 8 + DATA_PAYLOAD)
      d.copy(data, LEADING_BYTES + DATA_PAYLOAD, 4, 4 + TRAILING_BYTES)
      ops.push({fileOffset, length: LOG_SECTOR, data})
      dataSector += LOG_SECTOR
    } else return undefined
  }
  return {
    offset: off,
    length,
    sequence,
    tail,
    flushedFileOffset: u64le(h, 48, path, 'VHDX log flushed file offset'),
    lastFileOffset: u64le(h, 56, path, 'VHDX log last file offset'),
    ops,
  }
}

/** The complete sequence ending at the highest-numbered possible head, tail first. */
function activeSequence(entries: Map<number, LogEntry>, logLength: number): LogEntry[] | undefined {
  const heads = [...entries.values()].sort((a, b) => b.sequence - a.sequence).slice(0, MAX_HEAD_CANDIDATES)
  for (const head of heads) {
    const chain: LogEntry[] = []
    let e = entries.get(head.tail)
    while (e && chain.length <= entries.size) {
      const prev = chain[chain.length - 1]
      if (prev && e.sequence !== prev.sequence + 1) break
      chain.push(e)
      if (e === head) return chain
      e = entries.get((e.offset + e.length) % logLength)
    }
  }
  return undefined
}

class LogOverlay implements FileOverlay {
  private readonly lo: number
  private readonly hi: number

  constructor(
    private readonly ops: LogOp[],
    readonly end: number,
  ) {
    this.lo = ops.reduce((m, o) => Math.min(m, o.fileOffset), Infinity)
    this.hi = ops.reduce((m, o) => Math.max(m, o.fileOffset + o.length), 0)
  }

  apply(buf: Buffer, fileOffset: number): void {
    const end = fileOffset + buf.length
    if (end <= this.lo || fileOffset >= this.hi) return
    for (const op of this.ops) {
      const a = Math.max(op.fileOffset, fileOffset)
      const b = Math.min(op.fileOffset + op.length, end)
      if (a >= b) continue
      if (op.data) op.data.copy(buf, a - fileOffset, a - op.fileOffset, b - op.fileOffset)
      else buf.fill(0, a - fileOffset, b - fileOffset)
    }
  }
}
