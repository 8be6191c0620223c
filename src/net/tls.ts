/**
 * TLS for FTPS (RFC 4217): a server-side TLS session over any {@link Transport}, exposed as a
 * {@link Transport} itself.
 *
 * Deno has no server-side `startTls`, so upgrading a connection that is already open (AUTH TLS on
 * a control connection, implicit FTPS, active PROT P data connections) runs `node:tls`
 * (`TLSSocket` in server mode) over a Duplex of the connection ({@link TlsConn}); it also lets the
 * server see whether a data connection resumed a TLS session (`isSessionReused()`).
 *
 * PROT P passive data connections are faster on a `Deno.listenTls` port instead, whose
 * connections are TLS from their first byte and run in native code ({@link nativeDataTls},
 * {@link handshakeNative}); the settings that `Deno.listenTls` can't honour keep them on `node:tls`.
 *
 * @module
 */
import { createPrivateKey, X509Certificate } from "node:crypto"
import { Duplex } from "node:stream"
import * as tls from "node:tls"
import { TlsHandshakeError } from "../errors.ts"
import { libc } from "../sys/libc.ts"
import type { NativeTls, NativeTlsTransport } from "./network.ts"
import { ChunkQueue } from "./_chunks.ts"
import { closeQuietly, type Transport, unfinishedHandshakes, writeAll } from "./transport.ts"

/** TLS settings of a server. */
export interface TlsSettings {
  /** PEM certificate, or a chain (leaf first). */
  readonly cert: string
  /** PEM private key of the certificate. */
  readonly key: string
  /**
   * Lowest protocol version accepted (default TLS 1.2). `TLSv1.3` moves PROT P passive data
   * connections from Deno's native TLS to the slower `node:tls` (see {@link nativeDataTls}).
   */
  readonly minVersion?: "TLSv1.2" | "TLSv1.3"
  /**
   * Ask clients for a certificate (not required to present one). Moves PROT P passive data
   * connections to the slower `node:tls` too.
   */
  readonly requestClientCert?: boolean
  /** PEM CA certificates that client certificates are checked against. */
  readonly ca?: string
}

const pemBlock = (text: string, label: string): string | undefined =>
  new RegExp(`-----BEGIN (${label})-----[\\s\\S]+?-----END \\1-----`).exec(text)?.[0]

const parsed = <A>(what: string, parse: () => A): A => {
  try {
    return parse()
  } catch (error) {
    throw new Error(`${what} can't be parsed: ${(error as Error).message}`)
  }
}

/**
 * Deno's `createSecureContext` checks nothing, so a bad pair would only fail each handshake (as
 * "unsupported protocol"): parse both and match them here. A file holding both (pyftpdlib's
 * certfile without keyfile) is fine: each side takes its own block.
 */
const checkPair = (settings: TlsSettings): void => {
  const cert = pemBlock(settings.cert, "CERTIFICATE")
  if (cert === undefined) throw new Error("the certificate is not in PEM form (no BEGIN CERTIFICATE block)")
  const key = pemBlock(settings.key, "(?:RSA |EC )?PRIVATE KEY")
  if (key === undefined) {
    throw new Error(
      settings.key.includes("ENCRYPTED PRIVATE KEY")
        ? "the private key is encrypted: decrypt it first (openssl pkey -in key.pem -out plain.pem)"
        : "the key is not a PEM private key (no BEGIN PRIVATE KEY block)",
    )
  }
  const x509 = parsed("the certificate", () => new X509Certificate(cert))
  const privateKey = parsed("the private key", () => createPrivateKey(key))
  if (!x509.checkPrivateKey(privateKey)) throw new Error("the private key does not match the certificate")
}

/**
 * A secure context shared by every TLS session of a server (control and data alike). Throws if
 * the certificate or the key can't be parsed, or if they do not belong together.
 */
export const makeSecureContext = (settings: TlsSettings): tls.SecureContext => {
  checkPair(settings)
  return tls.createSecureContext({
    cert: settings.cert,
    key: settings.key,
    minVersion: settings.minVersion ?? "TLSv1.2",
    ...(settings.ca === undefined ? {} : { ca: settings.ca }),
  })
}

