/**
 * Upload actions: the webhook and the upload program, with receivers and programs that answer,
 * fail, are slow and hang. None of them holds up a session, and every one is bounded.
 */
import "../src/_no_async_hooks.ts"
import assert from "node:assert/strict"
import { Context, Layer, Metric } from "effect"
import * as PrometheusMetrics from "effect/observability/PrometheusMetrics"
import { Webhook } from "../src/observability/actions.ts"
import { FtpMetrics } from "../src/observability/metrics.ts"
import {
  eventually,
  loggedIn,
  RawClient,
  readAll,
  sleep,
  startServer,
  type TestServer,
  type TestServerOptions,
  writeAllAndClose,
} from "./helpers.ts"

const encoder = new TextEncoder()

/**
 * An HTTP receiver on a free port: `answer` decides each response (`closing` settles when the test
 * closes the receiver, which waits for every request); `events` are the bodies answered with 2xx.
 */
const receiver = (
  answer: (attempt: number, closing: Promise<void>) => Promise<Response> | Response = () => new Response("ok"),
) => {
  const events: Record<string, unknown>[] = []
  const closing = Promise.withResolvers<void>()
  let attempts = 0
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (request) => {
    assert.equal(request.method, "POST")
    assert.equal(request.headers.get("content-type"), "application/json")
    const event = await request.json()
    attempts++
    const response = await answer(attempts, closing.promise)
    if (response.ok) events.push(event)
    return response
  })
  return {
    events,
    attempts: () => attempts,
    url: `http://127.0.0.1:${server.addr.port}/hook`,
    close: () => {
      closing.resolve()
      return server.shutdown()
    },
  }
}

/** A server with metrics in a registry of the test's own; `layer` (a webhook's, say) gets them too. */
const withServer = async (
  options: TestServerOptions,
  f: (server: TestServer, metrics: () => string) => Promise<void>,
  layer: Layer.Layer<never> = Layer.empty,
) => {
  const registry: Metric.MetricRegistry = new Map()
  const metrics = FtpMetrics.layer.pipe(Layer.provide(Layer.succeed(Metric.MetricRegistry, registry)))
  const server = await startServer({ ...options, layer: Layer.provideMerge(layer, metrics) })
  try {
    await f(server, () => PrometheusMetrics.formatUnsafe(Context.make(Metric.MetricRegistry, registry)))
  } finally {
    await server.close()
  }
}

const actions = (text: string, action: string, result: string): number =>
  Number(new RegExp(`^ftpd_actions_total\\{action="${action}",result="${result}"\\} (\\d+)$`, "m").exec(text)?.[1] ?? 0)

const upload = async (client: RawClient, name: string, bytes: Uint8Array) => {
  const data = await client.passive()
  assert.equal((await client.command(`STOR ${name}`)).code, 150)
  await writeAllAndClose(data, bytes)
  assert.equal((await client.readReply()).code, 226)
}

Deno.test("webhook: a JSON event for each upload, download, delete, rename, directory, login and failed login", async () => {
  const hook = receiver()
  try {
    await withServer({ webhook: hook.url }, async (server, metrics) => {
      const guesser = await RawClient.connect(server.port)
      await guesser.command("USER mallory")
      assert.equal((await guesser.command("PASS guess")).code, 530)
      guesser.close()
      const client = await loggedIn(server)
      await upload(client, "a.txt", encoder.encode("hello"))
      const data = await client.passive()
      assert.equal((await client.command("RETR a.txt")).code, 150)
      await readAll(data)
      assert.equal((await client.readReply()).code, 226)
      assert.equal((await client.command("RNFR a.txt")).code, 350)
      assert.equal((await client.command("RNTO b.txt")).code, 250)
      assert.equal((await client.command("DELE b.txt")).code, 250)
      assert.equal((await client.command("MKD d")).code, 257)
      assert.equal((await client.command("RMD d")).code, 250)
      client.close()
      await eventually(() => hook.events.length === 8, 5000, `eight events (got ${hook.events.length})`)
      // Workers run at once: the order is the order of each kind of event, not overall.
      const byKind = Object.fromEntries(hook.events.map((event) => [event.event, event]))
      assert.deepEqual(Object.keys(byKind).sort(), [
        "delete",
        "download",
        "login",
        "login_failed",
        "mkdir",
        "rename",
        "rmdir",
        "upload",
      ])
      assert.equal(hook.events.filter((event) => event.event === "login").length, 1)
      const up = byKind.upload
      assert.deepEqual(
        {
          user: up.user,
          path: up.path,
          file: up.file,
          size: up.size,
          client: (up.client as { address: string }).address,
        },
        { user: "user", path: "/a.txt", file: `${server.root}/a.txt`, size: 5, client: "127.0.0.1" },
      )
      assert.match(String(up.session), /^[0-9a-f]{8}$/)
      assert.match(String(up.time), /^\d{4}-\d\d-\d\dT/)
      assert.equal(byKind.download.size, 5)
      assert.deepEqual([byKind.rename.from, byKind.rename.to], ["/a.txt", "/b.txt"])
      assert.equal(byKind.delete.path, "/b.txt")
      assert.deepEqual([byKind.login_failed.user, byKind.mkdir.path, byKind.rmdir.path], ["mallory", "/d", "/d"])
      await eventually(() => actions(metrics(), "webhook", "ok") === 8, 5000, "eight webhooks counted")
    })
  } finally {
    await hook.close()
  }
})

