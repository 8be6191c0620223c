/**
 * `FtpServer`: listen, admit connections (bans, then `Admission`'s limits), and run one session
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
import { Admission, makeAdmission } from "./admission.ts"
import { Authorizer } from "./auth/authorizer.ts"
import { BANNED_TEXT, Bans, type BansShape } from "./bans.ts"
import { DataSockets } from "./data/channel.ts"
import { makePassivePorts } from "./data/passive_ports.ts"
import { Bandwidth, SharedBuckets } from "./data/throttle.ts"
import { capabilitiesOf, Filesystem } from "./fs/filesystem.ts"
import { Hooks } from "./hooks.ts"
import { startBanner, workerNote } from "./log.ts"
import { hostPort, plainAddress } from "./net/address.ts"
import { type Listener, Network, type NetworkShape } from "./net/network.ts"
import { type ProxyHeader, type ProxyHeaderError, readProxyHeader } from "./net/proxy.ts"
import { makeSecureContext, nativeDataTls } from "./net/tls.ts"
import { closeQuietly, type Transport } from "./net/transport.ts"
import { actionHooks, serverEvents } from "./observability/server_events.ts"
import { type ResolvedOptions, resolveOptions, type ServerOptions } from "./options.ts"
import { MLSX_FACTS, PORTABLE_MLSX_FACTS } from "./protocol/listing.ts"
import { formatReply } from "./protocol/reply.ts"
import { GracefulShutdown, WorkerSlot } from "./runtime.ts"
import { runSession } from "./session/loop.ts"
import { type ServerContext, SHUTTING_DOWN } from "./session/session.ts"
import { builtinCommands } from "./session/commands/mod.ts"

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
 * import { RunningServer } from "@ftpd/server"
 * import { Effect } from "effect"
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

/** Why a listener could not be opened, in a user's words. */
const listenFailure = (host: string, port: number, cause: unknown): string => {
  const address = hostPort(host, port)
  if (cause instanceof Deno.errors.NotCapable) return `no permission to listen on ${address} (grant --allow-net)`
  if (cause instanceof Deno.errors.AddrInUse) return `${address} is already in use`
  if (cause instanceof Deno.errors.PermissionDenied) {
    return `the system refused to listen on ${address}` +
      (port > 0 && port < 1024 ? ": ports below 1024 need root or the CAP_NET_BIND_SERVICE capability" : "")
  }
  if (cause instanceof Deno.errors.AddrNotAvailable) return `can't listen on ${address}: no interface has that address`
  return `can't listen on ${address}: ${cause instanceof Error ? cause.message : String(cause)}`
}

const listen = (network: NetworkShape, options: ResolvedOptions, port: number) =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: async () => {
        if (!options.reusePort) return network.listen(options.host, port)
        if (network.listenReusable === undefined) throw new Error("this network can't share a port (reusePort)")
        return await network.listenReusable(options.host, port)
      },
      catch: (cause) => new FtpServerError({ message: listenFailure(options.host, port, cause), cause }),
    }),
    (listener) => Effect.sync(() => closeQuietly(listener)),
  )

const encoder = new TextEncoder()

/** Tell a connection over the limits why, then close it, without holding up the accept loop. */
const refuse = (conn: Transport, text: string) => {
  conn.write(encoder.encode(formatReply(421, text))).catch(() => undefined).finally(() => closeQuietly(conn))
}

/**
 * What every session of a server shares, made from its options and services: the part of a
 * server that exists without listening (tests run sessions over in-memory connections with it).
 */
