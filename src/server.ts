/**
 * `FtpServer`: listen, admit connections within `maxCons`/`maxConsPerIp`, and run one session
 * fiber per connection.
 *
 * Two ways to stop. `RunningServer.close(seconds)` is graceful: it stops accepting, closes idle
 * sessions with 421, lets running transfers end (226, then 421), and cuts what is left after the
 * deadline. `closeAll()`, and closing the server's scope (interruption, a `Layer` being released),
 * interrupts every session at once: each replies 421, closes its data connection and files (a cut
 * upload fires `onIncompleteFileReceived`), and gives back its passive port.
 *
 * Under `runMain`, every server (`serve`, `layer` and `make` alike) registers
 * `close(shutdownGrace)` with {@link GracefulShutdown}: the first SIGINT/SIGTERM runs it, then the
 * program is interrupted; a second signal interrupts at once. A layer released any other way gets
 * no grace, since a finalizer cannot be cut short by a second signal: an application that wants
 * one calls `RunningServer.close` before releasing the layer.
 *
 * @module
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { Authorizer } from "./auth/authorizer.ts"
import { BANNED_TEXT, Bans, type BansShape } from "./bans.ts"
import { DataSockets } from "./data/data_channel.ts"
import { makePassivePorts } from "./data/passive_ports.ts"
import { Filesystem } from "./fs/filesystem.ts"
import { Hooks } from "./hooks.ts"
import { makeSecureContext, nativeDataTls } from "./net/tls.ts"
import { type ResolvedOptions, resolveOptions, type ServerOptions } from "./options.ts"
import { plainAddress } from "./protocol/address.ts"
import { formatReply } from "./protocol/reply.ts"
import { GracefulShutdown } from "./runtime.ts"
import { builtinCommands } from "./session/commands.ts"
import { runSession, type ServerContext, SHUTTING_DOWN } from "./session/session.ts"
import { closeQuietly } from "./net/_io.ts"

/**
 * The server could not start: a bad option, a port in use, or a missing Deno permission.
 *
 * @example
 * ```ts
 * import { FtpServerError } from "@ftpd/server"
 * console.log(new FtpServerError({ message: "port 21 in use" }).message)
 * ```
 */
export class FtpServerError extends Data.Error<{ readonly message: string; readonly cause?: unknown }> {
  /** Discriminator for `Effect.catchTag`. */
  readonly _tag = "FtpServerError" as const
}

/** A listening server. */
export interface RunningServerShape {
  /** Where the control connection listens (the real port when `port` was 0). */
  readonly address: { readonly hostname: string; readonly port: number }
  /** Where the implicit FTPS listener is, if there is one. */
  readonly implicitTlsAddress: { readonly hostname: string; readonly port: number } | null
  /** Sessions open right now. */
  readonly connections: () => number
  /** The ban list in use: the `Bans` service provided, or the in-memory one built from the options. */
  readonly bans: BansShape
  /**
   * Stop gracefully: close the listeners (new connections are refused), close idle sessions with
   * 421, let sessions with a transfer running finish it (then 421), and after `deadlineSeconds`
   * (default: the `shutdownGrace` option; 0: at once) interrupt whatever is left, as
   * {@link closeAll}. Completes when every session is gone. Calling it again is harmless.
   */
  readonly close: (deadlineSeconds?: number) => Effect.Effect<void>
  /** Close the listeners and interrupt every session now; completes when every session is gone. */
  readonly closeAll: () => Effect.Effect<void>
}

/**
 * The running server, provided by {@link FtpServer.layer} so that other layers of an application
 * can read its address and its number of sessions.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RunningServer } from "@ftpd/server"
 * const report = Effect.gen(function* () {
 *   const server = yield* RunningServer
 *   yield* Effect.log(`${server.connections()} sessions on port ${server.address.port}`)
 * })
 * ```
 */
export const RunningServer: Context.Service<RunningServer, RunningServerShape> = Context.Service<
  RunningServer,
  RunningServerShape
