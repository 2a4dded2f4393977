// What the NBD server serves: an export, owned here (the consumer) and
// implemented by the serve use case. The server checks every request against
// the size and limits below before it calls an export, so an export never
// sees a range outside the disk or a length above maxBlock.
import type {Extent} from './transmission-codec.js'

export interface NbdExport {
  name: string
  description?: string
  size: number
  readOnly: boolean
  /** Block size constraints (NBD_INFO_BLOCK_SIZE). */
  minBlock: number
  preferredBlock: number
  maxBlock: number
  read(offset: number, length: number): Promise<Buffer>
  /** base:allocation extents from `offset`, covering at most `length` bytes and at most `maxExtents` entries. */
  extents(offset: number, length: number, maxExtents: number): Promise<Extent[]>
  write(offset: number, data: Buffer): Promise<void>
  /** Trim and write-zeroes: afterwards the range reads as zeros. */
  zero(offset: number, length: number): Promise<void>
  /** Makes every completed write durable, whichever connection made it (multi-conn). */
  flush(): Promise<void>
}

/** Why a request failed, as the server logs it; `errno` goes on the wire. */
export interface ServerLog {
  (line: string): void
}
