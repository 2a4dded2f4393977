// A TCP proxy on 127.0.0.1 that can stall a transfer at a known point: once
// armed with stallAfter(n), it forwards n more bytes from clients to the
// server, then holds everything else the clients send (the server still
// answers what it got). Tests use it to act "mid-transfer" — kill the
// server, cut the link — with the transfer provably unfinished, however
// fast or loaded the machine is, instead of racing a timer.
import {createServer, connect, type Server, type Socket} from 'node:net'

export interface GateProxy {
  port: number
  /** Forwards `bytes` more client→server bytes, then holds the rest; resolves when the stall begins. */
  stallAfter(bytes: number): Promise<void>
  /** Cuts every connection (as a network failure would) and lets new ones through ungated. */
  dropConnections(): void
  close(): Promise<void>
}

export async function startGateProxy(targetPort: number): Promise<GateProxy> {
  const sockets = new Set<Socket>()
  let budget = Infinity
  let onStall: (() => void) | undefined
  const server: Server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1')
    client.setNoDelay(true)
    upstream.setNoDelay(true)
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
      s.on('error', () => {})
    }
    client.on('data', (chunk: Buffer) => {
      if (budget === Infinity) return void upstream.write(chunk)
      const pass = Math.min(chunk.length, budget)
      if (pass > 0) upstream.write(chunk.subarray(0, pass))
      budget -= pass
      if (budget === 0) {
        client.pause() // hold the rest: the client's writes back up, the transfer cannot finish
        onStall?.()
        onStall = undefined
      }
    })
    upstream.on('data', (chunk: Buffer) => client.write(chunk))
    upstream.on('close', () => client.destroy())
    client.on('close', () => upstream.destroy())
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    port: (server.address() as {port: number}).port,
    stallAfter(bytes: number) {
      budget = bytes
      return new Promise<void>((r) => (onStall = r))
    },
    dropConnections() {
      budget = Infinity
      for (const s of sockets) s.destroy()
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy()
        server.close(() => r())
      }),
  }
}