>("@ftpd/server/RunningServer")
/** The running server's shape. */
export type RunningServer = RunningServerShape

const hostPort = (
  hostname: string,
  port: number,
) => (hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`)

const listen = (options: ResolvedOptions) =>
  Effect.try({
    try: () => Deno.listen({ hostname: options.host, port: options.port, transport: "tcp" }),
    catch: (cause) =>
      new FtpServerError({
        message: cause instanceof Deno.errors.NotCapable
          ? `no permission to listen on ${hostPort(options.host, options.port)} (grant --allow-net)`
          : cause instanceof Deno.errors.AddrInUse
          ? `${hostPort(options.host, options.port)} is already in use`
          : `can't listen on ${hostPort(options.host, options.port)}: ${String(cause)}`,
        cause,
      }),
  })

const scopedListener = (options: ResolvedOptions, port: number) =>
  Effect.acquireRelease(listen({ ...options, port }), (l) =>
    Effect.sync(() => {
      closeQuietly(l)
    }))

const encoder = new TextEncoder()

/** Tell a connection over the limits why, then close it, without holding up the accept loop. */
const refuse = (conn: Deno.Conn, text: string) => {
  conn.write(encoder.encode(formatReply(421, text))).catch(() => undefined).finally(() => closeQuietly(conn))
}