/**
 * The settings for native TLS on passive data connections, or `null` when a setting needs
 * `node:tls` there: `Deno.listenTls` has no minimum version (it takes TLS 1.2 and 1.3), does not
 * ask for client certificates, does not say whether a session was resumed
 * (`requireSessionReuse`), and keeps its own session cache, so a data connection can't resume
 * the control connection's TLS session on it. Without FFI (`--allow-ffi`) it is `null` too: a
 * connection whose handshake never finishes can't be closed otherwise (see `closeQuietly`).
 */
export const nativeDataTls = (settings: TlsSettings, requireSessionReuse: boolean): NativeTls | null => {
  if (requireSessionReuse || settings.requestClientCert === true || settings.minVersion === "TLSv1.3") return null
  // A native TLS connection whose handshake never finishes can only be closed through FFI.
  if (libc() === null) return null
  // Each side takes its own blocks: a file holding both (pyftpdlib's certfile alone) is fine.
  const chain = settings.cert.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)
  const key = pemBlock(settings.key, "(?:RSA |EC )?PRIVATE KEY")
  if (chain === null || key === undefined) return null
  return { cert: chain.join("\n") + "\n", key: key + "\n" }
}

/**
 * Finish the server side of a handshake on a connection accepted by `Deno.listenTls`, within
 * `timeoutMs`. Fails with {@link TlsHandshakeError} (and closes `conn`) on an error or a timeout.
 */
export const handshakeNative = async (conn: NativeTlsTransport, timeoutMs: number): Promise<Transport> => {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new TlsHandshakeError({ message: `TLS handshake timed out after ${timeoutMs} ms` })),
      timeoutMs,
    )
  })
  try {
    await Promise.race([
      conn.handshake().catch((error: Error) => {
        throw new TlsHandshakeError({ message: `TLS handshake failed: ${error.message}`, cause: error })
      }),
      timeout,
    ])
    unfinishedHandshakes.delete(conn)
    return conn
  } catch (error) {
    closeQuietly(conn)
    throw error
  } finally {
    clearTimeout(timer)
  }
}

const HIGH_WATER = 1 << 20
const LOW_WATER = 256 << 10
const RAW_READ_SIZE = 64 << 10

/** Holds back reads from the TCP connection while the decrypted bytes wait to be read. */
class ReadGate {
  private waiting: (() => void) | undefined
  private closed = false

  close(): void {
    this.closed = true
  }

  open(): void {
    this.closed = false
    const waiting = this.waiting
    this.waiting = undefined
    waiting?.()
  }

  wait(): Promise<void> | undefined {
    return this.closed ? new Promise((resolve) => (this.waiting = resolve)) : undefined
  }
}

/**
 * `raw` as the Duplex node:tls reads ciphertext from and writes it to. Backpressure is applied
 * here, by not reading `raw` while the gate is closed, rather than by pausing the TLSSocket: on
 * Deno a paused TLSSocket still takes in ciphertext, and when the peer's FIN arrives it is
 * destroyed with the plaintext it held back, so an upload lost its tail while the transfer still
 * looked complete. `ended` hears of the peer's FIN or a read error first (see {@link TlsConn.accept}).
 */
const rawDuplex = (raw: Transport, gate: ReadGate, ended: (error?: unknown) => void): Duplex => {
  let reading = false
  const duplex: Duplex = new Duplex({
    allowHalfOpen: true,
    read() {
      if (reading) return
      reading = true
      void (async () => {
        try {
          await gate.wait()
          const chunk = new Uint8Array(RAW_READ_SIZE)
          const n = await raw.read(chunk)
          reading = false
          if (n === null) ended()
          duplex.push(n === null ? null : chunk.subarray(0, n))
        } catch (error) {
          ended(error)
          duplex.destroy(error as Error)
        }
      })()
    },
    write(chunk: Uint8Array, _encoding, done) {
      writeAll(raw, chunk).then(() => done(), done)
    },
    final(done) {
      raw.closeWrite().then(() => done(), () => done())
    },
  })
  return duplex
}

/** A server-side TLS session (node:tls) over a {@link Transport}. */
export class TlsConn implements Transport {
  private readonly queue = new ChunkQueue()

