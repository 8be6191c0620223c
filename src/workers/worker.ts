/**
 * The worker side of `runWorkers`: {@link serveInWorker} runs a whole server in a Web Worker, on
 * the port it shares with the other workers, with the counts, bans and bandwidth buckets that the
 * coordinator keeps for all of them, and stops and reloads when the coordinator says so.
 *
 * @module
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import type * as Layer from "effect/Layer"
import { Admission, type AdmissionLimits, type AdmissionShape, type Refusal, tooManyConnections } from "../admission.ts"
import type { Authorizer } from "../auth/authorizer.ts"
import { type BanEntry, Bans, type BansShape } from "../bans.ts"
import { type BucketMaker, RemoteBucket, SharedBuckets } from "../data/throttle.ts"
import type { Filesystem } from "../fs/filesystem.ts"
import { resolveOptions, type ServerOptions } from "../options.ts"
import { GracefulShutdown, type GracefulShutdownShape, Hangup, type HangupShape, WorkerSlot } from "../runtime.ts"
import { exposition, FtpMetrics } from "../observability/metrics.ts"
import { FtpServer } from "../server.ts"
import type { Call, FromWorker, ToWorker } from "./messages.ts"
import { SharedTotal } from "./shared_total.ts"

/** What a worker module is told when it starts. */
export interface WorkerStart {
  /** This worker's number, from 0, and how many there are. */
  readonly index: number
  readonly count: number
  /** The data given to `runWorkers`. */
  readonly data: unknown
  /** The server's options for this worker. */
  readonly options: ServerOptions
}

/** This worker's side of the channel to the coordinator. */
const self = globalThis as unknown as {
  postMessage(message: FromWorker): void
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null
}
const post = (message: FromWorker) => self.postMessage(message)

/**
 * Send a log line to the coordinator, whose `onLog` receives it (for a logger whose lines must end
 * up in one place, such as a test's); by default workers write their own lines to standard error.
 *
 * @example
 * ```ts
 * import { forwardLog, FtpLogger } from "@ftpd/server"
 * const logger = FtpLogger.layer({ write: forwardLog })
 * ```
 */
export const forwardLog = (line: string): void => post({ type: "log", line })

/**
 * Serve in this worker: wait for the coordinator's start, build the server's services with
 * `services` (from the data given to `runWorkers`), and serve until the coordinator drains or
 * stops the worker. Call it at the top of the module given to `runWorkers`.
 *
 * Shared with the other workers through the coordinator: the connection counts, failed logins and
 * bans, and the server's and users' bandwidth buckets. Per worker: everything `services` builds.
 *
 * @example
 * ```ts
 * import { DummyAuthorizer, FtpLogger, LocalFilesystem, serveInWorker } from "@ftpd/server"
 * import { Layer } from "effect"
 * serveInWorker(() =>
 *   Layer.mergeAll(
 *     DummyAuthorizer.layer((a) => a.addAnonymous("/srv/ftp")),
 *     LocalFilesystem.layer,
 *     FtpLogger.layer(),
 *   )
 * )
 * ```
 */
