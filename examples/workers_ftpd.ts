/**
 * An FTP server on every core: `runWorkers` starts one worker per core (or `--workers N`), each
 * running examples/workers_ftpd_worker.ts, all sharing the control port. The connection limits,
 * bans and bandwidth limits hold for the whole server; each worker gets its own slice of the
 * passive range. Ctrl-C lets running transfers finish, then stops every worker.
 *
 * ```sh
 * deno run --unstable-net --allow-net --allow-read=. --allow-write=. --allow-ffi examples/workers_ftpd.ts
 * curl ftp://user:12345@localhost:2121/
 * ```
 *
 * Flags: `--host` (default: all interfaces), `--port` (2121), `--directory` (the current one),
 * `--passive-ports FROM-TO` (60000-60099), `--workers` (one per core).
 *
 * @module
 */
import { FtpLogger, runMain, runWorkers } from "../mod.ts"
import { Effect } from "effect"
import { parseArgs } from "node:util"
import type { WorkerData } from "./workers_ftpd_worker.ts"

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    host: { type: "string" },
    port: { type: "string", default: "2121" },
    directory: { type: "string", default: "." },
    "passive-ports": { type: "string", default: "60000-60099" },
    workers: { type: "string", default: "auto" },
  },
})
const [from, to] = flags["passive-ports"].split("-").map(Number)

const workers = runWorkers({
  workers: flags.workers === "auto" ? "auto" : Number(flags.workers),
  // Each worker imports this module and builds its own authorizer, filesystem and logger.
  module: new URL("./workers_ftpd_worker.ts", import.meta.url),
  options: { host: flags.host, port: Number(flags.port), passivePorts: [from, to], maxConsPerIp: 5 },
  // Plain data only: it is copied to each worker.
  data: { directory: await Deno.realPath(flags.directory) } satisfies WorkerData,
})

// The coordinator's own lines (the workers' slices, a replaced worker) go through this logger.
runMain(Effect.scoped(Effect.andThen(workers, Effect.never)).pipe(Effect.provide(FtpLogger.layer())))
