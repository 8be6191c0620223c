/**
 * The FTP server as one Layer of an Effect application.
 *
 * The app has a service of its own, `Stats`, fed by a custom `Hooks` layer (sessions open, files
 * received) and read by a second part of the app, a fiber that logs the numbers periodically. The
 * server, the users, the filesystem, the hooks and the reporter are layers composed into one app
 * and launched with `Layer.launch`; Ctrl-C releases them all (sessions get 421, ports are closed).
 *
 * ```sh
 * deno run --allow-net --allow-read=. --allow-write=. examples/effect_app.ts
 * curl -T notes.txt ftp://user:12345@localhost:2121/
 * ```
 *
 * Flags: `--host` (default: all interfaces), `--port` (2121), `--directory` (the current one),
 * `--stats-interval SECONDS` (60).
 *
 * @module
 */
import { DummyAuthorizer, FtpLogger, FtpServer, Hooks, LocalFilesystem, runMain } from "../mod.ts"
import { Context, Effect, Layer, Ref, Schedule } from "effect"
import { parseArgs } from "node:util"

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    host: { type: "string" },
    port: { type: "string", default: "2121" },
    directory: { type: "string", default: "." },
    "stats-interval": { type: "string", default: "60" },
  },
})

/** What the FTP server has done so far: the app's own service. */
class Stats extends Context.Service<Stats, Ref.Ref<{ readonly open: number; readonly received: number }>>()(
  "app/Stats",
) {
  static readonly layer = Layer.effect(Stats, Ref.make({ open: 0, received: 0 }))
}

/** Hooks that count into `Stats`; the server runs them without waiting for them. */
const CountingHooks = Layer.effect(
  Hooks,
  Effect.gen(function* () {
    const stats = yield* Stats
    return {
      onConnect: () => Ref.update(stats, (s) => ({ ...s, open: s.open + 1 })),
      onDisconnect: () => Ref.update(stats, (s) => ({ ...s, open: s.open - 1 })),
      onFileReceived: () => Ref.update(stats, (s) => ({ ...s, received: s.received + 1 })),
    }
  }),
)

/** The second part of the app: a fiber that lives as long as the app and logs the stats. */
const StatsReporter = Layer.effectDiscard(Effect.gen(function* () {
  const stats = yield* Stats
  const report = Effect.flatMap(
    Ref.get(stats),
    ({ open, received }) => Effect.logInfo(`stats: ${open} session(s) open, ${received} file(s) received`),
  )
  yield* Effect.forkScoped(report.pipe(Effect.repeat(Schedule.spaced(`${Number(flags["stats-interval"])} seconds`))))
}))

const Ftp = FtpServer.layer({ host: flags.host, port: Number(flags.port) }).pipe(
  Layer.provide([
    DummyAuthorizer.layer((a) => a.addUser("user", "12345", flags.directory, { perm: "elradfmwMT" })),
    LocalFilesystem.layer,
    CountingHooks,
  ]),
)

// Both parts share the one Stats (a layer is built once however many layers need it).
const App = Layer.mergeAll(Ftp, StatsReporter).pipe(Layer.provide(Stats.layer))

runMain(Layer.launch(App).pipe(Effect.provide(FtpLogger.layer())))