export const serveInWorker = <E>(services: (start: WorkerStart) => Layer.Layer<Authorizer | Filesystem, E>): void => {
  const replies = new Map<number, (value: unknown) => void>()
  let nextId = 0
  const call = <A>(c: Call): Promise<A> =>
    new Promise<A>((resolve) => {
      const id = nextId++
      replies.set(id, resolve as (value: unknown) => void)
      post({ type: "call", id, call: c })
    })
  let bans = new Map<string, number>()
  const banList = (): BanEntry[] => {
    const now = Date.now()
    return [...bans].filter(([, until]) => until > now).map(([ip, until]) => ({ ip, until }))
  }
  const sharedBans: BansShape = {
    isBanned: (ip) => Effect.sync(() => (bans.get(ip) ?? 0) > Date.now()),
    recordFailure: (ip) => Effect.promise(() => call<boolean>({ op: "recordFailure", ip })),
    ban: (ip, seconds) => Effect.asVoid(Effect.promise(() => call({ op: "ban", ip, seconds }))),
    unban: (ip) => Effect.asVoid(Effect.promise(() => call({ op: "unban", ip }))),
    list: () => Effect.sync(banList),
  }
  const buckets: BucketMaker = (owner, direction, rate) =>
    new RemoteBucket(
      rate,
      (bytes) => call<number>({ op: "reserve", owner: owner === "server" ? null : owner.user, direction, rate, bytes }),
    )

  // What a drain (the coordinator's first stop signal) and a hangup run, as `runMain` does for signals.
  const stops = new Set<() => void>()
  let stopping = 0
  let fiber: Fiber.Fiber<unknown, unknown> | undefined
  const interrupt = () => fiber?.interruptUnsafe()
  const shutdown: GracefulShutdownShape = {
    onSignal: (stop) =>
      Effect.asVoid(Effect.forkScoped(
        Effect.callback<void>((resume) => {
          const wake = () => resume(Effect.void)
          stops.add(wake)
          return Effect.sync(() => void stops.delete(wake))
        }).pipe(Effect.andThen(Effect.ensuring(stop, Effect.sync(() => --stopping === 0 && interrupt())))),
      )),
  }
  const reloads = new Set<() => void>()
  const hangup: HangupShape = {
    onHangup: (reload) =>
      Effect.gen(function* () {
        const context = yield* Effect.context<never>()
        const run = () =>
          void Effect.runFork(
            reload.pipe(
              Effect.catchCause((cause) => Effect.logError("A SIGHUP reload failed", cause)),
              Effect.provideContext(context),
            ),
          )
        yield* Effect.acquireRelease(Effect.sync(() => reloads.add(run)), () => Effect.sync(() => reloads.delete(run)))
      }),
  }

  /**
   * The counts, shared with the other workers: the total in shared memory, the per-address and
   * per-user counts and the checksums running (when their limits are on) through the coordinator.
   */
  const sharedAdmission = (limits: AdmissionLimits, total: SharedTotal): AdmissionShape => {
    let local = 0
    return {
      admit: (ip) =>
        Effect.suspend(() => {
          const at = total.claim(limits.maxCons)
          if (at !== undefined) return Effect.succeed(tooManyConnections(ip, at))
          if (limits.maxConsPerIp === 0) {
            local++
            return Effect.succeed(undefined)
          }
          return Effect.promise(() => call<Refusal | undefined>({ op: "admit", ip })).pipe(
            Effect.tap((refusal) => Effect.sync(() => (refusal === undefined ? local++ : total.release()))),
          )
        }),
      leave: (ip) =>
        Effect.suspend(() => {
          local--
          total.release()
          return limits.maxConsPerIp === 0 ? Effect.void : Effect.promise(() => call({ op: "leave", ip }))
        }),
      login: (user) =>
        limits.maxSessionsPerUser === 0
          ? Effect.succeed(true)
          : Effect.promise(() => call<boolean>({ op: "login", user })),
      logout: (user) =>
        limits.maxSessionsPerUser === 0
          ? Effect.void
          : Effect.asVoid(Effect.promise(() => call({ op: "logout", user }))),
      startChecksum: () =>
        limits.maxHashes === 0 ? Effect.succeed(true) : Effect.promise(() => call<boolean>({ op: "startChecksum" })),
      endChecksum: () =>
        limits.maxHashes === 0 ? Effect.void : Effect.asVoid(Effect.promise(() => call({ op: "endChecksum" }))),
      connections: () => local,
    }
  }

  /** The server's services, once it runs: its metrics are read from them. */
  let running: Context.Context<never> | undefined

  const start = (message: Extract<ToWorker, { type: "start" }>) => {
    bans = new Map(message.bans.map((entry) => [entry.ip, entry.until]))
    const admission = sharedAdmission(resolveOptions(message.options), new SharedTotal(message.total, message.index))
    const begun: WorkerStart = {
      index: message.index,
      count: message.count,
      data: message.data,
      options: message.options,
    }
    const program = Effect.gen(function* () {
      running = yield* Effect.context<never>()
      const server = yield* FtpServer.make(message.options)
      post({ type: "listening", port: server.address.port, implicitTlsPort: server.implicitTlsAddress?.port ?? null })
      return yield* Effect.never
    }).pipe(
      Effect.scoped,
      Effect.provide(services(begun)),
      Effect.provideService(Admission, admission),
      Effect.provideService(Bans, sharedBans),
      Effect.provideService(SharedBuckets, buckets),
      Effect.provideService(GracefulShutdown, shutdown),
      Effect.provideService(Hangup, hangup),
      Effect.provideService(WorkerSlot, { index: message.index, count: message.count }),
    )
    fiber = Effect.runFork(program)
    fiber.addObserver((exit) => {
      if (exit._tag === "Success" || exit.cause.reasons.every((reason) => reason._tag === "Interrupt")) {
        return post({ type: "ended" })
      }
      const failure = exit.cause.reasons.map((reason) =>
        reason._tag === "Fail"
          ? String((reason.error as { message?: string }).message ?? reason.error)
          : reason._tag === "Die"
          ? String(reason.defect)
          : "interrupted"
      ).join("; ")
      post({ type: "ended", failure })
    })
  }

  self.onmessage = (event) => {
    const message = event.data
    switch (message.type) {
      case "start":
        return start(message)
      case "reply": {
        const resolve = replies.get(message.id)
        replies.delete(message.id)
        return resolve?.(message.value)
      }
      case "bans":
        bans = new Map(message.bans.map((entry) => [entry.ip, entry.until]))
        return
      case "drain": {
        if (stops.size === 0) return interrupt()
        const wakes = [...stops]
        stops.clear()
        stopping = wakes.length
        for (const wake of wakes) wake()
        return
      }
      case "stop":
        return interrupt()
      case "hangup":
        for (const run of reloads) run()
        return
      case "metrics": {
        const context = running
        const recording = context !== undefined && Context.get(context, FtpMetrics) !== null
        return void (recording ? exposition(context) : Promise.resolve("")).then((text) =>
          post({ type: "metrics", id: message.id, text })
        )
      }
    }
  }
}
