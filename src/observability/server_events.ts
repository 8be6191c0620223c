/**
 * What a server builds from its options and services to report on itself: its {@link Events}
 * (metrics when `FtpMetrics` is provided, spans when the program's tracer exports them, the
 * transfer log, the hooks), and the upload actions of its options added to its hooks.
 *
 * @module
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as References from "effect/References"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Tracer from "effect/Tracer"
import type { BansShape } from "../bans.ts"
import { Hooks, type HooksShape } from "../hooks.ts"
import type { ResolvedOptions } from "../options.ts"
import { Hangup } from "../runtime.ts"
import { UploadCommand, Webhook } from "./actions.ts"
import { Events, type EventsOptions } from "./events.ts"
import { LogFile } from "./log_file.ts"
import { FtpMetrics } from "./metrics.ts"

/**
 * The server's events: its metrics (when `FtpMetrics` is provided), its spans (when the program's
 * tracer exports them), its transfer log, and its hooks with the upload actions of its options.
 */
export const serverEvents = (
  resolved: ResolvedOptions,
  hooks: HooksShape,
  bans: BansShape,
  runHook: EventsOptions["runHook"],
): Effect.Effect<Events, Error, Scope.Scope> =>
  Effect.gen(function* () {
    const metrics = yield* FtpMetrics
    const tracer = yield* Tracer.Tracer
    const tracing = tracer !== Tracer.nativeTracer && (yield* References.TracerEnabled)
    const xferlog = resolved.xferlog === null ? null : yield* Effect.acquireRelease(
      Effect.try({
        try: () => new LogFile(resolved.xferlog!),
        catch: (cause) => new Error(`xferlog: ${(cause as Error).message}`, { cause }),
      }),
      (file) => Effect.sync(() => file.close()),
    )
    if (xferlog !== null) {
      yield* (yield* Hangup).onHangup(
        Effect.try(() => xferlog.reopen()).pipe(
          Effect.catch((error) => Effect.logError(`can't reopen the xferlog: ${String(error.cause)}`)),
        ),
      )
    }
    let refreshBans: Effect.Effect<void> | undefined
    if (metrics !== null) {
      // The ban list may be the application's own (a database): counted every few seconds and
      // after each ban, not at every connection. What this server counted is taken back as it stops.
      let counted = 0
      const recount = (count: number) =>
        Effect.sync(() => {
          metrics.bansChanged(count - counted)
          counted = count
        })
      refreshBans = Effect.flatMap(bans.list(), (list) => recount(list.length))
      yield* Effect.addFinalizer(() => recount(0))
      yield* Effect.forkScoped(Effect.repeat(refreshBans, Schedule.spaced(BAN_RECOUNT)))
    }
    return new Events({ metrics, xferlog, hooks, runHook, tracing, refreshBans })
  })

/** `hooks` with the upload actions of the options (`webhook`, `onUpload`) added, running in the current scope. */
export const actionHooks = (
  resolved: ResolvedOptions,
  hooks: HooksShape,
): Effect.Effect<HooksShape, never, Scope.Scope> =>
  Effect.gen(function* () {
    const limits = {
      concurrency: resolved.actionConcurrency,
      queue: resolved.actionQueue,
      timeout: resolved.actionTimeout,
    }
    const all = [hooks]
    if (resolved.webhook !== null) all.push(yield* Webhook.make({ url: resolved.webhook, ...limits }))
    if (resolved.onUpload !== null) all.push(yield* UploadCommand.make({ program: resolved.onUpload, ...limits }))
    return all.length === 1 ? hooks : Hooks.merge(...all)
  })

/** How often the bans in force are counted for the metrics. */
const BAN_RECOUNT = Duration.seconds(5)
