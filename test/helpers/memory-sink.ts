// What the archive writer tests share: a ByteSink that keeps the archive in
// memory, and the check that every cut-short copy of an archive is refused.
import {expect} from 'vitest'
import type {ByteSink} from '../../src/archive/sink.js'
import {DataError} from '../../src/errors.js'

export class MemorySink implements ByteSink {
  parts: Buffer[] = []
  position = 0
  async write(b: Buffer) {
    this.parts.push(Buffer.from(b))
    this.position += b.length
  }
  async finish() {}
  async abort() {}
  get bytes() {
    return Buffer.concat(this.parts)
  }
}

/** Reading `bytes` cut at each of `cuts` fails with a DataError whose message names `name` (never a hang, never success). */
export async function expectCutsRefused(bytes: Buffer, cuts: Iterable<number>, read: (b: Buffer) => Promise<unknown>, name: string): Promise<void> {
  for (const cut of cuts) {
    const err = await read(bytes.subarray(0, cut)).then(() => null, (e: unknown) => e)
    expect(err, `cut at ${cut}`).toBeInstanceOf(DataError)
    expect((err as Error).message).toContain(name)
  }
}
