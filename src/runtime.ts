/**
 * `runMain` for Deno: run an Effect as the program, and turn SIGINT/SIGTERM into interruption so
 * that every scope closes (sessions get 421, files and sockets are closed) before the process exits.
 *
 * @module
 */
import * as Runtime from "effect/Runtime"

const signals: ReadonlyArray<Deno.Signal> = ["SIGINT", "SIGTERM"]

/**
 * Run `effect` until it ends or a signal arrives; exit 0 on success, 130 on a signal, 1 on failure.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { runMain } from "@ftpd/server"
 * if (import.meta.main) runMain(Effect.log("hello"))
 * ```
 */
export const runMain: <E, A>(effect: import("effect").Effect.Effect<A, E>) => void = Runtime.makeRunMain(
  ({ fiber, teardown }) => {
    const onSignal = () => fiber.interruptUnsafe()
    for (const signal of signals) Deno.addSignalListener(signal, onSignal)
    fiber.addObserver((exit) => {
      for (const signal of signals) Deno.removeSignalListener(signal, onSignal)
      teardown(exit, (code) => Deno.exit(code))
    })
  },
)
