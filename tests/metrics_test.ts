/**
 * Prometheus metrics: what `/metrics` says after real clients did real things, checked by
 * `promtool check metrics` (Debian `prometheus`) and by value.
 */
import "../src/_no_async_hooks.ts"
import assert from "node:assert/strict"
import { Context, Layer, Metric } from "effect"
import * as PrometheusMetrics from "effect/observability/PrometheusMetrics"
import { FtpMetrics } from "../src/observability/metrics.ts"
import {
  curl,
  eventually,
  installed,
  loggedIn,
  makeCertificate,
  RawClient,
  readAll,
  sparseFile,
  spawnCli,
  startServer,
  type TestServerOptions,
} from "./helpers.ts"

const SOURCE = new URL("../src", import.meta.url).pathname

/** One sample's value in Prometheus text, or `undefined` when the series is absent. */
const sample = (text: string, name: string, labels: Record<string, string> = {}): number | undefined => {
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (match === null || match[1] !== name) continue
    const found = Object.fromEntries(
      [...(match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]),
    )
    if (JSON.stringify(Object.entries(found).sort()) === JSON.stringify(Object.entries(labels).sort())) {
      return Number(match[3])
    }
  }
  return undefined
}

/** `promtool check metrics` on `text`: its exit code and what it said. */
const promtool = async (text: string): Promise<{ code: number; output: string }> => {
  const child = new Deno.Command("promtool", {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn()
  const writer = child.stdin.getWriter()
  await writer.write(new TextEncoder().encode(text))
  await writer.close()
  const out = await child.output()
  const decoder = new TextDecoder()
  return { code: out.code, output: decoder.decode(out.stdout) + decoder.decode(out.stderr) }
}

/** A server recording into a registry of the test's own; `metrics()` is its Prometheus text. */
const withMetrics = async (
  options: TestServerOptions,
  f: (server: Awaited<ReturnType<typeof startServer>>, metrics: () => string) => Promise<void>,
) => {
  const registry: Metric.MetricRegistry = new Map()
  const context = Context.make(Metric.MetricRegistry, registry)
  const server = await startServer({
    ...options,
    layer: FtpMetrics.layer.pipe(Layer.provide(Layer.succeed(Metric.MetricRegistry, registry))),
  })
  try {
    await f(server, () => PrometheusMetrics.formatUnsafe(context))
  } finally {
    await server.close()
  }
}

for (const workers of [1, 2]) {
  const name = workers === 1 ? "ftpd --metrics" : "ftpd --metrics --workers 2 (the sum of both workers)"
  Deno.test(`${name}: after real downloads, uploads, logins and refusals, /metrics passes promtool and counts each`, async () => {
    if (!(await installed("promtool", "prometheus"))) return
    await realClientsCounted(workers)
  })
}

async function realClientsCounted(workers: number) {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-metrics-" }))
  const content = "x".repeat(12_345)
  await Deno.writeTextFile(`${dir}/a.txt`, content)
  await Deno.writeTextFile(`${dir}/up.src`, "y".repeat(777))
  const cli = await spawnCli(
    // Workers load ftpd's modules anew: they need to read them; and they serve with the descriptor jail.
    ["--allow-net=127.0.0.1", `--allow-read=${dir},${SOURCE}`, `--allow-write=${dir}`, "--allow-ffi"],
    [
      ...["-i", "127.0.0.1", "-p", "0", "-d", dir, "-w", "-u", "user", "-P", "pass"],
      ...["--metrics", "127.0.0.1:0", "--max-cons-per-ip", "2", "--auth-failed-timeout", "0"],
      ...["--workers", String(workers)],
    ],
  )
  try {
    // With workers, the main thread serves /metrics once they have all started.
    const endpoint = /Prometheus text on http:\/\/127\.0\.0\.1:(\d+)\/metrics/
    await eventually(() => endpoint.test(cli.stderr()), 10_000, "the metrics endpoint")
    const metricsPort = Number(endpoint.exec(cli.stderr())?.[1])
    const url = `ftp://user:pass@127.0.0.1:${cli.port}`
    assert.equal((await curl("-o", "/dev/null", `${url}/a.txt`)).code, 0)
    assert.equal((await curl("-T", `${dir}/up.src`, `${url}/up.bin`)).code, 0)
    assert.equal((await curl("-o", "/dev/null", `${url}/`)).code, 0)
    assert.notEqual((await curl("-o", "/dev/null", `ftp://user:wrong@127.0.0.1:${cli.port}/`)).code, 0)
    // Two connections from 127.0.0.1 are all --max-cons-per-ip allows: the third gets 421.
    const held = [await RawClient.connect(cli.port), await RawClient.connect(cli.port)]
    const third = await Deno.connect({ hostname: "127.0.0.1", port: cli.port })
    const refusal = new TextDecoder().decode(await readAll(third))
    third.close()
    assert.match(refusal, /^421 /)
    const open = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()
    assert.equal(sample(open, "ftpd_sessions_open"), 2)
    for (const client of held) client.close()

    const missing = await fetch(`http://127.0.0.1:${metricsPort}/other`)
    await missing.body?.cancel()
    assert.equal(missing.status, 404)
    let text = ""
    await eventually(
      async () => {
        const response = await fetch(`http://127.0.0.1:${metricsPort}/metrics`)
        assert.equal(response.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8")
        text = await response.text()
        return sample(text, "ftpd_sessions_open") === 0
      },
      5000,
      "the sessions to close",
    )
    const checked = await promtool(text)
    assert.equal(checked.code, 0, checked.output)
    assert.equal(checked.output.trim(), "", "promtool finds nothing to lint")
    assert.equal(sample(text, "ftpd_connections_accepted_total"), 6)
    assert.equal(sample(text, "ftpd_connections_refused_total", { reason: "per_ip" }), 1)
    assert.equal(sample(text, "ftpd_logins_total", { result: "ok" }), 3)
    assert.equal(sample(text, "ftpd_logins_total", { result: "failed" }), 1)
    assert.equal(sample(text, "ftpd_bytes_sent_total", { command: "RETR" }), 12_345)
    assert.equal(sample(text, "ftpd_bytes_received_total", { command: "STOR" }), 777)
    assert.ok(sample(text, "ftpd_bytes_sent_total", { command: "LIST" })! > 0)
    assert.equal(sample(text, "ftpd_transfers_total", { command: "RETR", result: "ok" }), 1)
    assert.equal(sample(text, "ftpd_transfers_total", { command: "STOR", result: "ok" }), 1)
    assert.equal(sample(text, "ftpd_transfer_duration_seconds_count", { direction: "download" }), 1)
    assert.equal(sample(text, "ftpd_transfer_duration_seconds_count", { direction: "upload" }), 1)
    assert.equal(sample(text, "ftpd_transfer_duration_seconds_bucket", { direction: "upload", le: "+Inf" }), 1)
    assert.equal(sample(text, "ftpd_commands_total", { command: "RETR", reply_class: "1xx" }), 1)
    assert.equal(sample(text, "ftpd_commands_total", { command: "PASS", reply_class: "5xx" }), 1)
    assert.equal(sample(text, "ftpd_passive_port_leases_total"), 3)
    assert.equal(sample(text, "ftpd_passive_ports_leased"), 0)
    // No user name, address or path is a label.
    assert.doesNotMatch(text, /user|127\.0\.0\.1|a\.txt/)
  } finally {
    await cli.stop()
    await Deno.remove(dir, { recursive: true })
  }
}

Deno.test("without FtpMetrics nothing is recorded; with it, metrics go to the application's own registry", async () => {
  const before = Metric.snapshotUnsafe(Context.empty()).filter((m) => m.id.startsWith("ftpd_")).length
  const plain = await startServer({})
  try {
    ;(await loggedIn(plain)).close()
  } finally {
    await plain.close()
  }
  assert.equal(Metric.snapshotUnsafe(Context.empty()).filter((m) => m.id.startsWith("ftpd_")).length, before)
  await withMetrics({}, async (server, metrics) => {
    const client = await loggedIn(server)
    await client.command("QUIT")
    client.close()
    await eventually(() => sample(metrics(), "ftpd_sessions_open") === 0)
    assert.equal(sample(metrics(), "ftpd_logins_total", { result: "ok" }), 1)
    assert.equal(sample(metrics(), "ftpd_commands_total", { command: "QUIT", reply_class: "2xx" }), 1)
  })
  assert.equal(Metric.snapshotUnsafe(Context.empty()).filter((m) => m.id.startsWith("ftpd_")).length, before)
})

Deno.test("an ABORted download counts as aborted, a stalled one as stalled, and unknown commands as unknown", async () => {
  await withMetrics({ dataTimeout: 1 }, async (server, metrics) => {
    await sparseFile(`${server.root}/big.bin`, 1 << 30)
    const client = await loggedIn(server)
    try {
      let data = await client.passive()
      assert.equal((await client.command("RETR big.bin")).code, 150)
      await data.read(new Uint8Array(65536))
      await client.send("ABOR")
      assert.equal((await client.readReply()).code, 426)
      assert.equal((await client.readReply()).code, 226)
      data.close()
      data = await client.passive()
      assert.equal((await client.command("RETR big.bin")).code, 150)
      // Nothing read: the transfer stalls and times out after a second.
      assert.equal((await client.readReply(10_000)).code, 426)
      data.close()
      for (const line of ["XYZZY", "FOO bar", "\u00e9t\u00e9"]) assert.equal((await client.command(line)).code, 500)
      const text = metrics()
      assert.equal(sample(text, "ftpd_transfers_total", { command: "RETR", result: "aborted" }), 1)
      assert.equal(sample(text, "ftpd_transfers_total", { command: "RETR", result: "stalled" }), 1)
      assert.equal(sample(text, "ftpd_commands_total", { command: "unknown", reply_class: "5xx" }), 3)
      assert.doesNotMatch(text, /XYZZY|FOO/)
    } finally {
      client.close()
    }
  })
})

Deno.test("bans, refusals of banned addresses, and passive ranges used up are counted; leases are a gauge", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 })
  const port = probe.addr.port
  probe.close()
  const options = { banAfterFailures: 1, passivePorts: [port, port] as const }
  await withMetrics(options, async (server, metrics) => {
    const first = await loggedIn(server)
    const second = await loggedIn(server)
    try {
      assert.equal(await first.epsvPort(), port)
      assert.notEqual(await second.epsvPort(), port)
      assert.equal(sample(metrics(), "ftpd_passive_ports_leased"), 2)
      assert.equal(sample(metrics(), "ftpd_passive_port_fallbacks_total"), 1)
    } finally {
      first.close()
      second.close()
    }
    await eventually(() => sample(metrics(), "ftpd_passive_ports_leased") === 0, 5000, "the leases to end")
    const guesser = await RawClient.connect(server.port)
    await guesser.command("USER user")
    assert.equal((await guesser.command("PASS wrong")).code, 421)
    guesser.close()
    await eventually(() => sample(metrics(), "ftpd_bans_active") === 1, 5000, "the ban to be counted")
    const refused = await Deno.connect({ hostname: "127.0.0.1", port: server.port })
    await readAll(refused)
    refused.close()
    const text = metrics()
    assert.equal(sample(text, "ftpd_bans_total"), 1)
    assert.equal(sample(text, "ftpd_logins_total", { result: "failed" }), 1)
    assert.equal(sample(text, "ftpd_connections_refused_total", { reason: "banned" }), 1)
  })
})

