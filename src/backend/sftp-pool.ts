// A few SSH connections to one server, each with its SFTP channel, shared
// by all requests of one backend.
//
// OpenSSH's sftp-server answers one session's requests strictly one after
// another (an fsync stalls everything queued behind it on that session), so
// requests go to the live session with the fewest requests in flight.
// The first connection is made alone, so a wrong key or host key fails once
// and fast. Once it is up the others are opened in the background — on a
// WAN link a handshake costs about a dozen round trips, and opening them one
// at a time on first use put several handshakes in a row on the critical
// path. A session that died is replaced on the next request. A background
// connection that fails while others work (a server or firewall limiting
// connections per client) is not tried again for a while, so the pool never
// hammers the server with handshakes; it just runs with fewer sessions.
import {IoError} from '../errors.js'
import type {SftpSession} from './sftp-session.js'

/** Opens one session; `wasConnected` tells it whether a refused connection may be transient. */
export type SessionOpener = (wasConnected: boolean) => Promise<SftpSession>

export interface SessionLease {
  session: SftpSession
  /** Call once when the request is done (replied or failed). */
  release(): void
}

interface Slot {
  live?: SftpSession
  connecting?: Promise<SftpSession>
  busy: number
  /** No background connection attempt before this time (ms). */
  quietUntil: number
}

/** How long a slot whose background connection failed stays empty. */
export const RECONNECT_QUIET_MS = 30_000
/** How long close() waits for handshakes still under way. */
export const CLOSE_WAIT_MS = 2_000

export class SftpSessionPool {
  private readonly slots: Slot[]
  private connectedOnce = false
  private closed = false

  constructor(
    private readonly open: SessionOpener,
    size: number,
    private readonly location: string,
    private readonly now: () => number = Date.now,
  ) {
    this.slots = Array.from({length: Math.max(1, size)}, () => ({busy: 0, quietUntil: 0}))
  }

  /**
   * A session for one request: the one with the fewest requests, counting
   * those already queued on a session still connecting (waiting for its
   * handshake beats piling everything on the first session). Throws the
   * connection error (an IoError classified by openSftpSession) when the
   * chosen session cannot be opened and no other is live.
   */
  async acquire(): Promise<SessionLease> {
    if (this.closed) throw new IoError(`${this.location} is closed`)
    if (!this.connectedOnce) await this.connect(this.slots[0]!)
    this.refill()
    // none usable: every session died and every slot is quiet, so connect one now
    const slot = this.pick(true) ?? this.slots[0]!
    slot.busy++
    let session: SftpSession
    try {
      session = slot.live ?? (await this.connect(slot))
    } catch (e) {
      slot.busy--
      const live = this.pick(false)
      if (!live) throw e
      return this.lease(live)
    }
    if (this.closed) {
      slot.busy--
      throw new IoError(`${this.location} is closed`)
    }
    return {session, release: () => void slot.busy--}
  }

  private lease(slot: Slot): SessionLease {
    slot.busy++
    return {session: slot.live!, release: () => void slot.busy--}
  }

  /** The slot with the fewest requests among live ones (and connecting ones, if asked); ties go to a live one. */
  private pick(orConnecting: boolean): Slot | undefined {
    let best: Slot | undefined
    for (const s of this.slots) {
      const usable = s.live ? !s.live.dead : orConnecting && s.connecting !== undefined
      if (!usable) continue
      if (!best || s.busy < best.busy || (s.busy === best.busy && s.live && !best.live)) best = s
    }
    return best
  }

  /** Starts connecting every slot without a live session (dead ones are dropped), except quiet ones. */
  private refill(): void {
    const t = this.now()
    for (const s of this.slots) {
      if (s.live?.dead) {
        s.live.client.end()
        s.live = undefined
      }
      if (s.live || s.connecting || t < s.quietUntil) continue
      this.connect(s).catch(() => {
        // a waiting acquire() sees the error; with other sessions up, leave this slot alone for a while
        if (this.pick(false)) s.quietUntil = this.now() + RECONNECT_QUIET_MS
      })
    }
  }

  private connect(slot: Slot): Promise<SftpSession> {
    slot.connecting ??= this.open(this.connectedOnce).then(
      (session) => {
        slot.connecting = undefined
        if (this.closed) {
          session.client.end()
          return session
        }
        slot.live = session
        this.connectedOnce = true
        return session
      },
      (e: unknown) => {
        slot.connecting = undefined
        throw e
      },
    )
    return slot.connecting
  }

  async close(): Promise<void> {
    this.closed = true
    // A handshake still under way is ended when it completes (see connect);
    // waiting for it is bounded, as one to a server that died half-way may
    // never settle, and close() must never keep a cron job hanging.
    const connecting = Promise.all(this.slots.map((s) => s.connecting?.catch(() => undefined)))
    let timer: NodeJS.Timeout | undefined
    await Promise.race([connecting, new Promise<void>((r) => (timer = setTimeout(r, CLOSE_WAIT_MS)))])
    clearTimeout(timer)
    for (const s of this.slots) {
      s.live?.client.end()
      s.live = undefined
    }
  }
}
