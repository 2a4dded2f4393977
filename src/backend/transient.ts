// Classifies low-level failures as transient (worth retrying) or permanent.
// Backends call these where an error happens and set `retryable` on the
// VdsnapError they throw; the retry wrapper only reads that flag and never
// guesses from messages itself.

/** Socket-level error codes that mean "the network or the peer hiccupped". */
const TRANSIENT_CODES = new Set([
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ECONNABORTED',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTUNREACH',
  'EAI_AGAIN',
  'ESOCKETTIMEDOUT',
  'UND_ERR_SOCKET',
  'ERR_STREAM_PREMATURE_CLOSE',
])

const TRANSIENT_MESSAGES = [/socket hang up/i, /timed out/i, /timeout/i, /ECONNRESET/, /EPIPE/, /premature close/i]

/**
 * True for a Node/network error that should be retried: connection reset,
 * timeouts, broken pipe, "socket hang up". Auth failures, missing objects,
 * no space and access denied are never transient.
 */
export function isTransientNetworkError(err: unknown): boolean {
  const e = err as {code?: unknown; message?: unknown; name?: unknown}
  if (typeof e?.code === 'string' && TRANSIENT_CODES.has(e.code)) return true
  if (e?.name === 'TimeoutError') return true
  const msg = typeof e?.message === 'string' ? e.message : ''
  return TRANSIENT_MESSAGES.some((re) => re.test(msg))
}

/** True for HTTP statuses worth retrying: 5xx, 429 (throttling), 408 (request timeout). */
export function isTransientHttpStatus(status: number | undefined): boolean {
  return status !== undefined && (status >= 500 || status === 429 || status === 408)
}