Deno.test("webhook: a failing receiver is retried with backoff until it answers; a hanging one is given up at the timeout", async () => {
  const flaky = receiver((attempt) => new Response("busy", { status: attempt <= 2 ? 503 : 200 }))
  const hanging = receiver((_, closing) => closing.then(() => new Response("too late", { status: 503 })))
  try {
    await withServer({}, async (server, metrics) => {
      const started = Date.now()
      ;(await loggedIn(server)).close()
      await eventually(() => flaky.events.length === 1, 10_000, "the third attempt to succeed")
      assert.equal(flaky.attempts(), 3)
      // Backoff of 1 s, then 2 s, between the three attempts.
      assert.ok(Date.now() - started >= 2900, `${Date.now() - started} ms`)
      assert.equal(actions(metrics(), "webhook", "ok"), 1)
    }, Webhook.layer({ url: flaky.url, timeout: 5 }))
    await withServer({}, async (server, metrics) => {
      const client = await loggedIn(server)
      // The session goes on while the receiver hangs.
      assert.equal((await client.command("NOOP")).code, 200)
      client.close()
      await eventually(() => actions(metrics(), "webhook", "timeout") === 1, 10_000, "the webhook to time out")
      assert.equal(hanging.attempts(), 2)
      assert.ok(
        server.logs.some((line) => /webhook for login \(session \w+\) timeout: no answer within 0\.3 s/.test(line)),
      )
    }, Webhook.layer({ url: hanging.url, timeout: 0.3, retries: 1 }))
  } finally {
    await flaky.close()
    await hanging.close()
  }
})

Deno.test("webhook: a full queue drops events, with a log line and a metric, instead of growing", async () => {
  const released = Promise.withResolvers<void>()
  const release = () => released.resolve()
  const stuck = receiver(async (_, closing) => {
    await Promise.race([released.promise, closing])
    return new Response("ok")
  })
  try {
    await withServer(
      { webhook: stuck.url, actionConcurrency: 1, actionQueue: 2, actionTimeout: 30 },
      async (server, metrics) => {
        for (let i = 0; i < 6; i++) (await loggedIn(server)).close()
        // One running, two waiting, three dropped.
        await eventually(() => actions(metrics(), "webhook", "dropped") === 3, 5000, "three drops")
        assert.equal(
          server.logs.filter((line) => /webhook for login .* dropped: 2 jobs are waiting already/.test(line)).length,
          3,
        )
        release()
        await eventually(() => stuck.events.length === 3, 5000, "the three kept events")
        assert.equal(actions(metrics(), "webhook", "ok"), 3)
      },
    )
  } finally {
    release()
    await stuck.close()
  }
})

/** A directory with an executable shell script `program` whose body is `script`. */
const withProgram = async (script: string, f: (program: string, dir: string) => Promise<void>) => {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-on-upload-" }))
  try {
    const program = `${dir}/on-upload.sh`
    await Deno.writeTextFile(program, `#!/bin/sh\n${script.replaceAll("$DIR", dir)}\n`)
    await Deno.chmod(program, 0o755)
    await f(program, dir)
  } finally {
    await Deno.remove(dir, { recursive: true })
  }
}

