// Messages between the chunk pool and its workers.

export type WorkerRequest =
  | {id: number; op: 'hash'; buf: ArrayBuffer; length: number; blockSize: number}
  | {id: number; op: 'pack'; buf: ArrayBuffer; items: {start: number; end: number; name: string}[]}
  | {
      id: number
      op: 'unpack'
      items: {name: string; data: Uint8Array; digest: Uint8Array}[]
      maxSize: number
      /**
       * Re-hash the plaintext and compare with its id. Always done for
       * unencrypted objects; for encrypted ones the GCM tag, whose AAD holds
       * the object's name (= its id), already proves it is the chunk stored
       * under that id, so restore skips the re-hash unless asked.
       */
      rehash: boolean
      /**
       * Buffers of at least maxSize bytes the caller is done with: the worker
       * puts plaintexts in them (and sends them back) instead of new ones,
       * so the caller's heap does not grow by every restored byte.
       */
      spare?: ArrayBuffer[]
    }

export type WorkerReply =
  | {id: number; ok: true; digests: Uint8Array; buf: ArrayBuffer}
  | {id: number; ok: true; objects: Uint8Array[]; buf: ArrayBuffer}
  | {id: number; ok: true; plain: Uint8Array[]}
  | {id: number; ok: false; message: string; dataError: boolean; hint?: string}
