/**
 * The data channel: one owner of a data connection, from the PASV/EPSV or PORT/EPRT that prepares
 * it to the secured {@link Transport} a transfer moves bytes over. Every security check of a data
 * connection lives here:
 * - a passive connection must come from the control connection's address (theft, RFC 2577); behind a
 *   balancer, from the address its PROXY header names;
 * - an active connection may only go to the client's own address and to an unprivileged port
 *   (FTP bounce, RFC 2577), unless the server permits it;
 * - under PROT P the connection is TLS (RFC 4217), and with `requireSessionReuse` it must resume
 *   a TLS session (522 otherwise);
 * - no session holds more than {@link DATA_SOCKETS_PER_SESSION} data connections, the server no
 *   more than its limit, and each is closed on every path (transfer end, ABOR, timeout, refusal).
 *
 * @module
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import type * as tls from "node:tls"
import { DataConnectionError, type TlsHandshakeError } from "../errors.ts"
import { endpointsOf, plainAddress } from "../net/address.ts"
import type { Listener, NativeTls, NativeTlsTransport, NetworkShape } from "../net/network.ts"
import { type Cidr, type ProxyHeaderError, readProxyHeader } from "../net/proxy.ts"
import { handshakeNative, TlsConn } from "../net/tls.ts"
import { closeQuietly, type Transport, unfinishedHandshakes } from "../net/transport.ts"
import type { PassivePorts } from "./passive_ports.ts"

/** A data connection prepared by PASV/EPSV or PORT/EPRT, waiting for its transfer. Closing `scope` releases it. */
export type PendingData =
  | {
    readonly kind: "passive"
    readonly listener: Listener
    /** The listener speaks TLS (PROT P with native TLS): its connections need a handshake. */
    readonly tls: boolean
    readonly scope: Scope.Closeable
  }
  | { readonly kind: "active"; readonly conn: Transport; readonly scope: Scope.Closeable }

/** TLS for a PROT P data connection. */
export interface DataTls {
  /** The server's TLS context (for connections secured with `node:tls`). */
  readonly context: tls.SecureContext
  readonly handshakeTimeoutMs: number
  readonly requestClientCert: boolean
  /** Refuse (522) a connection that does not resume a TLS session (RFC 4217 10.2). */
  readonly requireSessionReuse: boolean
}

/** What opening a transfer's data connection needs to know. */
export interface OpenRules {
  /** The control connection's client address: a passive connection must come from it. */
  readonly client: string
  readonly permitForeignAddresses: boolean
  /** Seconds to wait for the client to connect to a passive port. */
  readonly acceptTimeout: number
  /** PROT P: the connection is secured with TLS; `null` under PROT C. */
  readonly tls: DataTls | null
  readonly sockets: DataSockets
  readonly owner: { dataSockets: number }
  /**
   * Behind a balancer (PROXY protocol): a connection from one of `trusted` starts with a header
   * naming the client, read within `timeoutMs`; `null` when the server reads no headers.
   */
  readonly proxy: { readonly trusted: ReadonlyArray<Cidr>; readonly timeoutMs: number } | null
}

/** Seconds to wait for the client to connect to a passive port (pyftpdlib's PassiveDTP.timeout). */
export const PASSIVE_ACCEPT_TIMEOUT = 30

/** Data connections one session may hold at once: its transfer's, and one being turned away. */
export const DATA_SOCKETS_PER_SESSION = 2

/**
 * The data connections of a server, counted from accept or connect until they are closed: no
 * session may hold more than {@link DATA_SOCKETS_PER_SESSION}, and the server no more than `max`.
 */
export class DataSockets {
  private open = 0

  constructor(private readonly max: number) {}

  /** Count one for `owner`; `false` (nothing counted) when that would pass a limit. */
  claim(owner: { dataSockets: number }): boolean {
    if (owner.dataSockets >= DATA_SOCKETS_PER_SESSION || this.open >= this.max) return false
    owner.dataSockets++
    this.open++
    return true
  }

  release(owner: { dataSockets: number }): void {
    owner.dataSockets--
    this.open--
  }
}

/**
 * Own a data connection in the current scope from the moment it exists: `open` hands it to
 * `hold` as soon as it has it (before any interruption can come between), and it is counted
 * against `sockets` and closed when the scope closes.
 */
