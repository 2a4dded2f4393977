// A TCP proxy on 127.0.0.1 in front of an NBD server's unix socket, for the
// nbd:// (TCP) path and for a server that dies at a known point: it parses
// what the client sends (client flags, options, then 28-byte requests) and,
// when the client sends its read request number `cutAtRead` (1-based), it
// forwards nothing more and destroys both connections. The cut happens at a
// point of the client's own request stream, so its outcome does not depend
// on timing: that read, and any still unanswered, can never complete.
// With `holdUntilReads` K, the server's replies are held back from the
// moment the first read is forwarded until K reads have been: a client that
// waits for each reply before it sends the next read never gets one.
import {connect, createServer, type Server, type Socket} from 'node:net'
import * as P from '../../src/nbd/protocol.js'
import * as O from '../../src/nbd/option-codec.js'
import * as T from '../../src/nbd/transmission-codec.js'

export interface NbdProxy {
  url(exportName: string): string
  /** READ requests the proxy has forwarded, over all connections. */
  readonly readsForwarded: number
  readonly cuts: number
  close(): Promise<void>
}

export async function startNbdProxy(targetSocket: string, cutAtRead = Infinity, holdUntilReads = 0): Promise<NbdProxy> {
  let readsForwarded = 0
  let cuts = 0
  const open = new Set<Socket>()
  const server: Server = createServer((client) => {
    const upstream = connect({path: targetSocket})
    open.add(client).add(upstream)
    const drop = (): void => {
      client.destroy()
      upstream.destroy()
    }
    client.on('close', () => open.delete(client) && upstream.end())
    upstream.on('close', () => open.delete(upstream) && client.end())
    client.on('error', drop)
    upstream.on('error', drop)
    let held: Buffer[] = []
    const release = (): void => {
      for (const d of held) client.write(d)
      held = []
    }
    const holding = (): boolean => readsForwarded >= 1 && readsForwarded < holdUntilReads
    upstream.on('data', (d: Buffer) => (holding() ? held.push(d) : client.write(d)))
    let pending = Buffer.alloc(0)
    let stage: 'flags' | 'options' | 'requests' = 'flags'
    client.on('data', (d: Buffer) => {
      pending = Buffer.concat([pending, d])
      for (let guard = 0; guard < 1_000_000; guard++) {
        let n = 0
        if (stage === 'flags' && pending.length >= 4) {
          n = 4
          stage = 'options'
        } else if (stage === 'options' && pending.length >= P.OPTION_HEADER_SIZE) {
          const h = O.decodeOptionHeader(pending)
          if (pending.length < P.OPTION_HEADER_SIZE + h.length) break
          n = P.OPTION_HEADER_SIZE + h.length
          if (h.option === P.Opt.GO || h.option === P.Opt.EXPORT_NAME) stage = 'requests'
        } else if (stage === 'requests' && pending.length >= P.REQUEST_SIZE) {
          const r = T.decodeRequest(pending)
          n = P.REQUEST_SIZE
          if (r.type === P.Cmd.READ) {
            if (readsForwarded + 1 >= cutAtRead) {
              cuts++
              return drop()
            }
            readsForwarded++
            if (!holding()) release()
          }
        } else break
        upstream.write(pending.subarray(0, n))
        pending = pending.subarray(n)
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as {port: number}).port
  return {
    url: (exportName) => `nbd://127.0.0.1:${port}/${encodeURIComponent(exportName)}`,
    get readsForwarded() {
      return readsForwarded
    },
    get cuts() {
      return cuts
    },
    close: async () => {
      for (const s of open) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