const make = (
  options: ServerOptions = {},
): Effect.Effect<RunningServer, FtpServerError, Authorizer | Filesystem | Scope.Scope> =>
  Effect.gen(function* () {
    const resolved = yield* Effect.try({
      try: () => resolveOptions(options),
      catch: (cause) => new FtpServerError({ message: (cause as Error).message, cause }),
    })
    // A bad certificate or key fails here, at startup, not at the first AUTH TLS.
    const secureContext = resolved.tls === null ? null : yield* Effect.try({
      try: () => makeSecureContext(resolved.tls!),
      catch: (cause) =>
        new FtpServerError({ message: `bad TLS certificate or key: ${(cause as Error).message}`, cause }),
    })
    const auth = yield* Authorizer
    const fs = yield* Filesystem
    const hooks = yield* Hooks
    const bans = Option.getOrElse(yield* Effect.serviceOption(Bans), () =>
      Bans.make({
        banAfterFailures: resolved.banAfterFailures,
        banWindow: resolved.banWindow,
        banDuration: resolved.banDuration,
      }))
    const hookFibers = yield* FiberSet.make<void, never>()
    const listener = yield* scopedListener(resolved, resolved.port)
    const implicitListener = resolved.implicitTlsPort === null
      ? undefined
      : yield* scopedListener(resolved, resolved.implicitTlsPort)
    const services = yield* Effect.context<never>()
    const sessions = yield* FiberSet.make<void, never>()
    const acceptors = yield* FiberSet.make<void, never>()
    let closing = false
    const context: ServerContext = {
      options: resolved,
      tls: secureContext,
      dataTls: resolved.tls === null ? null : nativeDataTls(resolved.tls, resolved.requireSessionReuse),
      fs,
      auth,
      hooks,
      passivePorts: makePassivePorts(resolved.passivePorts),
      // Each session holds at most two; twice the sessions allowed is room enough for all.
      dataSockets: new DataSockets(resolved.maxCons > 0 ? 2 * resolved.maxCons : Infinity),
      commands: builtinCommands,
      sessions: new Set(),
      userSessions: new Map(),
      bans,
      closing: () => closing,
      runHook: (hook) =>
        hook === undefined
          ? Effect.void
          : FiberSet.run(hookFibers, Effect.catchCause(hook, (cause) => Effect.logError("A hook failed", cause))).pipe(
            Effect.asVoid,
          ),
    }
    const address = listener.addr as Deno.NetAddr
    const range = resolved.passivePorts === null ? "None" : `${resolved.passivePorts[0]}-${resolved.passivePorts[1]}`
    yield* Effect.logInfo(`>>> starting FTP server on ${hostPort(address.hostname, address.port)}, pid=${Deno.pid} <<<`)
    yield* Effect.logInfo("concurrency model: async (one Effect fiber per session)")
    yield* Effect.logInfo(`masquerade (NAT) address: ${resolved.masqueradeAddress ?? "None"}`)
    yield* Effect.logInfo(`passive ports: ${range}`)
    yield* Effect.logInfo(`filesystem: ${fs.description ?? "custom"}`)
    if (secureContext === null) yield* Effect.logInfo("TLS: off")
    else {
      const implicitAt = implicitListener === undefined
        ? "no implicit listener"
        : `implicit TLS on ${hostPort(address.hostname, (implicitListener.addr as Deno.NetAddr).port)}`
      const yesNo = (on: boolean) => (on ? "yes" : "no")
      yield* Effect.logInfo(
        `TLS: explicit (AUTH TLS) on the control port, ${implicitAt}; minimum ${
          resolved.tls!.minVersion ?? "TLSv1.2"
        }; control required: ${yesNo(resolved.tlsControlRequired)}; data required: ${
          yesNo(resolved.tlsDataRequired)
        }; session reuse required: ${yesNo(resolved.requireSessionReuse)}; passive PROT P data: ${
          context.dataTls === null ? "node:tls" : "native TLS"
        }`,
      )
    }

    let total = 0
    const perIp = new Map<string, number>()
    const release = (ip: string) =>
      Effect.sync(() => {
        total--
        const left = (perIp.get(ip) ?? 1) - 1
        if (left === 0) perIp.delete(ip)
        else perIp.set(ip, left)
      })
    /**
     * Ban check, then limits, then a session fiber. A custom ban list may be slow: a connection
     * waiting on it when the server stops is closed, not leaked.
     */
    const admit = (conn: Deno.Conn, implicitTls: boolean) =>
      Effect.gen(function* () {
        const ip = plainAddress((conn.remoteAddr as Deno.NetAddr).hostname)
        // Checked first, so that a banned address costs no session, no slot and no TLS handshake.
        if (yield* bans.isBanned(ip)) {
          yield* Effect.logWarning(`${ip} refused: banned.`)
          return refuse(conn, BANNED_TEXT)
        }
        if (resolved.maxCons > 0 && total >= resolved.maxCons) {
          yield* Effect.logWarning(`${ip} refused: too many connections (${total}).`)
          return refuse(conn, "Too many connections. Service temporarily unavailable.")
        }
        const fromIp = perIp.get(ip) ?? 0
        if (resolved.maxConsPerIp > 0 && fromIp >= resolved.maxConsPerIp) {
          yield* Effect.logWarning(`${ip} refused: too many connections from this address (${fromIp}).`)
          return refuse(conn, "Too many connections from the same IP address.")
        }
        // Accepted just before the listeners closed, or held up by a slow ban list.
        if (closing) return refuse(conn, SHUTTING_DOWN)
        total++
        perIp.set(ip, fromIp + 1)
        yield* FiberSet.run(
          sessions,
          runSession(context, conn, implicitTls).pipe(
            Effect.catchCause((cause) => Effect.logError("Session failed", cause)),
            Effect.ensuring(release(ip)),
          ),
        )
      }).pipe(Effect.onInterrupt(() => Effect.sync(() => closeQuietly(conn))))
    const acceptLoop = (from: Deno.Listener, implicitTls: boolean) =>
      Effect.gen(function* () {
        for (;;) {
          const accepted = yield* Effect.result(Effect.tryPromise(() => from.accept()))
          if (accepted._tag === "Success") {
            yield* admit(accepted.success, implicitTls)
            continue
          }
          const cause = accepted.failure.cause
          if (cause instanceof Deno.errors.BadResource || cause instanceof Deno.errors.Interrupted) return
          // Out of file descriptors and the like: keep serving the sessions we have, retry soon.
          yield* Effect.logError(`accept failed: ${String(cause)}`)
          yield* Effect.sleep("100 millis")
        }
      })
    const sweptTimeouts = [resolved.timeout, resolved.loginTimeout].filter((seconds) => seconds > 0)
    if (sweptTimeouts.length > 0) {
      const period = Math.min(1000, Math.max(50, Math.min(...sweptTimeouts) * 100))
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          const sweep = setInterval(() => {
            const now = Date.now()
            for (const session of context.sessions) session.checkIdle(now)
          }, period)
          Deno.unrefTimer(sweep)
          return sweep
        }),
        (sweep) => Effect.sync(() => clearInterval(sweep)),
      )
    }
    yield* FiberSet.run(acceptors, acceptLoop(listener, false))
    if (implicitListener !== undefined) yield* FiberSet.run(acceptors, acceptLoop(implicitListener, true))
    yield* Effect.addFinalizer(() =>
      Effect.logInfo(`>>> shutting down FTP server (${total} active sessions), pid=${Deno.pid} <<<`)
    )
    /** Refuse new connections: a closed listener makes the kernel refuse them, and its accept loop ends. */
    const stopAccepting = () => {
      closing = true
      for (const from of [listener, implicitListener]) {
        closeQuietly(from)
      }
    }
    const closeAll = () =>
      Effect.suspend(() => {
        stopAccepting()
        return Effect.andThen(FiberSet.clear(acceptors), FiberSet.clear(sessions))
      })
    const close = (deadlineSeconds = resolved.shutdownGrace) =>
      Effect.gen(function* () {
        const first = !closing
        stopAccepting()
        for (const session of context.sessions) session.drain()
        if (first) {
          // Through the server's logger, whoever calls close.
          yield* Effect.logInfo(
            `>>> closing FTP server: ${total} active sessions may finish within ${deadlineSeconds} s, pid=${Deno.pid} <<<`,
          ).pipe(Effect.provideContext(services))
        }
        if (deadlineSeconds > 0) {
          yield* FiberSet.awaitEmpty(sessions).pipe(Effect.timeoutOption(Duration.seconds(deadlineSeconds)))
        }
        yield* closeAll()
      })
    yield* (yield* GracefulShutdown).onSignal(close())
    return {
      address: { hostname: address.hostname, port: address.port },
      implicitTlsAddress: implicitListener === undefined ? null : {
        hostname: address.hostname,
        port: (implicitListener.addr as Deno.NetAddr).port,
      },
      connections: () => total,
      bans,
      close,
      closeAll,
    }
  })

