/**
 * The server's metrics, recorded with Effect's `Metric` into the `Metric.MetricRegistry` of the
 * context that {@link FtpMetrics.layer} was built in, and served as Prometheus text by
 * {@link FtpMetrics.layerPrometheus} (or exported by any exporter of that registry).
 *
 * Every label has a bounded set of values: command names from the command table (anything else is
 * `unknown`), reply classes, results and reasons. No user name, address or path is ever a label.
 * Without the layer the server records nothing: the recorder is `null` and every event skips it.
 *
 * @module
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import type * as Scope from "effect/Scope"
import { hostPort } from "../net/address.ts"

/** Why a connection was refused at connect. */
export type RefusalReason = "max_cons" | "per_ip" | "banned" | "tls" | "shutting_down"
/** How a login ended. */
export type LoginResult = "ok" | "failed" | "too_many_sessions" | "banned"
/** How a transfer ended: completed, interrupted (ABOR, shutdown), failed, or timed out without progress. */
export type TransferResult = "ok" | "aborted" | "failed" | "stalled"
/** Which connection a TLS handshake secured. */
export type TlsChannel = "control" | "data"
/** The upload actions. */
export type ActionName = "webhook" | "on_upload"
/** How an action's run ended; `dropped`: its queue was full. */
export type ActionResult = "ok" | "failed" | "timeout" | "dropped"
/** Passive ports: a lease taken or given back, or the range used up (a port chosen by the system instead). */
export type PassivePortEvent = "leased" | "released" | "fallback"

type Labels = Readonly<Record<string, string>>

/** One metric per set of labels, made on first use and kept: the label sets are bounded. */
const family = <M>(make: (labels: Labels) => M) => {
  const made = new Map<string, M>()
  return (labels: Labels): M => {
    const key = Object.values(labels).join("\u0000")
    let metric = made.get(key)
    if (metric === undefined) made.set(key, metric = make(labels))
    return metric
  }
}

const counter = (name: string, description: string) =>
  family((attributes) => Metric.counter(name, { description, attributes, incremental: true }))

/** Seconds: from a listing of a few files to a large upload over a slow line. */
const DURATION_BOUNDARIES = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800]

/**
 * The server's metrics, recorded into the `Metric.MetricRegistry` of `context`; servers get one
 * from {@link FtpMetrics.layer}, and call it as things happen.
 *
 * @example
 * ```ts
 * import { Context, Metric } from "effect"
 * import * as PrometheusMetrics from "effect/observability/PrometheusMetrics"
 * import { MetricsRecorder } from "@ftpd/server"
 * const context = Context.make(Metric.MetricRegistry, new Map())
 * new MetricsRecorder(context).login("failed")
 * console.log(PrometheusMetrics.formatUnsafe(context).includes('ftpd_logins_total{result="failed"} 1')) // true
 * ```
 */
export class MetricsRecorder {
  private readonly accepted = counter("ftpd_connections_accepted_total", "Connections admitted to a session.")
  private readonly refused = counter(
    "ftpd_connections_refused_total",
    "Connections refused at connect, by reason (max_cons, per_ip, banned, tls, shutting_down).",
  )
  private readonly sessions = Metric.gauge("ftpd_sessions_open", { description: "Sessions open now." })
  private readonly logins = counter(
    "ftpd_logins_total",
    "Logins by result (ok, failed, too_many_sessions, banned).",
  )
  private readonly commands = counter("ftpd_commands_total", "Commands by name and reply class (2xx, 5xx, ...).")
  private readonly sent = counter("ftpd_bytes_sent_total", "Bytes sent on data connections, by command.")
  private readonly received = counter("ftpd_bytes_received_total", "Bytes received on data connections, by command.")
  private readonly transfers = counter(
    "ftpd_transfers_total",
    "Transfers by command and result (ok, aborted, failed, stalled).",
  )
  private readonly durations = family((attributes) =>
    Metric.histogram("ftpd_transfer_duration_seconds", {
      description: "How long transfers took, by direction (download, upload, listing).",
      attributes,
      boundaries: DURATION_BOUNDARIES,
    })
  )
  private readonly bansActive = Metric.gauge("ftpd_bans_active", { description: "Addresses banned now." })
  private readonly bans = counter("ftpd_bans_total", "Addresses banned for failed logins or command floods.")
  private readonly leased = Metric.gauge("ftpd_passive_ports_leased", { description: "Passive ports leased now." })
  private readonly leases = counter("ftpd_passive_port_leases_total", "Passive ports leased.")
  private readonly fallbacks = counter(
    "ftpd_passive_port_fallbacks_total",
    "Passive ports chosen by the system because the configured range was used up.",
  )
  private readonly handshakes = counter(
    "ftpd_tls_handshakes_total",
    "TLS handshakes by channel (control, data), result (ok, failed) and protocol version.",
  )
  private readonly actions = counter(
    "ftpd_actions_total",
    "Upload actions (webhook, on_upload) by result (ok, failed, timeout, dropped).",
  )