export const makeServerContext = (
  options: ServerOptions,
  runHook: ServerContext["runHook"],
  closing: () => boolean,
): Effect.Effect<ServerContext, FtpServerError, Authorizer | Filesystem | Scope.Scope> =>
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
    const network = yield* Network
    const fs = yield* Filesystem
    const capabilities = capabilitiesOf(fs)
    const slot = yield* WorkerSlot
    if (slot !== undefined && slot.count > 1 && !capabilities.workers) {
      return yield* new FtpServerError({
        message: `${fs.description ?? "this filesystem"} can't be served by several workers at once: ` +
          "what it promises holds within one worker only (serve it with one worker)",
      })
    }
    const bans = Option.getOrElse(yield* Effect.serviceOption(Bans), () =>
      Bans.make({
        banAfterFailures: resolved.banAfterFailures,
        banWindow: resolved.banWindow,
        banDuration: resolved.banDuration,
      }))
    const hooks = yield* actionHooks(resolved, yield* Hooks)
    const events = yield* serverEvents(resolved, hooks, bans, runHook).pipe(
      Effect.mapError((cause) => new FtpServerError({ message: cause.message, cause })),
    )
    return {
      options: resolved,
      network,
      tls: secureContext,
      // A PROXY header comes before a data connection's TLS, which a native TLS listener can't read.
      nativeTls: resolved.tls === null || network.listenTls === undefined || resolved.proxyProtocol
        ? null
        : nativeDataTls(resolved.tls, resolved.requireSessionReuse),
      fs,
      capabilities,
      mlsxFacts: capabilities.unixFacts ? new Set(MLSX_FACTS) : PORTABLE_MLSX_FACTS,
      auth: yield* Authorizer,
      hooks,
      passivePorts: makePassivePorts(network, resolved.passivePorts, (event) =>
        events.emit({ type: "passivePort", event })),
      // Each session holds at most two; twice the sessions allowed is room enough for all.
      dataSockets: new DataSockets(resolved.maxCons > 0 ? 2 * resolved.maxCons : Infinity),
      bandwidth: new Bandwidth(
        { read: resolved.readLimit, write: resolved.writeLimit },
        { read: resolved.userReadLimit, write: resolved.userWriteLimit },
        { read: resolved.globalReadLimit, write: resolved.globalWriteLimit },
        (yield* SharedBuckets) ?? undefined,
      ),
      commands: builtinCommands,
      sessions: new Set(),
      admission: Option.getOrElse(yield* Effect.serviceOption(Admission), () =>
        makeAdmission(resolved)),
      bans,
      closing,
      runHook,
      events,
    }
  })