/**
 * The FTP server. Each form needs an {@link Authorizer} and a {@link Filesystem}; {@link Hooks}
 * are optional.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { DummyAuthorizer, FtpServer, LocalFilesystem } from "@ftpd/server"
 *
 * const users = DummyAuthorizer.layer((a) => a.addUser("user", "12345", Deno.cwd(), { perm: "elradfmwMT" }))
 * const server = FtpServer.layer({ host: "127.0.0.1", port: 2121 })
 * Layer.launch(server.pipe(Layer.provide([users, LocalFilesystem.layer]))).pipe(Effect.runFork)
 * ```
 */
export const FtpServer: {
  /** Listen and serve in the current scope; returns the bound address. */
  readonly make: (
    options?: ServerOptions,
  ) => Effect.Effect<RunningServer, FtpServerError, Authorizer | Filesystem | Scope.Scope>
  /**
   * Listen and serve until interrupted. Under {@link runMain}, the first SIGINT/SIGTERM closes the
   * server gracefully (`shutdownGrace`) before the program is interrupted.
   */
  readonly serve: (options?: ServerOptions) => Effect.Effect<never, FtpServerError, Authorizer | Filesystem>
  /** A layer that serves for as long as it is in use, and provides the {@link RunningServer}. */
  readonly layer: (options?: ServerOptions) => Layer.Layer<RunningServer, FtpServerError, Authorizer | Filesystem>
} = {
  make,
  serve: (options) => Effect.scoped(Effect.andThen(make(options), Effect.never)),
  layer: (options) => Layer.effect(RunningServer, make(options)),
}