const owned = <E>(
  sockets: DataSockets,
  owner: { dataSockets: number },
  open: (hold: (conn: Transport) => Transport) => Effect.Effect<Transport, E>,
): Effect.Effect<Transport, E | DataConnectionError, Scope.Scope> =>
  Effect.gen(function* () {
    let held: Transport | undefined
    let counted = false
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        closeQuietly(held)
        if (counted) sockets.release(owner)
      })
    )
    const conn = yield* open((conn) => {
      held = conn
      counted = sockets.claim(owner)
      return conn
    })
    if (!counted) return yield* new DataConnectionError({ message: "Too many data connections." })
    return conn
  })

/**
 * Accept the client's data connection on a passive listener. A connection from any other address
 * is closed and logged, and the wait goes on (pyftpdlib does the same: the intruder is not the
 * client's fault). The connection accepted belongs to the current scope.
 */
const accept = (
  listener: Listener,
  tlsListener: boolean,
  rules: OpenRules,
): Effect.Effect<Transport, DataConnectionError, Scope.Scope> =>
  Effect.gen(function* () {
    for (;;) {
      const scope = yield* Scope.make()
      const conn = yield* owned(rules.sockets, rules.owner, (hold) =>
        Effect.tryPromise({
          try: () =>
            listener.accept().then((conn) => {
              if (tlsListener) unfinishedHandshakes.add(conn)
              return hold(conn)
            }),
          catch: (cause) => new DataConnectionError({ message: "Can't open data connection.", cause }),
        })).pipe(Scope.provide(scope), Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause))))
      const client = yield* throughBalancer(conn, rules)
      if (client !== undefined && (rules.permitForeignAddresses || client.address === rules.client)) {
        // From here the caller's scope owns it.
        yield* Effect.addFinalizer((exit) => Scope.close(scope, exit))
        return client.conn
      }
      yield* Scope.close(scope, Exit.void)
      if (client !== undefined) {
        yield* Effect.logWarning(`Rejected data connection from foreign address ${client.address}.`)
      }
    }
  }).pipe(
    Effect.timeoutOrElse({
      duration: Duration.seconds(rules.acceptTimeout),
      orElse: () =>
        Effect.fail(
          new DataConnectionError({ message: "Data connection timed out.", timeoutSeconds: rules.acceptTimeout }),
        ),
    }),
  )

/**
 * The client a data connection comes from: its own address, or, from a trusted balancer, the one
 * its PROXY header names (and the connection with the header read); `undefined`, logged, for a
 * balancer's connection whose header is bad or late.
 */
const throughBalancer = (
  conn: Transport,
  rules: OpenRules,
): Effect.Effect<{ readonly conn: Transport; readonly address: string } | undefined> => {
  const source = plainAddress((conn.remoteAddr as Deno.NetAddr).hostname)
  const proxy = rules.proxy
  if (proxy === null || !proxy.trusted.some((range) => range.contains(source))) {
    return Effect.succeed({ conn, address: source })
  }
  return Effect.tryPromise({
    try: () => readProxyHeader(conn, proxy.timeoutMs),
    catch: (error) => error as ProxyHeaderError,
  }).pipe(
    Effect.map((proxied) => ({
      conn: proxied.conn,
      address: plainAddress((proxied.conn.remoteAddr as Deno.NetAddr).hostname),
    })),
    Effect.catch((error) =>
      Effect.as(Effect.logWarning(`Rejected data connection from ${source}: ${error.message}.`), undefined)
    ),
  )
}

/** PROT P on a passive port with native TLS: finish the handshake the listener started. */
const secureNative = (conn: Transport, timeoutMs: number): Effect.Effect<Transport, TlsHandshakeError> =>
  Effect.tryPromise({
    try: () => handshakeNative(conn as NativeTlsTransport, timeoutMs),
    catch: (error) => error as TlsHandshakeError,
  })

/**
 * PROT P over `node:tls`: run the TLS handshake on a data connection (the client may have started
 * it before the transfer command, as curl does; its hello simply waits in the socket). With
 * `requireSessionReuse`, a connection that does not resume a TLS session is refused with 522.
 */
const secureNodeTls = (
  raw: Transport,
  settings: DataTls,
): Effect.Effect<Transport, DataConnectionError | TlsHandshakeError, Scope.Scope> =>
  Effect.gen(function* () {
    const conn = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () =>
          TlsConn.accept(raw, settings.context, {
            timeoutMs: settings.handshakeTimeoutMs,
            requestCert: settings.requestClientCert,
          }),
        catch: (error) => error as TlsHandshakeError,
      }),
      (tls) => Effect.sync(() => tls.close()),
    )
    if (settings.requireSessionReuse && !conn.sessionReused) {
      const { remoteAddress, remotePort } = endpointsOf(raw)
      // Deno's TLS server (rustls under node:tls) resumes TLS 1.3 sessions only, so under TLS 1.2
      // even a client that offers its session gets a full handshake: say so, or the admin would blame the client.
      const why = conn.protocol === "TLSv1.2"
        ? "This server can resume TLS 1.3 sessions only: the client must use TLS 1.3, or requireSessionReuse be off."
        : "The client does not support TLS session resumption, or the connection came from someone else."
      yield* Effect.logWarning(
        `Refused PROT P data connection from ${remoteAddress}:${remotePort} (${conn.protocol}): it did not resume ` +
          `the TLS session of the control connection and requireSessionReuse is on. ${why}`,
      )
      return yield* new DataConnectionError({
        message: "Data connection must resume the TLS session of the control connection (RFC 4217 10.2).",
        code: 522,
      })
    }
    return conn
  })

