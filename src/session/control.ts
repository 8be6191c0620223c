/**
 * A control connection: lines in (framed by {@link CommandFramer}), replies out.
 *
 * This is the transport under a session. It is plain promise code over a {@link Transport} (a
 * `Deno.Conn`, or TLS over one after AUTH TLS); the session wraps each call as an Effect. Writes
 * are serialized so that replies from the control loop and from a running transfer never
 * interleave.
 *
 * @module
 */
import type * as tls from "node:tls"
import { type Endpoints, endpointsOf } from "../net/address.ts"
import { TlsConn } from "../net/tls.ts"
import { type Transport, writeAll } from "../net/transport.ts"
import { CommandFramer, type Framed } from "../protocol/framer.ts"

/**
 * Commands are short, so a connection reads 512 bytes at a time (an idle session's buffer is
 * most of its memory); one whose reads fill that (pipelining, a flood) switches to 4 KiB, since
 * each read is a runtime op of its own.
 */
const READ_SIZE = 512
const BUSY_READ_SIZE = 4096
const CR = 13
const LF = 10
const encoder = new TextEncoder()

/**
 * How long a line that stops at its CR waits for the LF before the LF is assumed. Clients that
 * send ABOR as urgent data (Python's ftplib: `sendall(b"ABOR\r\n", MSG_OOB)`) make its last
 * byte, the LF, out-of-band; servers set SO_OOBINLINE to get it back, which Deno cannot do, so
 * the kernel drops it and the line would never end (RFC 959 4.1.3 wants ABOR handled at once).
 */
const LONE_CR_WAIT_MS = 100

/**
 * Bytes from here up (Telnet commands and IAC, RFC 854) are read one at a time. A Telnet Synch
 * (`IAC IP IAC DM ABOR`, lftp) sends its DM as TCP urgent data: `recv` stops just before it, and
 * the runtime (tokio) takes such a short read as "socket drained" and waits for a readiness event
 * that never comes, since the rest (`ABOR`) is already queued. A read that fills its buffer keeps
 * the socket readable, so each read starts with one byte, and Telnet bytes are taken one by one.
 * A Synch always starts a line, so wherever its urgent byte is (BSD ftp puts it on the second IAC,
 * lftp on the DM) the mark falls among bytes read one at a time. Not covered: a client that sends
 * another command and the Synch in one packet; the read of that command stops at the mark, and the
 * rest waits for the client's next packet.
 */
const TELNET_BYTES = 0xf0

/** One control connection. */
export class ControlConnection {
  readonly endpoints: Endpoints
  private readonly framer: CommandFramer
  private buffer = new Uint8Array(READ_SIZE)
  private writing: Promise<void> = Promise.resolve()
  private closed = false
  /** A read that outlived a {@link LONE_CR_WAIT_MS} wait; the next `readLine` takes its bytes. */
  private pendingRead: Promise<number | null> | undefined
  /** Whether the next read takes one byte (see {@link TELNET_BYTES}). */
  private probe = true
  private pendingProbe = false
  private endsWithCR = false
  /** An LF was assumed after a lone CR: drop the real one if it comes late after all. */
  private assumedLF = false

  /** What bytes are read from and written to: the TCP connection, or TLS over it after AUTH TLS. */
  private conn: Transport

  /**
   * The address the client connected to: the local address, or, behind a balancer (PROXY
   * protocol), the balancer's address the client reached. PASV announces it, and it decides the
   * address family of PASV, EPSV, PORT and EPRT.
   */
  readonly facingAddress: string

  /**
   * `transport` is `raw` itself, or (implicit FTPS) a TLS session already running over it;
   * `facingAddress` is the balancer's address behind a PROXY header.
   */
  constructor(readonly raw: Transport, transport: Transport = raw, facingAddress?: string, maxLineLength = 2048) {
    this.conn = transport
    this.endpoints = endpointsOf(raw)
    this.facingAddress = facingAddress ?? this.endpoints.localAddress
    this.framer = new CommandFramer(maxLineLength)
    // TLS reads come from the TLS layer's buffer: the one-byte probe is only for the raw socket.
    this.probe = transport === raw
  }

  /** The TLS session of the control connection, if it is secured. */
  get tls(): TlsConn | undefined {
    return this.conn instanceof TlsConn ? this.conn : undefined
  }

