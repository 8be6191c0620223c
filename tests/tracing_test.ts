/**
 * Traces: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, `ftpd` exports a span per session, a child span
 * per command and a span per transfer over OTLP/HTTP to a collector started by the test; without
 * it, none.
 */
import "../src/_no_async_hooks.ts"
import assert from "node:assert/strict"
import { otlpTracing } from "../src/observability/tracing.ts"
import { eventually, loggedIn, readAll, spawnCli, startServer } from "./helpers.ts"

interface Span {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly name: string
  readonly attributes: Record<string, unknown>
}

interface AnyValue {
  readonly stringValue?: string
  readonly intValue?: string | number
  readonly doubleValue?: number
  readonly boolValue?: boolean
}

const valueOf = (value: AnyValue): unknown =>
  value.stringValue ?? (value.intValue !== undefined ? Number(value.intValue) : value.doubleValue ?? value.boolValue)

/** An OTLP/HTTP collector on a free port, keeping the spans and resources of every JSON export. */
const collector = () => {
  const spans: Span[] = []
  const resources: Record<string, unknown>[] = []
  const contentTypes: string[] = []
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (request) => {
    assert.equal(new URL(request.url).pathname, "/v1/traces")
    contentTypes.push(request.headers.get("content-type") ?? "")
    if (request.headers.get("content-type") !== "application/json") {
      await request.body?.cancel()
      return new Response("{}")
    }
    const body = await request.json()
    for (const resourceSpans of body.resourceSpans) {
      const resource: Record<string, unknown> = {}
      for (const { key, value } of resourceSpans.resource.attributes) resource[key] = valueOf(value)
      resources.push(resource)
      for (const scopeSpans of resourceSpans.scopeSpans) {
        for (const span of scopeSpans.spans) {
          const attributes: Record<string, unknown> = {}
          for (const { key, value } of span.attributes) attributes[key] = valueOf(value)
          spans.push({ ...span, parentSpanId: span.parentSpanId || undefined, attributes })
        }
      }
    }
    return new Response("{}", { headers: { "content-type": "application/json" } })
  })
  return { spans, resources, contentTypes, url: `http://127.0.0.1:${server.addr.port}`, close: () => server.shutdown() }
}

Deno.test("OTEL_EXPORTER_OTLP_ENDPOINT: a session's spans reach the collector, commands and the transfer linked to their parents", async () => {
  const otlp = collector()
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-traces-" }))
  await Deno.writeTextFile(`${dir}/a.txt`, "traced bytes")
  const cli = await spawnCli(
    ["--allow-net=127.0.0.1", `--allow-read=${dir}`, "--allow-env=OTEL_*"],
    ["-i", "127.0.0.1", "-p", "0", "-d", dir, "-u", "user", "-P", "pass"],
    {
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_BSP_SCHEDULE_DELAY: "100",
      OTEL_SERVICE_NAME: "ftpd-under-test",
    },
  )
  try {
    assert.match(cli.stderr(), /monitoring: metrics off, traces on, xferlog off/)
    const client = await loggedIn(cli.port)
    const data = await client.passive()
    assert.equal((await client.command("RETR a.txt")).code, 150)
    assert.equal(new TextDecoder().decode(await readAll(data)), "traced bytes")
    assert.equal((await client.readReply()).code, 226)
    assert.equal((await client.command("QUIT")).code, 221)
    client.close()
    await eventually(() => otlp.spans.some((span) => span.name === "ftp.session"), 10_000, "the session span")
    const session = otlp.spans.find((span) => span.name === "ftp.session")!
    assert.equal(session.parentSpanId, undefined, "a session is a trace of its own")
    assert.equal(session.attributes["client.address"], "127.0.0.1")
    assert.equal(session.attributes["enduser.id"], "user")
    assert.match(String(session.attributes["ftp.session.id"]), /^[0-9a-f]{8}$/)
    const mine = otlp.spans.filter((span) => span.traceId === session.traceId)
    const commands = mine.filter((span) => span.parentSpanId === session.spanId)
    assert.deepEqual(commands.map((span) => span.name), ["USER", "PASS", "TYPE", "EPSV", "RETR", "QUIT"])
    const codes = Object.fromEntries(commands.map((span) => [span.name, span.attributes["ftp.reply.code"]]))
    assert.deepEqual(codes, { USER: 331, PASS: 230, TYPE: 200, EPSV: 229, RETR: 150, QUIT: 221 })
    const retr = commands.find((span) => span.name === "RETR")!
    const transfer = mine.find((span) => span.name === "ftp.transfer")!
    assert.equal(transfer.parentSpanId, retr.spanId)
    assert.equal(transfer.attributes["ftp.command"], "RETR")
    assert.equal(transfer.attributes["ftp.path"], "/a.txt")
    assert.equal(transfer.attributes["ftp.transfer.bytes"], 12)
    assert.equal(transfer.attributes["ftp.transfer.result"], "ok")
    assert.equal(transfer.attributes["ftp.transfer.throttled_ms"], 0)
    assert.equal(otlp.resources[0]["service.name"], "ftpd-under-test")
  } finally {
    await cli.stop()
    await otlp.close()
    await Deno.remove(dir, { recursive: true })
  }
})

Deno.test("a throttled transfer's span says how long it waited for the bandwidth limit; protobuf export works too", async () => {
  const otlp = collector()
  const json = collector()
  const server = await startServer({
    writeLimit: 100_000,
    layer: otlpTracing({
      url: `${json.url}/v1/traces`,
      protocol: "http/json",
      headers: {},
      serviceName: "ftpd",
      resourceAttributes: {},
      exportIntervalMs: 50,
    }),
  })
  try {
    await Deno.writeFile(`${server.root}/b.bin`, new Uint8Array(250_000))
    const client = await loggedIn(server)
    const data = await client.passive()
    assert.equal((await client.command("RETR b.bin")).code, 150)
    assert.equal((await readAll(data)).length, 250_000)
    assert.equal((await client.readReply()).code, 226)
    client.close()
    await eventually(() => json.spans.some((span) => span.name === "ftp.transfer"), 10_000, "the transfer span")
    const transfer = json.spans.find((span) => span.name === "ftp.transfer")!
    // 250 kB at 100 kB/s with a 10 kB burst: about 2.4 s spent waiting for the bucket.
    assert.ok(Number(transfer.attributes["ftp.transfer.throttled_ms"]) > 1500, JSON.stringify(transfer.attributes))
  } finally {
    await server.close()
    await json.close()
  }
  const protobuf = await startServer({
    layer: otlpTracing({
      url: `${otlp.url}/v1/traces`,
      protocol: "http/protobuf",
      headers: {},
      serviceName: "ftpd",
      resourceAttributes: {},
      exportIntervalMs: 50,
    }),
  })
  try {
    ;(await loggedIn(protobuf)).close()
    await eventually(() => otlp.contentTypes.length > 0, 10_000, "a protobuf export")
    assert.equal(otlp.contentTypes[0], "application/x-protobuf")
  } finally {
    await protobuf.close()
    await otlp.close()
  }
})

Deno.test("without OTEL_EXPORTER_OTLP_ENDPOINT there are no traces (and the banner says so)", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-traces-" }))
  const cli = await spawnCli(["--allow-net=127.0.0.1", `--allow-read=${dir}`, "--allow-env=OTEL_*"], [
    ...["-i", "127.0.0.1", "-p", "0", "-d", dir],
  ])
  try {
    assert.match(cli.stderr(), /monitoring: metrics off, traces off, xferlog off/)
  } finally {
    await cli.stop()
    await Deno.remove(dir, { recursive: true })
  }
})