Deno.test("on-upload: the program runs after each completed upload, the upload in its environment, no shell in between", async () => {
  // Written aside and moved into place, so that the test never reads half of it.
  // FTPD_TEST_* is the suite's own setting, inherited from the environment like any other variable.
  const script =
    `env | grep '^FTPD_' | grep -v '^FTPD_TEST_' | sort > "$DIR/tmp-$$" && mv "$DIR/tmp-$$" "$DIR/env-$FTPD_SIZE"`
  await withProgram(script, async (program, dir) => {
    await withServer({ onUpload: program }, async (server, metrics) => {
      const client = await loggedIn(server)
      const name = "$(touch pwned);`touch pwned2`.txt"
      await upload(client, name, encoder.encode("12345"))
      // A cut upload is no completed upload: no run.
      const data = await client.passive()
      assert.equal((await client.command("STOR cut.bin")).code, 150)
      await data.write(new Uint8Array(10))
      await client.send("ABOR")
      await client.readReply()
      data.close()
      client.close()
      await eventually(async () => (await Deno.stat(`${dir}/env-5`).catch(() => null)) !== null, 5000, "the run")
      const env = Object.fromEntries(
        (await Deno.readTextFile(`${dir}/env-5`)).trim().split("\n").map((line) => line.split(/=(.*)/s).slice(0, 2)),
      )
      const port = Number(env.FTPD_REMOTE_PORT)
      assert.deepEqual(env, {
        FTPD_PATH: `${server.root}/${name}`,
        FTPD_REMOTE_ADDRESS: "127.0.0.1",
        FTPD_REMOTE_PORT: String(port),
        FTPD_SESSION: env.FTPD_SESSION,
        FTPD_SIZE: "5",
        FTPD_USER: "user",
        FTPD_VIRTUAL_PATH: `/${name}`,
      })
      await eventually(() => actions(metrics(), "on_upload", "ok") === 1)
      await sleep(200)
      assert.deepEqual([...Deno.readDirSync(dir)].map((entry) => entry.name).sort(), ["env-5", "on-upload.sh"])
      assert.equal(await Deno.stat(`${server.root}/pwned`).catch(() => null), null)
      assert.equal(actions(metrics(), "on_upload", "ok"), 1)
    })
  })
})

Deno.test("on-upload: a slow program holds up no session, a failing one is logged, a hanging one is killed at the timeout", async () => {
  const script = [
    `case "$FTPD_VIRTUAL_PATH" in`,
    `  /slow.txt) sleep 1; touch "$DIR/slow-done" ;;`,
    `  /fail.txt) echo "no space on the scanner" >&2; exit 3 ;;`,
    `  /hang.txt) touch "$DIR/hang-started"; sleep 30; touch "$DIR/hang-done" ;;`,
    `esac`,
  ].join("\n")
  await withProgram(script, async (program, dir) => {
    await withServer({ onUpload: program, actionTimeout: 2 }, async (server, metrics) => {
      const client = await loggedIn(server)
      await upload(client, "slow.txt", encoder.encode("s"))
      // The next command is answered while the program still runs.
      assert.equal((await client.command("NOOP")).code, 200)
      assert.equal(await Deno.stat(`${dir}/slow-done`).catch(() => null), null)
      await upload(client, "fail.txt", encoder.encode("f"))
      await upload(client, "hang.txt", encoder.encode("h"))
      client.close()
      await eventually(() => actions(metrics(), "on_upload", "failed") === 1, 5000, "the failure")
      assert.ok(
        server.logs.some((line) => /on_upload for \/fail\.txt failed: exit code 3: no space on the scanner/.test(line)),
        server.logs.join("\n"),
      )
      await eventually(() => actions(metrics(), "on_upload", "ok") === 1, 5000, "the slow run")
      await eventually(() => actions(metrics(), "on_upload", "timeout") === 1, 10_000, "the hanging run to be killed")
      assert.ok(server.logs.some((line) => /on_upload for \/hang\.txt timeout: killed after 2 s/.test(line)))
      assert.notEqual(await Deno.stat(`${dir}/hang-started`).catch(() => null), null)
      assert.equal(await Deno.stat(`${dir}/hang-done`).catch(() => null), null)
    })
  })
})
