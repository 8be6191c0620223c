/**
 * A control connection: lines in (framed by {@link CommandFramer}), replies out.
 *
 * This is the transport under a session. It is plain promise code over a native `Deno.Conn`; the
 * session wraps each call as an Effect. Writes are serialized so that replies from the control
 * loop and from a running transfer never interleave.
 *
 * @module
 */
import { CommandFramer, type Framed } from "../protocol/framer.ts"
import { plainAddress } from "../protocol/address.ts"

const READ_SIZE = 4096
const encoder = new TextEncoder()

/** The two ends of a TCP connection, with IPv4-mapped IPv6 addresses shown as IPv4. */
export interface Endpoints {
  readonly remoteAddress: string
  readonly remotePort: number
  readonly localAddress: string
  readonly localPort: number
}

/** Addresses of a connected `Deno.Conn`. */
export const endpointsOf = (conn: Deno.Conn): Endpoints => {
  const remote = conn.remoteAddr as Deno.NetAddr
  const local = conn.localAddr as Deno.NetAddr
  return {
    remoteAddress: plainAddress(remote.hostname),
    remotePort: remote.port,
    localAddress: plainAddress(local.hostname),
    localPort: local.port,
  }
}

/** Write all of `bytes` to `conn` (a single `write` may write fewer). */
export const writeAll = async (conn: Deno.Conn, bytes: Uint8Array): Promise<void> => {
  let offset = 0
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset))
}

/** One control connection. */
export class ControlConnection {
  readonly endpoints: Endpoints
  private readonly framer: CommandFramer
  private readonly buffer = new Uint8Array(READ_SIZE)
  private writing: Promise<void> = Promise.resolve()
  private closed = false

  constructor(readonly conn: Deno.Conn, maxLineLength = 2048) {
    this.endpoints = endpointsOf(conn)
    this.framer = new CommandFramer(maxLineLength)
    // Replies are small and often answer pipelined commands: do not let Nagle hold them back.
    if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true)
  }

  /** The next line, `tooLong` for a refused overlong line, or `null` when the peer closed. */
  async readLine(): Promise<Framed | null> {
    for (;;) {
      const framed = this.framer.next()
      if (framed !== undefined) return framed
      const n = await this.conn.read(this.buffer)
      if (n === null) return null
      this.framer.push(this.buffer.subarray(0, n))
    }
  }

  /** Bytes received but not yet returned as a line. */
  get pendingBytes(): number {
    return this.framer.buffered
  }

  /** Queue `text` (already a formatted reply) behind earlier writes; resolves when it is sent. */
  write(text: string): Promise<void> {
    const bytes = encoder.encode(text)
    const next = this.writing.then(() => (this.closed ? undefined : writeAll(this.conn, bytes)))
    this.writing = next.catch(() => undefined)
    return next
  }

  /** Close the connection; pending reads and writes fail. Safe to call more than once. */
  close(): void {
    if (this.closed) return
    this.closed = true
    try {
      this.conn.close()
    } catch {
      // Already closed by the runtime.
    }
  }

  get isClosed(): boolean {
    return this.closed
  }
}
