/**
 * Several workers (Web Workers: V8 isolates on threads of one process) serving one port, and the
 * coordinator in the main thread that keeps what they share.
 *
 * Each worker runs a whole server on the same control port (`SO_REUSEPORT`: the kernel spreads new
 * connections over the workers) and its own disjoint slice of the passive range. What must not be
 * multiplied by the number of workers is kept once: the connection total (`maxCons`) in memory all
 * workers share (`SharedTotal`), and here, reached by messages, the counts per address and per
 * user (`maxConsPerIp`, `maxSessionsPerUser`; no message when they are off), failed-login counting
 * and the bans (a copy of the ban list is sent to every worker whenever it changes, so that
 * checking an address costs no message), and the server's and users' bandwidth buckets.
 *
 * The coordinator also owns the lifecycle: the first SIGINT/SIGTERM drains every worker with its
 * `shutdownGrace` (under `runMain`), a worker that crashes is logged and replaced (what it counted
 * is given back) without touching the others, and SIGHUP reaches every worker.
 *
 * Web Workers rather than processes: one process holds N workers in about 65 MiB where N processes
 * hold about 52 MiB each (measured with 2), messages between threads cost less than between
 * processes, and workers inherit the process's permissions.
 *
 * @module
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Scope from "effect/Scope"
import { makeAdmission } from "../admission.ts"
import { Bans } from "../bans.ts"
import { TokenBucket } from "../data/throttle.ts"
import { resolveOptions, type ServerOptions } from "../options.ts"
import { GracefulShutdown, Hangup } from "../runtime.ts"
import { FtpServerError } from "../server.ts"
import { type MetricsEndpoint, serveExposition, sumExpositions } from "../observability/metrics.ts"
import type { Call, FromWorker, ToWorker } from "./messages.ts"
import { SharedTotal } from "./shared_total.ts"

/** How to run a server as workers. */
export interface WorkersConfig {
  /** How many workers; `"auto"`: one per processor core. */
  readonly workers: number | "auto"
  /**
   * The module every worker runs: it calls `serveInWorker` with the services of the server (its
   * authorizer, filesystem, hooks, logger). Each worker imports it anew, so what it builds in code
   * (an in-memory authorizer, say) exists once per worker.
   */
  readonly module: string | URL
  /** The server's options (plain data); each worker gets its own slice of `passivePorts`. */
  readonly options: ServerOptions
  /** What the module gets as `start.data`: plain data, such as a command line's configuration. */
  readonly data?: unknown
  /** Receives the lines workers send with `forwardLog`. */
  readonly onLog?: (line: string) => void
  /**
   * Serve `GET /metrics` here: the sum of every worker's metrics, as one server's. The workers
   * record them when their services include `FtpMetrics.layer`.
   */
  readonly metrics?: MetricsEndpoint
}

/** The workers of a server, as the coordinator sees them. */
export interface RunningWorkers {
  /** The control port they share. */
  readonly port: number
  /** Each worker's passive port range (`null`: ports chosen by the system). */
  readonly slices: ReadonlyArray<readonly [number, number] | null>
  /** Stop worker `index` at once, as a crash would: it is logged and replaced. */
  readonly crash: (index: number) => Effect.Effect<void>
  /** Workers started so far, replacements included. */
  readonly started: () => number
}

/** Split `[from, to]` into `count` contiguous slices, as even as can be. */
export const slicesOf = (
  range: readonly [number, number] | null | undefined,
  count: number,
): ReadonlyArray<readonly [number, number] | null> => {
  if (range === null || range === undefined) return Array.from({ length: count }, () => null)
  const [from, to] = range
  const size = to - from + 1
  if (size < count) {
    throw new RangeError(`passivePorts ${from}-${to} has ${size} ports, fewer than the ${count} workers`)
  }
  return Array.from({ length: count }, (_, i) => {
    const start = from + Math.floor((size * i) / count)
    const end = from + Math.floor((size * (i + 1)) / count) - 1
    return [start, end] as const
  })
}

/** What one worker holds of the shared counts, given back if it crashes. */
interface Held {
  readonly ips: Map<string, number>
  readonly users: Map<string, number>
  /** Checksums running. */
  checksums: number
}

const count = (map: Map<string, number>, key: string, by: number) => {
  const n = (map.get(key) ?? 0) + by
  if (n <= 0) map.delete(key)
  else map.set(key, n)
}

/**
 * Start the workers and serve until the scope closes (or, under `runMain`, the first stop signal
 * has drained them). Fails with {@link FtpServerError} when the options are wrong or the first
 * worker can't listen.
 *
 * @example
 * ```ts
 * import { runMain, runWorkers } from "@ftpd/server"
 * import { Effect } from "effect"
 * // my_worker.ts calls serveInWorker(...) with the server's services.
 * const workers = runWorkers({ workers: 2, module: new URL("./my_worker.ts", import.meta.url), options: { port: 2121 } })
 * if (import.meta.main) runMain(Effect.scoped(Effect.andThen(workers, Effect.never)))
 * ```
 */