  /**
   * Whether the connection can switch to TLS now: no byte after the AUTH line may be buffered,
   * or plaintext sent before the handshake would be taken as if it had come over TLS.
   */
  get canUpgrade(): boolean {
    return this.pendingRead === undefined && this.framer.buffered === 0 && !this.endsWithCR
  }

  /** Run the server side of a TLS handshake (AUTH TLS), after the replies written so far are sent. */
  async upgrade(context: tls.SecureContext, options: { timeoutMs: number; requestCert?: boolean }): Promise<void> {
    await this.writing
    this.conn = await TlsConn.accept(this.raw, context, options)
    this.probe = false
  }

  /** The next line, `tooLong` for a refused overlong line, or `null` when the peer closed. */
  async readLine(): Promise<Framed | null> {
    for (;;) {
      const framed = this.framer.next()
      if (framed !== undefined) return framed
      if (this.pendingRead === undefined) {
        this.pendingProbe = this.probe
        const read = this.conn.read(this.probe ? this.buffer.subarray(0, 1) : this.buffer)
        // Handled by whoever awaits it; this only keeps an abandoned read from being unhandled.
        read.catch(() => undefined)
        this.pendingRead = read
      }
      const n = this.endsWithCR ? await this.lineEndOrQuiet(this.pendingRead) : await this.pendingRead
      if (n === "quiet") {
        this.framer.push(Uint8Array.of(LF))
        this.endsWithCR = false
        this.assumedLF = true
        continue
      }
      this.pendingRead = undefined
      if (n === null) return null
      this.probe = !this.pendingProbe || this.buffer[0] >= TELNET_BYTES
      let chunk = this.buffer.subarray(0, n)
      // The framer keeps `chunk` until it is consumed: a bigger buffer is a new one, never a reuse.
      if (n === READ_SIZE && this.buffer.length === READ_SIZE) this.buffer = new Uint8Array(BUSY_READ_SIZE)
      if (this.assumedLF) {
        this.assumedLF = false
        if (chunk[0] === LF) chunk = chunk.subarray(1)
      }
      if (chunk.length === 0) continue
      this.endsWithCR = chunk[chunk.length - 1] === CR
      this.framer.push(chunk)
    }
  }

  private async lineEndOrQuiet(read: Promise<number | null>): Promise<number | null | "quiet"> {
    let timer: ReturnType<typeof setTimeout> | undefined
    const quiet = new Promise<"quiet">((resolve) => (timer = setTimeout(() => resolve("quiet"), LONE_CR_WAIT_MS)))
    try {
      return await Promise.race([read, quiet])
    } finally {
      clearTimeout(timer)
    }
  }

  /** Queue `text` (already a formatted reply) behind earlier writes; resolves when it is sent. */
  write(text: string): Promise<void> {
    const bytes = encoder.encode(text)
    const next = this.writing.then(() => (this.closed ? undefined : writeAll(this.conn, bytes)))
    this.writing = next.catch(() => undefined)
    return next
  }

  /**
   * Queue the pieces of one reply behind earlier writes, writing each as it comes; writes queued
   * meanwhile wait until the last piece is sent, so nothing lands inside the reply.
   */
  writeStream(pieces: AsyncIterable<string>): Promise<void> {
    const next = this.writing.then(async () => {
      for await (const piece of pieces) {
        if (this.closed) return
        await writeAll(this.conn, encoder.encode(piece))
      }
    })
    this.writing = next.catch(() => undefined)
    return next
  }

  /**
   * Close after the replies written so far have left, with TLS's close_notify, waiting at most
   * `waitMs` (a client that stopped reading must not hold the session). A TLS write resolves once
   * node:tls holds the record, before it reaches the socket: closing at once could drop the last
   * reply (seen with `node:net` sockets under `--workers`, where OpenSSL's client lost the 221).
   */
  async closeAfterFlush(waitMs: number): Promise<void> {
    if (this.closed) return
    if (this.conn !== this.raw) {
      let timer: ReturnType<typeof setTimeout> | undefined
      const flushed = this.writing.then(() => this.conn.closeWrite()).catch(() => undefined)
      await Promise.race([flushed, new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs)))])
      clearTimeout(timer)
    }
    this.close()
  }

  /** Close the connection; pending reads and writes fail. Safe to call more than once. */
  close(): void {
    if (this.closed) return
    this.closed = true
    try {
      this.conn.close()
      if (this.conn !== this.raw) this.raw.close()
    } catch {
      // Already closed by the runtime.
    }
  }

  get isClosed(): boolean {
    return this.closed
  }
}
