// Messages between the chunk pool and its workers.

export type WorkerRequest =
  | {id: number; op: 'hash'; buf: ArrayBuffer; length: number; blockSize: number}
  | {id: number; op: 'pack'; buf: ArrayBuffer; items: {start: number; end: number; name: string}[]}
  | {id: number; op: 'unpack'; items: {name: string; data: Uint8Array; digest: Uint8Array}[]; maxSize: number}

export type WorkerReply =
  | {id: number; ok: true; digests: Uint8Array; buf: ArrayBuffer}
  | {id: number; ok: true; objects: Uint8Array[]; buf: ArrayBuffer}
  | {id: number; ok: true; plain: Uint8Array[]}
  | {id: number; ok: false; message: string; dataError: boolean}
