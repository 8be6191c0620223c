/**
 * Passive ports: a lease on a listening port from the configured range, given back when the
 * lease's scope closes (the next PASV, the end of the transfer, or the end of the session).
 *
 * @module
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { DataConnectionError } from "../errors.ts"
import type { Listener, NativeTls, NetworkShape } from "../net/network.ts"
import { closeQuietly } from "../net/transport.ts"
import type { PassivePortEvent } from "../observability/metrics.ts"

/** Leases passive listeners; one per server, shared by its sessions. */
export interface PassivePorts {
  /**
   * Listen on `hostname` at a free port of the range (or any port when the range is used up);
   * with `tls`, the listener is a `Deno.TlsListener` whose connections start with a TLS handshake.
   */
  readonly lease: (
    hostname: string,
    tls?: NativeTls | null,
  ) => Effect.Effect<Listener, DataConnectionError, Scope.Scope>
}

const refused = (cause: unknown) =>
  new DataConnectionError({
    message: cause instanceof Deno.errors.NotCapable
      ? "Can't open passive port: the server lacks network permission for it."
      : "Can't open passive port.",
    cause,
  })

/**
 * Make the lease pool for `range` (inclusive) on `network`, or for OS-chosen ports when `range` is
 * `null`. Ports are tried from a random start (RFC 2577: passive ports should not be predictable).
 * With `tls`, the network must have native TLS listeners (`listenTls`). Every lease, release and
 * fallback to a port chosen by the system is told to `report` (the server's metrics).
 */
export const makePassivePorts = (
  network: NetworkShape,
  range: readonly [number, number] | null,
  report: (event: PassivePortEvent) => Effect.Effect<void> = () => Effect.void,
): PassivePorts => {
  const leased = new Set<number>()
  const listen = (hostname: string, port: number, tls: NativeTls | null): Listener | "busy" => {
    try {
      return tls === null ? network.listen(hostname, port) : network.listenTls!(hostname, port, tls)
    } catch (error) {
      if (error instanceof Deno.errors.AddrInUse) return "busy"
      throw error
    }
  }
  const pick = (hostname: string, tls: NativeTls | null): Effect.Effect<Listener, DataConnectionError> =>
    Effect.gen(function* () {
      if (range !== null) {
        const [from, to] = range
        const count = to - from + 1
        const start = Math.floor(Math.random() * count)
        for (let i = 0; i < count && leased.size < count; i++) {
          const port = from + ((start + i) % count)
          if (leased.has(port)) continue
          const listener = yield* Effect.try({ try: () => listen(hostname, port, tls), catch: refused })
          if (listener !== "busy") {
            leased.add(port)
            return listener
          }
        }
        yield* Effect.logWarning(
          `Can't find a free passive port in ${from}-${to}: using a port chosen by the OS.`,
        )
        yield* report("fallback")
      }
      const listener = yield* Effect.try({ try: () => listen(hostname, 0, tls), catch: refused })
      if (listener === "busy") return yield* Effect.fail(refused(undefined))
      return listener
    })
  return {
    lease: (hostname, tls = null) =>
      Effect.acquireRelease(
        Effect.tap(pick(hostname, tls), () => report("leased")),
        (listener) =>
          Effect.andThen(
            Effect.sync(() => {
              leased.delete(listener.addr.port)
              closeQuietly(listener)
            }),
            report("released"),
          ),
      ),
  }
}
