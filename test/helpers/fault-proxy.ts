// An HTTP proxy on 127.0.0.1 in front of an S3-compatible server that
// answers some requests itself with the errors S3 sends when it is
// overloaded (503 SlowDown, 500 InternalError), so the real AWS SDK and our
// retry wrapper see real faults over HTTP. Bounded: every `every`-th request
// that `match` selects is refused, at most `max` times (Infinity: faults
// never stop). Everything else is forwarded unchanged (s3rver checks access
// key ids, not signatures, so the Host header may name the proxy).
import {Agent, createServer, request, type IncomingMessage, type Server} from 'node:http'
import type {Socket} from 'node:net'

export interface FaultPolicy {
  /** Refuse every Nth selected request (1: all of them). */
  every: number
  /** Refuse at most this many under this policy; Infinity for faults that never stop. */
  max: number
  /** Which requests may be refused; default all. */
  match?: (req: {method: string; path: string}) => boolean
}

export interface FaultProxy {
  endpoint: string
  /** Requests refused so far, under every policy. */
  readonly injected: number
  /** Requests forwarded so far. */
  readonly forwarded: number
  setPolicy(policy: FaultPolicy | null): void
  close(): Promise<void>
}

const FAULTS = [
  {status: 503, code: 'SlowDown', message: 'Please reduce your request rate.'},
  {status: 500, code: 'InternalError', message: 'We encountered an internal error. Please try again.'},
]

export async function startFaultProxy(targetPort: number, initial: FaultPolicy | null = null): Promise<FaultProxy> {
  let policy = initial
  let seen = 0
  let underPolicy = 0
  let injected = 0
  let forwarded = 0
  const agent = new Agent({keepAlive: true})
  const sockets = new Set<Socket>()

  const refuse = (req: IncomingMessage, res: import('node:http').ServerResponse) => {
    underPolicy++
    const f = FAULTS[injected++ % FAULTS.length]!
    const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${f.code}</Code><Message>${f.message}</Message><RequestId>fault-${injected}</RequestId></Error>`
    req.resume() // drain the upload
    req.on('end', () => {
      res.writeHead(f.status, {'Content-Type': 'application/xml', 'Content-Length': Buffer.byteLength(body)})
      res.end(body)
    })
  }

  const server: Server = createServer((req, res) => {
    const selected = policy && (policy.match?.({method: req.method ?? '', path: req.url ?? ''}) ?? true)
    if (selected && underPolicy < policy!.max && ++seen % policy!.every === 0) return refuse(req, res)
    forwarded++
    const up = request({host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers: req.headers, agent}, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers)
      upRes.pipe(res)
    })
    up.on('error', () => res.destroy())
    req.pipe(up)
  })
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as {port: number}).port
  return {
    endpoint: `http://127.0.0.1:${port}`,
    get injected() {
      return injected
    },
    get forwarded() {
      return forwarded
    },
    setPolicy(p) {
      policy = p
      seen = 0
      underPolicy = 0
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy()
        agent.destroy()
        server.close(() => r())
      }),
  }
}
