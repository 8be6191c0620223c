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
import { closeQuietly } from "../net/_io.ts"

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

/** Own `conn` in the current scope: closed when the scope closes. */
export const scopedConn = (conn: Deno.Conn): Effect.Effect<Deno.Conn, never, Scope.Scope> =>
  Effect.acquireRelease(Effect.succeed(conn), (c) => Effect.sync(() => closeQuietly(c)))

/**
 * Accept the client's data connection on a passive listener. A connection from any other
 * address is closed and logged, and the wait goes on (pyftpdlib does the same: the intruder is
 * not the client's fault).
 */
export const acceptPassive = (
  listener: Deno.Listener,
  peerAddress: string,
  permitForeign: boolean,
  timeoutSeconds: number,
): Effect.Effect<Deno.Conn, DataConnectionError> =>
  Effect.gen(function* () {
    for (;;) {
      const conn = yield* Effect.tryPromise({
        try: () => listener.accept(),
        catch: (cause) => new DataConnectionError({ message: "Can't open data connection.", cause }),
      })
      const remote = plainAddress((conn.remoteAddr as Deno.NetAddr).hostname)
      if (permitForeign || remote === peerAddress) return conn
      closeQuietly(conn)
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

/** Connect to the client for active mode. */
export const connectActive = (
  host: string,
  port: number,
  timeoutSeconds: number,
): Effect.Effect<Deno.Conn, DataConnectionError> =>
  Effect.tryPromise({
    try: (signal) => Deno.connect({ hostname: host, port, transport: "tcp", signal }),
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