  private constructor(
    readonly socket: tls.TLSSocket,
    private readonly raw: Transport,
    private readonly gate: ReadGate,
  ) {
    socket.on("data", (chunk: Uint8Array) => {
      this.queue.push(chunk)
      if (this.queue.queued > HIGH_WATER) gate.close()
    })
    socket.on("end", () => this.queue.end())
    socket.on("close", () => this.queue.end())
    socket.on("error", (error) => this.queue.fail(error))
  }

  /**
   * Run the server side of a TLS handshake on `raw`. Fails with {@link TlsHandshakeError} on a
   * handshake error or after `timeoutMs`; `raw` is closed then.
   */
  static accept(
    raw: Transport,
    context: tls.SecureContext,
    options: { readonly timeoutMs: number; readonly requestCert?: boolean },
  ): Promise<TlsConn> {
    const gate = new ReadGate()
    // node:tls on Deno does not report a peer that leaves mid-handshake: hear it from the TCP side.
    let peerLeft = (_error?: unknown) => {}
    const socket = new tls.TLSSocket(rawDuplex(raw, gate, (error) => peerLeft(error)), {
      isServer: true,
      secureContext: context,
      requestCert: options.requestCert ?? false,
      rejectUnauthorized: false,
    })
    return new Promise<TlsConn>((resolve, reject) => {
      const fail = (reason: string) => {
        clearTimeout(timer)
        socket.destroy()
        try {
          raw.close()
        } catch {
          // Closed already.
        }
        reject(new TlsHandshakeError({ message: reason }))
      }
      const timer = setTimeout(() => fail(`TLS handshake timed out after ${options.timeoutMs} ms`), options.timeoutMs)
      const failed = (error: Error) => fail(`TLS handshake failed: ${error.message}`)
      const closed = () => fail("TLS handshake failed: connection closed")
      peerLeft = (error) => (error === undefined ? closed() : failed(error as Error))
      socket.once("secure", () => {
        clearTimeout(timer)
        socket.off("error", failed)
        socket.off("close", closed)
        const conn = new TlsConn(socket, raw, gate)
        // From here the TLS layer reports the end of the stream (after the data before it); a
        // TCP error is recorded in case the TLS layer does not pass it on.
        peerLeft = (error) => {
          if (error !== undefined) conn.queue.fail(error)
        }
        resolve(conn)
      })
      socket.once("error", failed)
      socket.once("close", closed)
    })
  }

  get remoteAddr(): Deno.Addr {
    return this.raw.remoteAddr
  }

  get localAddr(): Deno.Addr {
    return this.raw.localAddr
  }

  /** Whether this connection resumed an earlier TLS session (RFC 4217 10.2: data connections should). */
  get sessionReused(): boolean {
    return this.socket.isSessionReused()
  }

  /** The negotiated protocol, e.g. `TLSv1.3`. */
  get protocol(): string {
    return this.socket.getProtocol() ?? "unknown"
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    const n = await this.queue.read(buffer)
    if (this.queue.queued < LOW_WATER) this.gate.open()
    return n
  }

  write(data: Uint8Array): Promise<number> {
    if (this.queue.failed !== undefined) return Promise.reject(this.queue.failed)
    if (this.socket.destroyed || this.socket.writableEnded) return Promise.reject(new Deno.errors.BrokenPipe())
    // The socket keeps a reference until it is written, so a caller's reused buffer must be copied.
    if (this.socket.write(data.slice())) return Promise.resolve(data.length)
    return new Promise((resolve, reject) => {
      const done = () => {
        this.socket.off("drain", done)
        this.socket.off("close", done)
        if (this.socket.destroyed && this.socket.writableLength > 0) reject(new Deno.errors.BrokenPipe())
        else resolve(data.length)
      }
      this.socket.on("drain", done)
      this.socket.on("close", done)
    })
  }

  /** Send TLS close_notify and end our direction, after everything written has been sent. */
  closeWrite(): Promise<void> {
    if (this.socket.destroyed || this.socket.writableEnded) return Promise.resolve()
    return new Promise((resolve) => this.socket.end(() => resolve()))
  }

  close(): void {
    this.socket.destroy()
    try {
      this.raw.close()
    } catch {
      // Closed already.
    }
  }
}