Deno.test("TLS handshakes are counted by channel, result and version: AUTH TLS and PROT P with curl, garbage on the implicit port", async () => {
  const cert = await makeCertificate()
  try {
    await withMetrics({ tls: { cert: cert.cert, key: cert.key }, implicitTlsPort: 0 }, async (server, metrics) => {
      await Deno.writeTextFile(`${server.root}/a.txt`, "hello")
      const got = await curl("--ssl-reqd", "-k", "-o", "/dev/null", `ftp://user:pass@127.0.0.1:${server.port}/a.txt`)
      assert.equal(got.code, 0, got.stderr)
      const implicitPort = Number(/implicit TLS on 127\.0\.0\.1:(\d+)/.exec(server.logs.join("\n"))![1])
      const plain = await Deno.connect({ hostname: "127.0.0.1", port: implicitPort })
      await plain.write(new TextEncoder().encode("USER anonymous\r\n\r\n\r\n"))
      await readAll(plain).catch(() => undefined)
      plain.close()
      await eventually(
        () => sample(metrics(), "ftpd_connections_refused_total", { reason: "tls" }) === 1,
        5000,
        "the failed handshake to be counted",
      )
      const text = metrics()
      const control = ["TLSv1.2", "TLSv1.3"].map((version) =>
        sample(text, "ftpd_tls_handshakes_total", { channel: "control", result: "ok", version }) ?? 0
      )
      assert.equal(control[0] + control[1], 1, text)
      const data = ["TLSv1.2", "TLSv1.3", "unknown"].map((version) =>
        sample(text, "ftpd_tls_handshakes_total", { channel: "data", result: "ok", version }) ?? 0
      )
      assert.equal(data.reduce((a, b) => a + b), 1, text)
      assert.equal(
        sample(text, "ftpd_tls_handshakes_total", { channel: "control", result: "failed", version: "none" }),
        1,
      )
    })
  } finally {
    await cert.remove()
  }
})
