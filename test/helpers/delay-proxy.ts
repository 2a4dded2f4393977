// A TCP proxy on 127.0.0.1 that holds every piece of data for `delayMs` in
// each direction: a WAN round trip of 2 × delayMs without kernel netem
// (which this machine's kernel lacks). Order is preserved per direction.
import {createServer, connect, type Server, type Socket} from 'node:net'

export interface DelayProxy {
  port: number
  /** HTTP requests seen from clients (counts "HTTP/1.1\r\n" request lines). */
  readonly requests: number
  /** Cuts every open connection (both sides) and keeps listening: a dropped link, the server still up. */
  dropConnections(): void
  close(): Promise<void>
}

const REQUEST_LINE_END = Buffer.from(' HTTP/1.1\r\n')

function delayed(from: Socket, to: Socket, delayMs: number): void {
  let chain = Promise.resolve()
  from.on('data', (chunk) => {
    const due = Date.now() + delayMs
    chain = chain.then(async () => {
      const wait = due - Date.now()
      if (wait > 0) await new Promise((r) => setTimeout(r, wait))
      if (!to.destroyed) to.write(chunk)
    })
  })
  from.on('end', () => void chain.then(() => to.end()))
  from.on('error', () => to.destroy())
}

export async function startDelayProxy(targetPort: number, delayMs: number): Promise<DelayProxy> {
  const sockets = new Set<Socket>()
  let requests = 0
  const server: Server = createServer((client) => {
    client.on('data', (chunk: Buffer) => {
      for (let at = chunk.indexOf(REQUEST_LINE_END); at >= 0; at = chunk.indexOf(REQUEST_LINE_END, at + 1)) requests++
    })
    client.setNoDelay(true)
    const upstream = connect(targetPort, '127.0.0.1')
    upstream.setNoDelay(true)
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
    }
    delayed(client, upstream, delayMs)
    delayed(upstream, client, delayMs)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as {port: number}).port
  return {
    port,
    get requests() {
      return requests
    },
    dropConnections() {
      for (const s of sockets) s.destroy()
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy()
        server.close(() => r())
      }),
  }
}
