/**
 * Traces over OTLP/HTTP, configured from the standard OpenTelemetry environment variables.
 *
 * A server wraps each session, command and transfer in a span whenever the program's tracer
 * exports spans (any tracer but Effect's default). {@link otlpTracing} is such a tracer: Effect's
 * `OtlpTracer` (from `effect/observability`) over `fetch`. `ftpd` installs it when
 * `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; otherwise there is
 * no tracer, no span and no cost.
 *
 * @module
 */
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as OtlpExporter from "effect/observability/OtlpExporter"
import { VERSION } from "../options.ts"

/** Where and how spans are exported. */
export interface OtlpSettings {
  /** The traces URL, e.g. `http://collector:4318/v1/traces`. */
  readonly url: string
  readonly protocol: "http/protobuf" | "http/json"
  readonly headers: Readonly<Record<string, string>>
  readonly serviceName: string
  readonly resourceAttributes: Readonly<Record<string, string>>
  /** Milliseconds between exports (`OTEL_BSP_SCHEDULE_DELAY`; default 5000). */
  readonly exportIntervalMs?: number
}

/** The variables {@link otlpSettings} reads. */
export const OTEL_VARIABLES: ReadonlyArray<string> = [
  "OTEL_SDK_DISABLED",
  "OTEL_TRACES_EXPORTER",
  "OTEL_EXPORTER_OTLP_ENDPOINT",
  "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
  "OTEL_EXPORTER_OTLP_PROTOCOL",
  "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
  "OTEL_EXPORTER_OTLP_HEADERS",
  "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
  "OTEL_SERVICE_NAME",
  "OTEL_RESOURCE_ATTRIBUTES",
  "OTEL_BSP_SCHEDULE_DELAY",
]

/** The variables that turn tracing on. */
export const OTEL_ENDPOINT_VARIABLES: ReadonlyArray<string> = [
  "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
  "OTEL_EXPORTER_OTLP_ENDPOINT",
]

/** `key=value,key=value`, each part URI-encoded (W3C Baggage style, as OTEL_*_HEADERS are). */
const pairs = (name: string, text: string): Record<string, string> => {
  const record: Record<string, string> = {}
  for (const part of text.split(",")) {
    if (part.trim() === "") continue
    const equals = part.indexOf("=")
    if (equals <= 0) throw new RangeError(`${name}: expected key=value pairs separated by commas, got '${text}'`)
    try {
      record[decodeURIComponent(part.slice(0, equals).trim())] = decodeURIComponent(part.slice(equals + 1).trim())
    } catch {
      throw new RangeError(`${name}: bad percent-encoding in '${part.trim()}'`)
    }
  }
  return record
}

const httpUrl = (name: string, text: string): URL => {
  const url = URL.parse(text)
  if (url === null || (url.protocol !== "http:" && url.protocol !== "https:")) {
    throw new RangeError(`${name}: expected an http or https URL, got '${text}'`)
  }
  return url
}

/**
 * The OTLP settings the environment gives (`get` reads one variable), or `null` when it asks for
 * no traces. Throws a `RangeError` naming the variable when a value is bad.
 *
 * @example
 * ```ts
 * import { otlpSettings } from "./tracing.ts"
 * const env: Record<string, string> = { OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318" }
 * console.log(otlpSettings((name) => env[name])?.url) // "http://127.0.0.1:4318/v1/traces"
 * ```
 */
export const otlpSettings = (get: (name: string) => string | undefined): OtlpSettings | null => {
  const value = (name: string) => {
    const text = get(name)?.trim()
    return text === "" ? undefined : text
  }
  if (value("OTEL_SDK_DISABLED")?.toLowerCase() === "true") return null
  const exporters = value("OTEL_TRACES_EXPORTER")?.toLowerCase().split(",").map((name) => name.trim())
  if (exporters !== undefined && !exporters.includes("otlp")) return null
  const tracesEndpoint = value("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
  const endpoint = value("OTEL_EXPORTER_OTLP_ENDPOINT")
  let url: URL
  if (tracesEndpoint !== undefined) {
    url = httpUrl("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", tracesEndpoint)
  } else if (endpoint !== undefined) {
    url = httpUrl("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    url.pathname = `${url.pathname.replace(/\/$/, "")}/v1/traces`
  } else {
    return null
  }
  const protocolName = value("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") !== undefined
    ? "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
    : "OTEL_EXPORTER_OTLP_PROTOCOL"
  const protocol = value(protocolName) ?? "http/protobuf"
  if (protocol !== "http/protobuf" && protocol !== "http/json") {
    throw new RangeError(
      `${protocolName}: expected http/protobuf or http/json (grpc is not supported), got '${protocol}'`,
    )
  }
  const headersName = value("OTEL_EXPORTER_OTLP_TRACES_HEADERS") !== undefined
    ? "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
    : "OTEL_EXPORTER_OTLP_HEADERS"
  const delay = value("OTEL_BSP_SCHEDULE_DELAY")
  if (delay !== undefined && !/^\d+$/.test(delay)) {
    throw new RangeError(`OTEL_BSP_SCHEDULE_DELAY: expected milliseconds, got '${delay}'`)
  }
  return {
    url: url.href,
    protocol,
    headers: pairs(headersName, value(headersName) ?? ""),
    serviceName: value("OTEL_SERVICE_NAME") ?? "ftpd",
    resourceAttributes: pairs("OTEL_RESOURCE_ATTRIBUTES", value("OTEL_RESOURCE_ATTRIBUTES") ?? ""),
    ...(delay === undefined ? {} : { exportIntervalMs: Math.max(1, Number(delay)) }),
  }
}

/**
 * A tracer exporting spans to `settings.url` over OTLP/HTTP, in batches; what is left is sent
 * when the layer is released.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { DummyAuthorizer, FtpServer, LocalFilesystem, otlpTracing } from "@ftpd/server"
 *
 * const users = DummyAuthorizer.layer((a) => a.addAnonymous(Deno.cwd()))
 * const tracing = otlpTracing({
 *   url: "http://127.0.0.1:4318/v1/traces", protocol: "http/protobuf", headers: {}, serviceName: "ftpd",
 *   resourceAttributes: {},
 * })
 * const server = FtpServer.layer({ host: "127.0.0.1", port: 2121 })
 * Layer.launch(server.pipe(Layer.provide([users, LocalFilesystem.layer]), Layer.provide(tracing))).pipe(Effect.runFork)
 * ```
 */
export const otlpTracing = (settings: OtlpSettings): Layer.Layer<OtlpExporter.Flusher> =>
  // The exporter's modules are loaded only when traces are on: a server without them does not hold them.
  Layer.unwrap(Effect.promise(async () => {
    const [OtlpTracer, OtlpSerialization, FetchHttpClient] = await Promise.all([
      import("effect/observability/OtlpTracer"),
      import("effect/observability/OtlpSerialization"),
      import("effect/http/FetchHttpClient"),
    ])
    return OtlpTracer.layer({
      url: settings.url,
      headers: settings.headers,
      resource: {
        serviceName: settings.serviceName,
        serviceVersion: VERSION,
        attributes: settings.resourceAttributes,
      },
      ...(settings.exportIntervalMs === undefined ? {} : { exportInterval: settings.exportIntervalMs }),
    }).pipe(
      Layer.provide(settings.protocol === "http/json" ? OtlpSerialization.layerJson : OtlpSerialization.layerProtobuf),
      Layer.provide(FetchHttpClient.layer),
      // The settings are read already: the exporter must not read the environment again (which
      // would take every variable, and need --allow-env for all of them).
      Layer.provide(Layer.succeed(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env: {} }))),
    )
  }))