/** Prepared data connections, and the transfer's secured connection. */
export const DataChannel = {
  /**
   * PASV/EPSV: lease a passive port on `hostname` (the address the client reached). With `tls`
   * (PROT P, native TLS allowed) the port speaks TLS from its first byte.
   */
  listen: (
    ports: PassivePorts,
    hostname: string,
    tls: NativeTls | null,
  ): Effect.Effect<Extract<PendingData, { readonly kind: "passive" }>, DataConnectionError> =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const listener = yield* Scope.provide(scope)(ports.lease(hostname, tls)).pipe(
        Effect.onError(() => Scope.close(scope, Exit.void)),
      )
      return { kind: "passive", listener, tls: tls !== null, scope } as const
    }),

  /** Why an active-mode target is refused (FTP bounce, RFC 2577), or `undefined` when it is allowed. */
  refusal: (
    host: string,
    port: number,
    client: string,
    options: { readonly permitForeignAddresses: boolean; readonly permitPrivilegedPorts: boolean },
  ): string | undefined => {
    if (!options.permitForeignAddresses && plainAddress(host) !== client) {
      return `Rejected data connection to foreign address ${host}:${port}.`
    }
    if (!options.permitPrivilegedPorts && port < 1024) return `PORT against the privileged port "${port}" refused.`
    return undefined
  },

  /** PORT/EPRT: connect to the client (its target checked with {@link DataChannel.refusal} first). */
  connect: (
    network: NetworkShape,
    sockets: DataSockets,
    owner: { dataSockets: number },
    host: string,
    port: number,
    timeoutSeconds: number,
  ): Effect.Effect<PendingData, DataConnectionError> =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const conn = yield* Scope.provide(scope)(
        owned(sockets, owner, (hold) =>
          Effect.tryPromise({
            try: (signal) => network.connect(host, port, signal).then(hold),
            catch: (cause) => new DataConnectionError({ message: "Can't connect to specified address.", cause }),
          }).pipe(
            Effect.timeoutOrElse({
              duration: Duration.seconds(timeoutSeconds),
              orElse: () =>
                Effect.fail(
                  new DataConnectionError({ message: "Can't connect to specified address.", timeoutSeconds }),
                ),
            }),
          )),
      ).pipe(Effect.onError(() => Scope.close(scope, Exit.void)))
      return { kind: "active", conn, scope } as const
    }),

  /**
   * Why `pending` can't serve a transfer at the current protection level, or `undefined`. A
   * passive port opened under PROT P with native TLS speaks only TLS, so after a PROT C the client
   * must ask for a new one; the other way round works (the TLS handshake then runs over the plain
   * connection).
   */
  unusable: (pending: PendingData, protP: boolean): string | undefined =>
    pending.kind === "passive" && pending.tls && !protP
      ? "The passive port was opened for PROT P: send PASV or EPSV again after PROT C."
      : undefined,

  /**
   * The transfer's data connection, ready: accepted from the client (passive) or the one
   * connected (active), checked, and secured with TLS under PROT P. It is closed with the scope.
   */
  open: (
    pending: PendingData,
    rules: OpenRules,
  ): Effect.Effect<Transport, DataConnectionError | TlsHandshakeError, Scope.Scope> =>
    Effect.gen(function* () {
      if (pending.kind === "active") {
        return rules.tls === null ? pending.conn : yield* secureNodeTls(pending.conn, rules.tls)
      }
      const conn = yield* accept(pending.listener, pending.tls, rules)
      if (pending.tls) return yield* secureNative(conn, rules.tls?.handshakeTimeoutMs ?? 30_000)
      return rules.tls === null ? conn : yield* secureNodeTls(conn, rules.tls)
    }),

  /** Give up a prepared connection: its passive port or its socket. */
  release: (pending: PendingData): Effect.Effect<void> => Scope.close(pending.scope, Exit.void),
}
