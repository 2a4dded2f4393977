// Messages between the chunk pool and its workers: one typed request and
// result per method, and errors serialized so that the pool can rebuild the
// same error class (exit code, literal code, hint, object, offset) on its side.
import * as errors from '../errors.js'

export interface PackItem {
  /** Plaintext bytes [start, end) of the request's buffer. */
  start: number
  end: number
  /** The envelope's object name (its AAD when encrypted). */
  name: string
}

export interface UnpackItem {
  name: string
  data: Uint8Array
  digest: Uint8Array
}

export interface UnpackOptions {
  /** Largest plaintext accepted (the block size). */
  maxSize: number
  /**
   * Re-hash the plaintext and compare with its id. Always done for
   * unencrypted objects; for encrypted ones the GCM tag, whose AAD holds
   * the object's name (= its id), already proves it is the chunk stored
   * under that id, so restore skips the re-hash unless asked.
   */
  rehash: boolean
}

/** Each method's arguments and result; both travel by transfer where they can. */
export interface WorkerMethods {
  /** The digest of every block of buf[0, length) (all zero for a zero block), buf given back. */
  hash: {args: {buf: ArrayBuffer; length: number; blockSize: number}; result: {digests: Uint8Array; buf: ArrayBuffer}}
  /** Every item encoded as a chunk object (compressed, encrypted), buf given back. */
  pack: {args: {buf: ArrayBuffer; items: PackItem[]}; result: {objects: Uint8Array[]; buf: ArrayBuffer}}
  /** Every item decoded and verified: its plaintext. */
  /**
   * Every item decoded and verified: its plaintext. `spare`: buffers of at
   * least maxSize bytes the caller is done with; the worker puts plaintexts
   * in them (and sends them back) instead of new ones, so the caller's heap
   * does not grow by every restored byte.
   */
  unpack: {args: {items: UnpackItem[]; spare?: ArrayBuffer[]} & UnpackOptions; result: {plain: Uint8Array[]}}
}

export type Method = keyof WorkerMethods
export type Args<M extends Method> = WorkerMethods[M]['args']
export type Result<M extends Method> = WorkerMethods[M]['result']

export type WorkerRequest = {[M in Method]: {id: number; op: M; args: Args<M>}}[Method]

export type WorkerReply = {id: number; ok: true; result: Result<Method>} | {id: number; ok: false; error: SerializedError}

/** An error as it crosses the thread boundary: its class name, message and every plain own field. */
export interface SerializedError {
  name: string
  message: string
  stack?: string
  /** kind, code, hint, retryable, object, offset, …: whatever the error carries. */
  fields: Record<string, string | number | boolean | null>
}

export function serializeError(e: unknown): SerializedError {
  if (!(e instanceof Error)) return {name: 'Error', message: String(e), fields: {}}
  const fields: SerializedError['fields'] = {}
  for (const [k, v] of Object.entries(e)) {
    if (k === 'message' || k === 'stack' || k === 'name') continue
    if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') fields[k] = v
  }
  return {name: e.name, message: e.message, stack: e.stack, fields}
}

type ErrorClass = new (message: string, options?: errors.ErrorOptions) => Error

const BUILTIN: Record<string, ErrorClass> = {Error, TypeError, RangeError, SyntaxError}

function errorClass(name: string): ErrorClass {
  const cls = (errors as Record<string, unknown>)[name]
  if (typeof cls === 'function' && cls.prototype instanceof errors.VdsnapError) return cls as ErrorClass
  return BUILTIN[name] ?? errors.VdsnapError
}

/** The same class as in the worker, with the same fields; the stack says where it was thrown. */
export function deserializeError(s: SerializedError): Error {
  const err = new (errorClass(s.name))(s.message)
  // Constructors with other parameters (ImageFormatError's path first) are
  // put right by copying every field over what they made.
  Object.assign(err, s.fields)
  err.message = s.message
  if (err.name !== s.name) err.name = s.name // a class not known here keeps its name
  if (s.stack) err.stack = `${s.stack}\n    (in a chunk worker thread)`
  return err
}