  constructor(private readonly context: Context.Context<never>) {
    // Zero-valued series from the start, so that rates and alerts work before the first event.
    this.sessions.modifyUnsafe(0, context)
    this.bansActive.modifyUnsafe(0, context)
    this.leased.modifyUnsafe(0, context)
    this.accepted({}).updateUnsafe(0, context)
  }

  private add(metric: Metric.Metric<number, unknown>, value = 1): void {
    metric.updateUnsafe(value, this.context)
  }

  connectionAccepted(): void {
    this.add(this.accepted({}))
  }

  connectionRefused(reason: RefusalReason): void {
    this.add(this.refused({ reason }))
  }

  sessionOpened(): void {
    this.sessions.modifyUnsafe(1, this.context)
  }

  sessionClosed(): void {
    this.sessions.modifyUnsafe(-1, this.context)
  }

  login(result: LoginResult): void {
    this.add(this.logins({ result }))
  }

  /** `command`: a name from the command table, or `unknown`. */
  command(command: string, code: number): void {
    this.add(this.commands({ command, reply_class: `${Math.floor(code / 100)}xx` }))
  }

  transfer(
    command: string,
    direction: "download" | "upload" | "listing",
    result: TransferResult,
    bytes: number,
    seconds: number,
  ): void {
    this.add((direction === "upload" ? this.received : this.sent)({ command }), bytes)
    this.add(this.transfers({ command, result }))
    this.durations({ direction }).updateUnsafe(seconds, this.context)
  }

  /** The number of bans in force changed by `delta`. */
  bansChanged(delta: number): void {
    if (delta !== 0) this.bansActive.modifyUnsafe(delta, this.context)
  }

  banned(): void {
    this.add(this.bans({}))
  }

  passivePort(event: PassivePortEvent): void {
    if (event === "fallback") return this.add(this.fallbacks({}))
    this.leased.modifyUnsafe(event === "leased" ? 1 : -1, this.context)
    if (event === "leased") this.add(this.leases({}))
  }

  tlsHandshake(channel: TlsChannel, ok: boolean, version: string): void {
    this.add(this.handshakes({ channel, result: ok ? "ok" : "failed", version }))
  }

  action(action: ActionName, result: ActionResult): void {
    this.add(this.actions({ action, result }))
  }
}

/** Where {@link FtpMetrics.serve} listens. */
export interface MetricsEndpoint {
  readonly hostname: string
  readonly port: number
}

const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

/**
 * Serve `GET /metrics` on `hostname:port` until the scope closes, with the text `exposition` makes
 * at each scrape; returns the address bound (the real port when `port` is 0).
 */