const make = (
  options: ServerOptions = {},
): Effect.Effect<RunningServer, FtpServerError, Authorizer | Filesystem | Scope.Scope> =>
  Effect.gen(function* () {
    const hookFibers = yield* FiberSet.make<void, never>()
    let closing = false
    const context = yield* makeServerContext(
      options,
      (hook) =>
        hook === undefined
          ? Effect.void
          : FiberSet.run(hookFibers, Effect.catchCause(hook, (cause) => Effect.logError("A hook failed", cause))).pipe(
            Effect.asVoid,
          ),
      () => closing,
    )
    const { options: resolved, admission, bans, events } = context
    const listener = yield* listen(context.network, resolved, resolved.port)
    const implicitListener = resolved.implicitTlsPort === null
      ? undefined
      : yield* listen(context.network, resolved, resolved.implicitTlsPort)
    const services = yield* Effect.context<never>()
    const sessions = yield* FiberSet.make<void, never>()
    const acceptors = yield* FiberSet.make<void, never>()
    const address = listener.addr
    const worker = yield* WorkerSlot
    const pid = `pid=${Deno.pid}${workerNote(worker)}`
    const banner = startBanner({
      address: hostPort(address.hostname, address.port),
      pid: Deno.pid,
      worker,
      masqueradeAddress: resolved.masqueradeAddress,
      passivePorts: resolved.passivePorts,
      serving: context.auth.description,
      filesystem: context.fs.description,
      tls: resolved.tls === null ? null : {
        implicitAt: implicitListener === undefined ? null : hostPort(address.hostname, implicitListener.addr.port),
        minVersion: resolved.tls.minVersion ?? "TLSv1.2",
        controlRequired: resolved.tlsControlRequired,
        dataRequired: resolved.tlsDataRequired,
        sessionReuseRequired: resolved.requireSessionReuse,
        passiveData: context.nativeTls === null ? "node:tls" : "native TLS",
      },
      monitoring: { metrics: events.metrics, traces: events.tracing, xferlog: resolved.xferlog },
    })
    for (const line of banner) yield* Effect.logInfo(line)

    /** Whether `address` may send PROXY headers. */
    const trusted = (address: string) => resolved.proxyTrusted.some((range) => range.contains(address))
    const headerTimeoutMs = (resolved.loginTimeout > 0 ? resolved.loginTimeout : 60) * 1000
    /**
     * The client behind `conn`: the connection itself, or (PROXY protocol) the client its
     * balancer's header names; `undefined` when the connection is refused (and closed).
     */
    const clientOf = (conn: Transport): Effect.Effect<{ conn: Transport; header?: ProxyHeader } | undefined> => {
      if (!resolved.proxyProtocol) return Effect.succeed({ conn })
      const source = plainAddress((conn.remoteAddr as Deno.NetAddr).hostname)
      if (!trusted(source)) {
        return Effect.as(
          Effect.andThen(
            Effect.logWarning(`${source} refused: not a trusted PROXY protocol source.`),
            Effect.sync(() => closeQuietly(conn)),
          ),
          undefined,
        )
      }
      return Effect.tryPromise({
        try: () => readProxyHeader(conn, headerTimeoutMs),
        catch: (error) => error as ProxyHeaderError,
      }).pipe(
        Effect.catch((error) =>
          Effect.as(
            Effect.andThen(
              Effect.logWarning(`${source} closed: ${error.message}.`),
              Effect.sync(() => closeQuietly(conn)),
            ),
            undefined,
          )
        ),
      )
    }
    /**
     * The PROXY header (if any), then the ban check, then limits, then the session: all in the
     * connection's own fiber, so that a slow balancer or ban list holds up no other connection.
     * A connection waiting when the server stops is closed, not leaked.
     */
    const admit = (accepted: Transport, implicitTls: boolean) =>
      // Steps chained rather than a generator: none of them stays on the fiber while the session runs.
      Effect.suspend(() => {
        // Replies are small and often answer pipelined commands: do not let Nagle hold them back.
        if ("setNoDelay" in accepted) (accepted as Deno.TcpConn).setNoDelay(true)
        return Effect.flatMap(
          clientOf(accepted),
          (client) => client === undefined ? Effect.void : admitClient(client, implicitTls),
        )
      }).pipe(
        Effect.onInterrupt(() => Effect.sync(() => closeQuietly(accepted))),
        Effect.catchCause((cause) => Effect.logError("Session failed", cause)),
      )
    const admitClient = ({ conn, header }: { conn: Transport; header?: ProxyHeader }, implicitTls: boolean) => {
      const ip = plainAddress((conn.remoteAddr as Deno.NetAddr).hostname)
      // Checked first, so that a banned address costs no session, no slot and no TLS handshake.
      return Effect.flatMap(bans.isBanned(ip), (banned) => {
        if (banned) {
          return Effect.andThen(
            events.emit({ type: "connectionRefused", ip, reason: "banned", text: `${ip} refused: banned.` }),
            Effect.sync(() => refuse(conn, BANNED_TEXT)),
          )
        }
        // Accepted just before the listeners closed, or held up by a slow ban list.
        if (closing) {
          return Effect.andThen(
            events.emit({ type: "connectionRefused", ip, reason: "shutting_down" }),
            Effect.sync(() => refuse(conn, SHUTTING_DOWN)),
          )
        }
        return Effect.flatMap(admission.admit(ip), (refusal) => {
          if (refusal !== undefined) {
            return Effect.andThen(
              events.emit({ type: "connectionRefused", ip, reason: refusal.reason, text: refusal.log }),
              Effect.sync(() => refuse(conn, refusal.reply)),
            )
          }
          return Effect.andThen(
            events.emit({ type: "connectionAccepted" }),
            runSession(context, conn, implicitTls, header).pipe(Effect.ensuring(admission.leave(ip))),
          )
        })
      })
    }
    const acceptLoop = (from: Listener, implicitTls: boolean) =>
      Effect.gen(function* () {
        for (;;) {
          const accepted = yield* Effect.result(Effect.tryPromise(() => from.accept()))
          if (accepted._tag === "Success") {
            yield* FiberSet.run(sessions, admit(accepted.success, implicitTls))
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
      Effect.logInfo(`>>> shutting down FTP server (${admission.connections()} active sessions), ${pid} <<<`)
    )
    /** Refuse new connections: a closed listener makes the kernel refuse them, and its accept loop ends. */
    const stopAccepting = () => {
      closing = true
      for (const from of [listener, implicitListener]) closeQuietly(from)
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
            `>>> closing FTP server: ${admission.connections()} active sessions may finish within ${deadlineSeconds} s, ${pid} <<<`,
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
      implicitTlsAddress: implicitListener === undefined
        ? null
        : { hostname: address.hostname, port: implicitListener.addr.port },
      connections: admission.connections,
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
 * import { DummyAuthorizer, FtpServer, LocalFilesystem } from "@ftpd/server"
 * import { Effect, Layer } from "effect"
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
