/**
 * `runMain` for Deno: run an Effect as the program, and turn SIGINT/SIGTERM into interruption so
 * that every scope closes (sessions get 421, files and sockets are closed) before the process exits.
 *
 * A server started under `runMain` stops gracefully at the first signal: it stops accepting, lets
 * running transfers finish for `shutdownGrace` seconds, and only then is the program interrupted.
 * A second signal interrupts the program at once. SIGHUP runs what was registered with
 * {@link Hangup} (reloading a user file, reopening a log file), and nothing else.
 *
 * @module
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"

const signals: ReadonlyArray<Deno.Signal> = ["SIGINT", "SIGTERM"]

/** Which of `runWorkers`' workers a server is (from 0), for its log lines; `undefined` outside workers. */
export const WorkerSlot: Context.Reference<{ readonly index: number; readonly count: number } | undefined> = Context
  .Reference<{ readonly index: number; readonly count: number } | undefined>("@ftpd/server/WorkerSlot", {
    defaultValue: () => undefined,
  })

/** What the first SIGINT/SIGTERM does before the program is interrupted. */
export interface GracefulShutdownShape {
  /**
   * Run `stop` at the first signal, for as long as the current scope is open. The program is
   * interrupted once every registered `stop` has finished, or at once at a second signal (which
   * interrupts the `stop`s too).
   */
  readonly onSignal: (stop: Effect.Effect<void>) => Effect.Effect<void, never, Scope.Scope>
}

/**
 * How a program reacts to its first stop signal. {@link runMain} provides it; outside `runMain`
 * nothing is registered and nothing listens for signals.
 *
 * @example
 * ```ts
 * import { GracefulShutdown, runMain } from "@ftpd/server"
 * import { Effect } from "effect"
 * const program = Effect.scoped(Effect.gen(function* () {
 *   const shutdown = yield* GracefulShutdown
 *   yield* shutdown.onSignal(Effect.log("finishing what is running"))
 *   return yield* Effect.never
 * }))
 * if (import.meta.main) runMain(program)
 * ```
 */
export const GracefulShutdown: Context.Reference<GracefulShutdownShape> = Context.Reference<GracefulShutdownShape>(
  "@ftpd/server/GracefulShutdown",
  { defaultValue: () => ({ onSignal: () => Effect.void }) },
)

/** What SIGHUP does. */
export interface HangupShape {
  /**
   * Run `reload` at every SIGHUP, for as long as the current scope is open (in the services of the
   * fiber that registered it). A failing or slow `reload` does not hold up the others.
   */
  readonly onHangup: (reload: Effect.Effect<void>) => Effect.Effect<void, never, Scope.Scope>
}

/**
 * How a program reacts to SIGHUP. {@link runMain} provides it; outside `runMain` nothing is
 * registered and nothing listens for SIGHUP.
 *
 * @example
 * ```ts
 * import { Hangup, runMain } from "@ftpd/server"
 * import { Effect } from "effect"
 * const program = Effect.scoped(Effect.gen(function* () {
 *   const hangup = yield* Hangup
 *   yield* hangup.onHangup(Effect.log("reloading"))
 *   return yield* Effect.never
 * }))
 * if (import.meta.main) runMain(program)
 * ```
 */
export const Hangup: Context.Reference<HangupShape> = Context.Reference<HangupShape>("@ftpd/server/Hangup", {
  defaultValue: () => ({ onHangup: () => Effect.void }),
})

/**
 * Run `effect` until it ends or a signal arrives; exit 0 on success, 130 on a signal, 1 on failure.
 * The first SIGINT/SIGTERM runs what was registered with {@link GracefulShutdown} (a server's
 * graceful close) and then interrupts; without a registration, or at a second signal, it
 * interrupts at once.
 *
 * @example
 * ```ts
 * import { runMain } from "@ftpd/server"
 * import { Effect } from "effect"
 * if (import.meta.main) runMain(Effect.log("hello"))
 * ```
 */
export const runMain = <E, A>(effect: Effect.Effect<A, E>): void => {
  const waiting = new Set<() => void>()
  let signalled = false
  let stopping = 0
  let interrupt = () => {}
  const stopped = () => {
    if (--stopping === 0) interrupt()
  }
  const shutdown: GracefulShutdownShape = {
    onSignal: (stop) =>
      Effect.asVoid(Effect.forkScoped(
        Effect.callback<void>((resume) => {
          const wake = () => resume(Effect.void)
          waiting.add(wake)
          return Effect.sync(() => void waiting.delete(wake))
        }).pipe(Effect.andThen(Effect.ensuring(stop, Effect.sync(stopped)))),
      )),
  }
  const reloads = new Set<() => void>()
  const hangup: HangupShape = {
    onHangup: (reload) =>
      Effect.gen(function* () {
        const services = yield* Effect.context<never>()
        const run = () =>
          void Effect.runFork(
            reload.pipe(
              Effect.catchCause((cause) => Effect.logError("A SIGHUP reload failed", cause)),
              Effect.provideContext(services),
            ),
          )
        yield* Effect.acquireRelease(Effect.sync(() => reloads.add(run)), () => Effect.sync(() => reloads.delete(run)))
      }),
  }
  const onHangup = () => {
    for (const run of reloads) run()
  }
  Runtime.makeRunMain(({ fiber, teardown }) => {
    interrupt = () => fiber.interruptUnsafe()
    const onSignal = () => {
      if (signalled || waiting.size === 0) return interrupt()
      signalled = true
      const wakes = [...waiting]
      waiting.clear()
      stopping = wakes.length
      for (const wake of wakes) wake()
    }
    for (const signal of signals) Deno.addSignalListener(signal, onSignal)
    if (Deno.build.os !== "windows") Deno.addSignalListener("SIGHUP", onHangup)
    fiber.addObserver((exit) => {
      for (const signal of signals) Deno.removeSignalListener(signal, onSignal)
      if (Deno.build.os !== "windows") Deno.removeSignalListener("SIGHUP", onHangup)
      teardown(exit, (code) => Deno.exit(code))
    })
  })(effect.pipe(Effect.provideService(GracefulShutdown, shutdown), Effect.provideService(Hangup, hangup)))
}
