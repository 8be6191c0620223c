/**
 * The data connection of a session: set up by PASV/EPSV (a leased listener) or PORT/EPRT (an
 * outgoing connection), taken by the next transfer. Security checks live here:
 * - a passive connection must come from the control connection's address (theft, RFC 2577);
 * - an active connection may only go to the client's own address and to an unprivileged port
 *   (FTP bounce, RFC 2577), unless the server permits it.
 *
 * @module
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { DataConnectionError } from "../errors.ts"
import { plainAddress } from "../protocol/address.ts"
import { closeQuietly, unfinishedHandshakes } from "../net/_io.ts"

/** A data connection waiting for its transfer. Closing `scope` releases it (port, socket). */
export type DataSetup =
  | {
    readonly kind: "passive"
    readonly listener: Deno.Listener
    /** The listener is a `Deno.TlsListener` (PROT P with native TLS): its connections are `Deno.TlsConn`s. */
    readonly tls: boolean
    readonly scope: Scope.Closeable
  }
  | { readonly kind: "active"; readonly conn: Deno.Conn; readonly scope: Scope.Closeable }

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

const tooMany = () => new DataConnectionError({ message: "Too many data connections." })

/**
 * Own a data connection in the current scope from the moment it exists: `open` hands it to
 * `hold` as soon as it has it (before any interruption can come between), and it is counted
 * against `sockets` and closed when the scope closes.
 */
export const ownedConn = <E>(
  sockets: DataSockets,
  owner: { dataSockets: number },
  open: (hold: (conn: Deno.Conn) => Deno.Conn) => Effect.Effect<Deno.Conn, E>,
): Effect.Effect<Deno.Conn, E | DataConnectionError, Scope.Scope> =>
  Effect.gen(function* () {
    let held: Deno.Conn | undefined
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
    if (!counted) return yield* tooMany()
    return conn
  })

/**
 * Accept the client's data connection on a passive listener (`tls`: a `Deno.listenTls` one). A
 * connection from any other address is closed and logged, and the wait goes on (pyftpdlib does
 * the same: the intruder is not the client's fault). The connection accepted belongs to the
 * current scope.
 */
export const acceptPassive = (
  listener: Deno.Listener,
  tls: boolean,
  peerAddress: string,
  permitForeign: boolean,
  timeoutSeconds: number,
  sockets: DataSockets,
  owner: { dataSockets: number },
): Effect.Effect<Deno.Conn, DataConnectionError, Scope.Scope> =>
  Effect.gen(function* () {
    for (;;) {
      const scope = yield* Scope.make()
      const conn = yield* ownedConn(sockets, owner, (hold) =>
        Effect.tryPromise({
          try: () =>
            listener.accept().then((conn) => {
              if (tls) unfinishedHandshakes.add(conn)
              return hold(conn)
            }),
          catch: (cause) => new DataConnectionError({ message: "Can't open data connection.", cause }),
        })).pipe(Scope.provide(scope), Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause))))
      const remote = plainAddress((conn.remoteAddr as Deno.NetAddr).hostname)
      if (permitForeign || remote === peerAddress) {
        // From here the caller's scope owns it.
        yield* Effect.addFinalizer((exit) => Scope.close(scope, exit))
        return conn
      }
      yield* Scope.close(scope, Exit.void)
      yield* Effect.logWarning(`Rejected data connection from foreign address ${remote}.`)
    }
  }).pipe(
    Effect.timeoutOrElse({
      duration: Duration.seconds(timeoutSeconds),
      orElse: () => Effect.fail(new DataConnectionError({ message: "Data connection timed out.", timeoutSeconds })),
    }),
  )

/** Why an active-mode target is refused, or `undefined` when it is allowed. */
export const activeTargetRefusal = (
  host: string,
  port: number,
  peerAddress: string,
  options: { readonly permitForeignAddresses: boolean; readonly permitPrivilegedPorts: boolean },
): string | undefined => {
  if (!options.permitForeignAddresses && plainAddress(host) !== peerAddress) {
    return `Rejected data connection to foreign address ${host}:${port}.`
  }
  if (!options.permitPrivilegedPorts && port < 1024) {
    return `PORT against the privileged port "${port}" refused.`
  }
  return undefined
}

/** Connect to the client for active mode; `hold` gets the connection the moment it exists (see {@link ownedConn}). */
export const connectActive = (
  host: string,
  port: number,
  timeoutSeconds: number,
  hold: (conn: Deno.Conn) => Deno.Conn,
): Effect.Effect<Deno.Conn, DataConnectionError> =>
  Effect.tryPromise({
    try: (signal) => Deno.connect({ hostname: host, port, transport: "tcp", signal }).then(hold),
    catch: (cause) => new DataConnectionError({ message: "Can't connect to specified address.", cause }),
  }).pipe(
    Effect.timeoutOrElse({
      duration: Duration.seconds(timeoutSeconds),
      orElse: () =>
        Effect.fail(new DataConnectionError({ message: "Can't connect to specified address.", timeoutSeconds })),
    }),
  )

/** Close a setup's scope (its port lease or socket). */
export const releaseSetup = (setup: DataSetup): Effect.Effect<void> => Scope.close(setup.scope, Exit.void)