export const runWorkers = (config: WorkersConfig): Effect.Effect<RunningWorkers, FtpServerError, Scope.Scope> =>
  Effect.gen(function* () {
    const resolved = yield* Effect.try({
      try: () => resolveOptions(config.options),
      catch: (cause) => new FtpServerError({ message: (cause as Error).message, cause }),
    })
    const total = config.workers === "auto" ? navigator.hardwareConcurrency : config.workers
    if (!Number.isInteger(total) || total < 1) {
      return yield* new FtpServerError({ message: `workers must be a whole number >= 1 or "auto", got ${total}` })
    }
    const slices = yield* Effect.try({
      try: () => slicesOf(resolved.passivePorts, total),
      catch: (cause) => new FtpServerError({ message: (cause as Error).message, cause }),
    })
    // The total (maxCons) is counted in shared memory; per address and per user, here.
    const admission = makeAdmission({ ...resolved, maxCons: 0 })
    const sharedTotal = SharedTotal.allocate(total)
    const bans = Bans.make({
      banAfterFailures: resolved.banAfterFailures,
      banWindow: resolved.banWindow,
      banDuration: resolved.banDuration,
    })
    const buckets = new Map<string, TokenBucket>()
    const workers = new Array<Worker | undefined>(total)
    const held: Held[] = Array.from({ length: total }, () => ({ ips: new Map(), users: new Map(), checksums: 0 }))
    const ended = Array.from({ length: total }, () => Deferred.makeUnsafe<void>())
    let stopping = false
    let started = 0
    let port = resolved.port
    let implicitTlsPort = resolved.implicitTlsPort
    const services = yield* Effect.context<never>()
    const run = <A>(effect: Effect.Effect<A>) => Effect.runPromise(Effect.provideContext(effect, services))

    const broadcastBans = () =>
      run(bans.list()).then((entries) => {
        for (const worker of workers) worker?.postMessage({ type: "bans", bans: entries } satisfies ToWorker)
      })

    /** Answer one call of worker `index`. */
    const answer = async (index: number, call: Call): Promise<unknown> => {
      const mine = held[index]
      switch (call.op) {
        case "admit": {
          const refusal = await run(admission.admit(call.ip))
          if (refusal === undefined) count(mine.ips, call.ip, 1)
          return refusal
        }
        case "leave":
          count(mine.ips, call.ip, -1)
          return await run(admission.leave(call.ip))
        case "login": {
          const claimed = await run(admission.login(call.user))
          if (claimed) count(mine.users, call.user, 1)
          return claimed
        }
        case "logout":
          count(mine.users, call.user, -1)
          return await run(admission.logout(call.user))
        case "startChecksum": {
          const started = await run(admission.startChecksum())
          if (started) mine.checksums++
          return started
        }
        case "endChecksum":
          mine.checksums--
          return await run(admission.endChecksum())
        case "recordFailure": {
          const banned = await run(bans.recordFailure(call.ip))
          if (banned) await broadcastBans()
          return banned
        }
        case "ban":
          await run(bans.ban(call.ip, call.seconds))
          return await broadcastBans()
        case "unban":
          await run(bans.unban(call.ip))
          return await broadcastBans()
        case "reserve": {
          const key = `${call.owner ?? ""}\n${call.direction}\n${call.rate}`
          let bucket = buckets.get(key)
          if (bucket === undefined) buckets.set(key, bucket = new TokenBucket(call.rate))
          return bucket.reserve(call.bytes)
        }
      }
    }

    /** What a crashed worker counted, given back. */
    const giveBack = async (index: number) => {
      SharedTotal.giveBack(sharedTotal, index)
      const mine = held[index]
      for (const [ip, n] of mine.ips) for (let i = 0; i < n; i++) await run(admission.leave(ip))
      for (const [user, n] of mine.users) for (let i = 0; i < n; i++) await run(admission.logout(user))
      for (let i = 0; i < mine.checksums; i++) await run(admission.endChecksum())
      mine.ips.clear()
      mine.users.clear()
      mine.checksums = 0
    }

    /** Start worker `index`; resolves with the ports it listens on, or rejects when it can't start. */
    /**
     * Start worker `index`; resolves with the ports it listens on, or `undefined` when a drain
     * began first (the worker is not started, or ended before it listened).
     */
    const start = (index: number): Promise<{ port: number; implicitTlsPort: number | null } | undefined> =>
      new Promise((resolve, reject) => {
        if (stopping) {
          Deferred.doneUnsafe(ended[index], Exit.void)
          return resolve(undefined)
        }
        started++
        const worker = new Worker(config.module, { type: "module" })
        workers[index] = worker
        let listening = false
        const failed = (why: string) => {
          workers[index] = undefined
          worker.terminate()
          if (!listening) return reject(new FtpServerError({ message: `worker ${index + 1}: ${why}` }))
          void giveBack(index).then(() => {
            if (stopping) return Deferred.doneUnsafe(ended[index], Exit.void)
            void run(Effect.logError(`worker ${index + 1} of ${total} stopped: ${why}; starting a new one`))
            void start(index).catch((error) =>
              run(Effect.logError(`worker ${index + 1} could not be replaced: ${(error as Error).message}`))
            )
          })
        }
        worker.onerror = (event) => {
          event.preventDefault()
          failed(event.message)
        }
        worker.onmessage = (event: MessageEvent<FromWorker>) => {
          const message = event.data
          if (message.type === "log") return config.onLog?.(message.line)
          if (message.type === "metrics") return void scrapes.get(message.id)?.(message.text)
          if (message.type === "listening") {
            listening = true
            return resolve(message)
          }
          if (message.type === "call") {
            return void answer(index, message.call).then((value) =>
              worker.postMessage({ type: "reply", id: message.id, value } satisfies ToWorker)
            )
          }
          if (message.type === "ended") {
            if (message.failure !== undefined) return failed(message.failure)
            workers[index] = undefined
            worker.terminate()
            if (!listening) resolve(undefined)
            void giveBack(index).then(() => Deferred.doneUnsafe(ended[index], Exit.void))
          }
        }
        void run(bans.list()).then((entries) => {
          // A drain that began meanwhile has not reached this worker: it is not started.
          if (stopping) {
            workers[index] = undefined
            worker.terminate()
            Deferred.doneUnsafe(ended[index], Exit.void)
            return resolve(undefined)
          }
          worker.postMessage(
            {
              type: "start",
              index,
              count: total,
              options: {
                ...config.options,
                port,
                implicitTlsPort: implicitTlsPort ?? undefined,
                passivePorts: slices[index] ?? undefined,
                reusePort: true,
              },
              data: config.data,
              total: sharedTotal,
              bans: entries,
            } satisfies ToWorker,
          )
        })
      })

    /** Scrapes waiting for a worker's text, by id. */
    const scrapes = new Map<number, (text: string) => void>()
    let nextScrape = 0
    /** Every running worker's metrics, summed; a worker that does not answer within 2 s is left out. */
    const scrape = async (): Promise<string> => {
      const texts = await Promise.all(workers.map((worker) => {
        if (worker === undefined) return ""
        const id = nextScrape++
        return new Promise<string>((resolve) => {
          const timer = setTimeout(() => resolve(""), 2000)
          scrapes.set(id, (text) => {
            clearTimeout(timer)
            resolve(text)
          })
          worker.postMessage({ type: "metrics", id } satisfies ToWorker)
        }).finally(() => scrapes.delete(id))
      }))
      return sumExpositions(texts)
    }

    const tell = (message: ToWorker) => {
      for (const worker of workers) worker?.postMessage(message)
    }
    // Released (a second signal, or the caller's scope): every worker stops its sessions now (421),
    // and is terminated if it has not ended within a few seconds.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        stopping = true
        tell({ type: "stop" })
        const running = ended.filter((_, index) => workers[index] !== undefined)
        yield* Effect.forEach(running, (done) => Deferred.await(done), { discard: true }).pipe(
          Effect.timeoutOption(Duration.seconds(3)),
        )
        for (const worker of workers) worker?.terminate()
      })
    )
    // Registered first: a signal while the workers start drains those started and starts no more.
    const drain = Effect.gen(function* () {
      stopping = true
      tell({ type: "drain" })
      for (const done of ended) yield* Deferred.await(done)
    })
    yield* (yield* GracefulShutdown).onSignal(drain)
    yield* (yield* Hangup).onHangup(Effect.sync(() => tell({ type: "hangup" })))
    // The first worker binds the ports (port 0 picks one); the others then share them.
    for (let index = 0; index < total; index++) {
      const ports = yield* Effect.tryPromise({ try: () => start(index), catch: (error) => error as FtpServerError })
      if (index === 0 && ports !== undefined) {
        port = ports.port
        implicitTlsPort = ports.implicitTlsPort
      }
    }
    if (config.metrics !== undefined) {
      yield* serveExposition(config.metrics, scrape).pipe(
        Effect.mapError((error) => new FtpServerError({ message: error.message, cause: error })),
      )
    }
    if (!stopping) {
      yield* Effect.logInfo(
        `>>> ${total} workers on port ${port}, passive ports ${
          slices.map((slice, i) => `worker ${i + 1}: ${slice === null ? "chosen by the system" : slice.join("-")}`)
            .join(", ")
        } <<<`,
      )
    }
    return {
      port,
      slices,
      crash: (index) =>
        Effect.sync(() => {
          const worker = workers[index]
          if (worker === undefined) return
          worker.onerror?.(new ErrorEvent("error", { message: "stopped by crash()" }))
        }),
      started: () => started,
    }
  })