export const serveExposition = (
  endpoint: MetricsEndpoint,
  exposition: () => string | Promise<string>,
): Effect.Effect<MetricsEndpoint, Error, Scope.Scope> =>
  Effect.gen(function* () {
    const handler = async (request: Request): Promise<Response> => {
      const path = new URL(request.url).pathname
      if (path !== "/metrics") return new Response("Not found: metrics are at /metrics\n", { status: 404 })
      if (request.method !== "GET" && request.method !== "HEAD") {
        return new Response("Method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } })
      }
      return new Response(await exposition(), { headers: { "content-type": CONTENT_TYPE } })
    }
    const server = yield* Effect.acquireRelease(
      Effect.try({
        try: () => Deno.serve({ hostname: endpoint.hostname, port: endpoint.port, onListen: () => {} }, handler),
        catch: (cause) =>
          new Error(
            cause instanceof Deno.errors.AddrInUse
              ? `${hostPort(endpoint.hostname, endpoint.port)} is already in use`
              : cause instanceof Deno.errors.NotCapable
              ? `no permission to listen on ${hostPort(endpoint.hostname, endpoint.port)} (grant --allow-net)`
              : `can't listen on ${hostPort(endpoint.hostname, endpoint.port)}: ${String(cause)}`,
            { cause },
          ),
      }),
      (server) => Effect.promise(() => server.shutdown()),
    )
    const addr = server.addr as Deno.NetAddr
    yield* Effect.logInfo(`metrics: Prometheus text on http://${hostPort(addr.hostname, addr.port)}/metrics`)
    return { hostname: addr.hostname, port: addr.port }
  })

/**
 * Effect's Prometheus text format, loaded at the first scrape: the module and what it imports hold
 * about 12 MiB, which a server that serves no metrics should not carry.
 */
const prometheus = () => import("effect/observability/PrometheusMetrics")

/** The Prometheus text of the registry in `context`. */
export const exposition = async (context: Context.Context<never>): Promise<string> =>
  (await prometheus()).formatUnsafe(context)

/** Serve the Prometheus text of the registry in the current context (see {@link serveExposition}). */
const serve = (endpoint: MetricsEndpoint): Effect.Effect<MetricsEndpoint, Error, Scope.Scope> =>
  Effect.flatMap(Effect.context<never>(), (context) => serveExposition(endpoint, () => exposition(context)))

/** Gauges that say the same thing in every worker (the bans are shared): their sum is their largest value. */
const SHARED_GAUGES = new Set(["ftpd_bans_active"])

/**
 * The expositions of several workers as one server's: each series' values added up (counters,
 * gauges of what each worker holds, histogram buckets, sums and counts), but for the gauges of
 * shared state, whose largest value is taken. Series that only some workers have are kept.
 *
 * @example
 * ```ts
 * import { sumExpositions } from "./metrics.ts"
 * const one = "# HELP x_total X.\n# TYPE x_total counter\nx_total{a=\"1\"} 2\n"
 * console.log(sumExpositions([one, one])) // ... x_total{a="1"} 4
 * ```
 */
export const sumExpositions = (texts: ReadonlyArray<string>): string => {
  interface Family {
    readonly comments: string[]
    readonly samples: Map<string, number>
  }
  const families = new Map<string, Family>()
  for (const text of texts) {
    let family: Family | undefined
    let name = ""
    for (const line of text.split("\n")) {
      if (line === "") continue
      const comment = /^# (HELP|TYPE) (\S+)/.exec(line)
      if (comment !== null) {
        name = comment[2]
        family = families.get(name)
        if (family === undefined) families.set(name, family = { comments: [], samples: new Map() })
        if (!family.comments.includes(line)) family.comments.push(line)
        continue
      }
      if (line.startsWith("#")) continue
      const space = line.lastIndexOf(" ")
      const key = line.slice(0, space)
      const value = Number(line.slice(space + 1))
      if (family === undefined) families.set(name, family = { comments: [], samples: new Map() })
      const before = family.samples.get(key)
      family.samples.set(
        key,
        before === undefined ? value : SHARED_GAUGES.has(name) ? Math.max(before, value) : before + value,
      )
    }
  }
  const lines: string[] = []
  for (const { comments, samples } of families.values()) {
    lines.push(...comments)
    for (const [key, value] of samples) lines.push(`${key} ${value}`)
  }
  return lines.length === 0 ? "" : lines.join("\n") + "\n"
}

const FtpMetricsRef: Context.Reference<MetricsRecorder | null> = Context.Reference<MetricsRecorder | null>(
  "@ftpd/server/FtpMetrics",
  { defaultValue: () => null },
)

/**
 * The server's metrics. Provide {@link FtpMetrics.layer} to record them into the context's
 * `Metric.MetricRegistry` (Effect's default registry unless the application provides its own),
 * then export them: {@link FtpMetrics.layerPrometheus} serves Prometheus text on `/metrics`, and
 * `PrometheusMetrics.format()` (from `effect/observability`) gives the same text to an HTTP
 * server of the application's.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { DummyAuthorizer, FtpMetrics, FtpServer, LocalFilesystem } from "@ftpd/server"
 *
 * const users = DummyAuthorizer.layer((a) => a.addAnonymous(Deno.cwd()))
 * const server = FtpServer.layer({ host: "127.0.0.1", port: 2121 })
 * const metrics = Layer.merge(FtpMetrics.layer, FtpMetrics.layerPrometheus({ hostname: "127.0.0.1", port: 9100 }))
 * Layer.launch(server.pipe(Layer.provide([users, LocalFilesystem.layer, metrics]))).pipe(Effect.runFork)
 * ```
 */
export const FtpMetrics: Context.Reference<MetricsRecorder | null> & {
  /** Record the server's metrics into the registry of the context the layer is built in. */
  readonly layer: Layer.Layer<never>
  /** Serve `GET /metrics` in Prometheus text format on `hostname:port`, in the current scope. */
  readonly serve: (endpoint: MetricsEndpoint) => Effect.Effect<MetricsEndpoint, Error, Scope.Scope>
  /** A layer serving `GET /metrics` for as long as it is in use. */
  readonly layerPrometheus: (endpoint: MetricsEndpoint) => Layer.Layer<never, Error>
} = Object.assign(FtpMetricsRef, {
  layer: Layer.effect(FtpMetricsRef, Effect.map(Effect.context<never>(), (context) => new MetricsRecorder(context))),
  serve,
  layerPrometheus: (endpoint: MetricsEndpoint): Layer.Layer<never, Error> => Layer.effectDiscard(serve(endpoint)),
})
