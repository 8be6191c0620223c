/**
 * The command line of monitoring, logs and upload actions: each flag, its bad values (one line,
 * exit 2), and the Deno permissions it needs, checked before anything starts.
 */
import assert from "node:assert/strict"
import { type CliConfig, parseCli } from "../src/cli.ts"
import { resolveOptions } from "../src/options.ts"
import { otlpSettings } from "../src/observability/tracing.ts"
import { CLI } from "./helpers.ts"

const run = (argv: string[]): CliConfig => {
  const parsed = parseCli(argv)
  assert.equal(parsed.kind, "run", JSON.stringify(parsed))
  return (parsed as { config: CliConfig }).config
}

const error = (argv: string[]): string => {
  const parsed = parseCli(argv)
  assert.equal(parsed.kind, "error", JSON.stringify(parsed))
  return (parsed as { message: string }).message
}

Deno.test("the monitoring, log and upload-action flags set their options; files become absolute paths", () => {
  const config = run([
    "--metrics=127.0.0.1:9100",
    "--log-format=json",
    "--log-file=logs/ftpd.log",
    "--xferlog=/var/log/xferlog",
    "--on-upload=/usr/local/bin/scan",
    "--webhook=https://hooks.example.com/ftp",
    "--action-concurrency=2",
    "--action-queue=50",
    "--action-timeout=7.5",
  ])
  assert.deepEqual(config.metrics, { hostname: "127.0.0.1", port: 9100 })
  assert.equal(config.logFormat, "json")
  assert.equal(config.logFile, `${Deno.cwd()}/logs/ftpd.log`)
  const { xferlog, onUpload, webhook, actionConcurrency, actionQueue, actionTimeout } = config.options
  assert.deepEqual({ xferlog, onUpload, webhook, actionConcurrency, actionQueue, actionTimeout }, {
    xferlog: "/var/log/xferlog",
    onUpload: "/usr/local/bin/scan",
    webhook: "https://hooks.example.com/ftp",
    actionConcurrency: 2,
    actionQueue: 50,
    actionTimeout: 7.5,
  })
  assert.deepEqual(run(["--metrics", "[::1]:0"]).metrics, { hostname: "::1", port: 0 })
  // Absent unless given: the library's defaults apply.
  const plain = run([])
  for (const key of ["metrics", "logFormat", "logFile"] as const) assert.equal(key in plain, false, key)
  for (const key of ["xferlog", "onUpload", "webhook", "actionTimeout"] as const) {
    assert.equal(key in plain.options, false, key)
  }
})

Deno.test("a bad monitoring, log or upload-action value is one clear error naming the flag", () => {
  const cases: Array<[string[], RegExp]> = [
    [["--metrics", "9100"], /^argument --metrics: expected HOST:PORT with a port from 0 to 65535 .* got '9100'$/],
    [["--metrics", "127.0.0.1:"], /^argument --metrics: expected HOST:PORT.* got '127\.0\.0\.1:'$/],
    [["--metrics", "127.0.0.1:70000"], /^argument --metrics: .* got '127\.0\.0\.1:70000'$/],
    [["--metrics", "::1:9100"], /^argument --metrics: .* got '::1:9100'$/],
    [["--metrics", "a b:1"], /^argument --metrics: .* got 'a b:1'$/],
    [["--metrics", ""], /^argument --metrics: .* got ''$/],
    [
      ["-i", "127.0.0.1", "-p", "2121", "--metrics", "127.0.0.1:2121"],
      /^argument --metrics: must differ from the control port \(2121\)$/,
    ],
    [["--log-format", "xml"], /^argument --log-format: expected pyftpdlib or json, got 'xml'$/],
    [["--log-format", "JSON"], /^argument --log-format: expected pyftpdlib or json, got 'JSON'$/],
    [["--log-file", ""], /^argument --log-file: must not be empty$/],
    [["--xferlog", " "], /^argument --xferlog: must not be empty$/],
    [["--log-file", "a.log", "--xferlog", "a.log"], /^argument --xferlog: must differ from --log-file$/],
    [["--on-upload", ""], /^argument --on-upload: must not be empty$/],
    [
      ["--webhook", "example.com/hook"],
      /^argument --webhook: expected an http or https URL, got 'example\.com\/hook'$/,
    ],
    [
      ["--webhook", "ftp://example.com/"],
      /^argument --webhook: expected an http or https URL, got 'ftp:\/\/example\.com\/'$/,
    ],
    [["--webhook", ""], /^argument --webhook: expected an http or https URL, got ''$/],
    [["--action-timeout", "5"], /^argument --action-timeout: requires --on-upload or --webhook$/],
    [["--action-queue", "5"], /^argument --action-queue: requires --on-upload or --webhook$/],
    [["--action-concurrency", "5"], /^argument --action-concurrency: requires --on-upload or --webhook$/],
    [
      ["--on-upload", "x", "--action-concurrency", "0"],
      /^argument --action-concurrency: expected an integer >= 1, got '0'$/,
    ],
    [["--on-upload", "x", "--action-queue", "1.5"], /^argument --action-queue: expected an integer >= 1, got '1\.5'$/],
    [["--on-upload", "x", "--action-queue", "-1"], /^argument --action-queue: expected an integer >= 1, got '-1'$/],
    [
      ["--on-upload", "x", "--action-timeout", "0"],
      /^argument --action-timeout: expected a number of seconds > 0, got '0'$/,
    ],
    [["--on-upload", "x", "--action-timeout", "soon"], /^argument --action-timeout: .* got 'soon'$/],
    [["--on-upload", "x", "--action-timeout", "-3"], /^argument --action-timeout: .* got '-3'$/],
  ]
  for (const [argv, message] of cases) {
    const text = error(argv)
    assert.match(text, message, `${argv.join(" ")} → ${text}`)
    assert.ok(!text.includes("\n"), `one line: ${text}`)
  }
})

Deno.test("--help lists the monitoring, log and upload-action flags with their defaults", () => {
  const parsed = parseCli(["--help"])
  assert.equal(parsed.kind, "help")
  const text = (parsed as { text: string }).text
  const defaults = resolveOptions()
  const shown: Array<[string, string]> = [
    ["--metrics HOST:PORT", "(default: off)"],
    ["--log-format FORMAT", "(default: pyftpdlib)"],
    ["--log-file FILE", "for logrotate"],
    ["--xferlog FILE", "SIGHUP reopens it"],
    ["--on-upload PROGRAM", "in its environment"],
    ["--webhook URL", "login and failed login"],
    ["--action-concurrency N", `(default: ${defaults.actionConcurrency})`],
    ["--action-queue N", `(default: ${defaults.actionQueue})`],
    ["--action-timeout SECONDS", `(default: ${defaults.actionTimeout})`],
  ]
  for (const [flag, end] of shown) {
    const help = new RegExp(`^  ${flag}\\n      (.*)$`, "m").exec(text)?.[1] ?? ""
    assert.ok(help.endsWith(end), `${flag}: ${help}`)
  }
  assert.match(text, /--allow-env=OTEL_\*/)
})

Deno.test("the library refuses bad upload-action and xferlog options with a clear RangeError", () => {
  const cases: Array<[Parameters<typeof resolveOptions>[0], RegExp]> = [
    [{ webhook: "file:///etc/passwd" }, /^webhook must be an http or https URL, got file:\/\/\/etc\/passwd$/],
    [{ onUpload: "" }, /^onUpload must be a program/],
    [{ xferlog: "" }, /^xferlog must be a file path/],
    [{ actionConcurrency: 0 }, /^actionConcurrency must be an integer >= 1, got 0$/],
    [{ actionQueue: 2.5 }, /^actionQueue must be an integer >= 1, got 2\.5$/],
    [{ actionTimeout: 0 }, /^actionTimeout must be a number of seconds > 0, got 0$/],
    [{ actionTimeout: Infinity }, /^actionTimeout must be a number of seconds > 0, got Infinity$/],
  ]
  for (const [options, message] of cases) {
    assert.throws(() => resolveOptions(options), { name: "RangeError", message })
  }
})

Deno.test("the OTEL_* variables: traces from the endpoint, the standard defaults, and a clear error for a bad value", () => {
  const settings = (env: Record<string, string>) => otlpSettings((name) => env[name])
  assert.equal(settings({}), null)
  assert.deepEqual(settings({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/" }), {
    url: "http://collector:4318/v1/traces",
    protocol: "http/protobuf",
    headers: {},
    serviceName: "ftpd",
    resourceAttributes: {},
  })
  const full = settings({
    OTEL_EXPORTER_OTLP_ENDPOINT: "http://ignored:4318",
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "https://collector/custom/path",
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    OTEL_EXPORTER_OTLP_HEADERS: "api-key=s%20ecret,x-tenant=7",
    OTEL_SERVICE_NAME: "ftp-edge",
    OTEL_RESOURCE_ATTRIBUTES: "deployment.environment=prod",
    OTEL_BSP_SCHEDULE_DELAY: "250",
  })
  assert.deepEqual(full, {
    url: "https://collector/custom/path",
    protocol: "http/json",
    headers: { "api-key": "s ecret", "x-tenant": "7" },
    serviceName: "ftp-edge",
    resourceAttributes: { "deployment.environment": "prod" },
    exportIntervalMs: 250,
  })
  assert.equal(settings({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_SDK_DISABLED: "true" }), null)
  assert.equal(settings({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_TRACES_EXPORTER: "none" }), null)
  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318" }, /^OTEL_EXPORTER_OTLP_ENDPOINT: expected an http or https URL/],
    [
      { OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" },
      /^OTEL_EXPORTER_OTLP_PROTOCOL: expected http\/protobuf or http\/json \(grpc is not supported\), got 'grpc'$/,
    ],
    [
      { OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_EXPORTER_OTLP_HEADERS: "novalue" },
      /^OTEL_EXPORTER_OTLP_HEADERS: expected key=value/,
    ],
    [
      { OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_BSP_SCHEDULE_DELAY: "1s" },
      /^OTEL_BSP_SCHEDULE_DELAY: expected milliseconds, got '1s'$/,
    ],
  ]
  for (const [env, message] of bad) assert.throws(() => settings(env), { name: "RangeError", message })
})

/** Run the CLI with exactly `permissions`, `--no-prompt` and `env`; its exit code and output. */
const runCli = async (permissions: string[], args: string[], env: Record<string, string> = {}) => {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...permissions, CLI, ...args],
    stdin: "null",
    env: { NO_COLOR: "1", ...env },
  }).output()
  const decoder = new TextDecoder()
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) }
}

const withDir = async (f: (dir: string) => Promise<void>) => {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-monitoring-cli-" }))
  try {
    await f(dir)
  } finally {
    await Deno.remove(dir, { recursive: true })
  }
}

Deno.test("ftpd: a bad --metrics exits 2 with one error line and the hint, before checking permissions", async () => {
  const { code, stdout, stderr } = await runCli([], ["--metrics", "localhost"])
  assert.equal(code, 2)
  assert.equal(stdout, "")
  assert.equal(
    stderr,
    "ftpd: error: argument --metrics: expected HOST:PORT with a port from 0 to 65535 (e.g. 127.0.0.1:9100), got " +
      "'localhost'\nTry 'ftpd --help'.\n",
  )
})

Deno.test("ftpd: --metrics, --log-file, --xferlog, --on-upload and --webhook each name the grant they lack", async () => {
  await withDir(async (dir) => {
    const { code, stderr } = await runCli(
      ["--allow-net=127.0.0.1:2121,127.0.0.1:0", `--allow-read=${dir}`],
      [
        ...["-i", "127.0.0.1", "-p", "2121", "-d", dir],
        ...["--metrics", "127.0.0.1:9100", "--log-file", `${dir}/ftpd.log`, "--xferlog", `${dir}/xferlog`],
        ...["--on-upload", "/usr/local/bin/scan", "--webhook", "https://hooks.example.com/ftp"],
      ],
    )
    assert.equal(code, 2)
    assert.equal(
      stderr,
      [
        "ftpd: missing permission: net access to listen on 127.0.0.1:9100 for --metrics (add --allow-net=127.0.0.1:9100)",
        `ftpd: missing permission: write access to ${dir}/ftpd.log (add --allow-write=${dir}/ftpd.log)`,
        `ftpd: missing permission: write access to ${dir}/xferlog (add --allow-write=${dir}/xferlog)`,
        "ftpd: missing permission: permission to run /usr/local/bin/scan (add --allow-run=/usr/local/bin/scan)",
        "ftpd: missing permission: net access to hooks.example.com:443 for --webhook (add --allow-net=hooks.example.com:443)",
        "",
      ].join("\n"),
    )
  })
})

Deno.test("ftpd: a --log-file or --xferlog that can't be opened exits 2 with one error line, before it listens", async () => {
  await withDir(async (dir) => {
    for (const flag of ["--log-file", "--xferlog"]) {
      const { code, stderr } = await runCli(
        ["--allow-net=127.0.0.1", `--allow-read=${dir}`, `--allow-write=${dir}`],
        ["-i", "127.0.0.1", "-p", "0", "-d", dir, flag, `${dir}/missing/ftpd.log`],
      )
      assert.equal(code, 2)
      assert.equal(stderr, `ftpd: error: argument ${flag}: can't open ${dir}/missing/ftpd.log: no such directory\n`)
    }
  })
})

Deno.test("ftpd: traces need the OTEL_* variables readable and the collector reachable; a bad variable exits 2", async () => {
  await withDir(async (dir) => {
    const args = ["-i", "127.0.0.1", "-p", "0", "-d", dir]
    const env = { OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector.example:4318" }
    const net = await runCli(["--allow-net=127.0.0.1", `--allow-read=${dir}`, "--allow-env=OTEL_*"], args, env)
    assert.equal(net.code, 2)
    assert.equal(
      net.stderr,
      "ftpd: missing permission: net access to collector.example:4318 for traces " +
        "(add --allow-net=collector.example:4318)\n",
    )
    const narrow = await runCli(
      [
        "--allow-net=127.0.0.1,collector.example:4318",
        `--allow-read=${dir}`,
        "--allow-env=OTEL_EXPORTER_OTLP_ENDPOINT",
      ],
      args,
      env,
    )
    assert.equal(narrow.code, 2)
    assert.match(
      narrow.stderr,
      /^ftpd: missing permission: env access to OTEL_SDK_DISABLED, .* for traces \(add --allow-env=OTEL_\*\)\n$/,
    )
    const bad = await runCli(["--allow-net=127.0.0.1", `--allow-read=${dir}`, "--allow-env=OTEL_*"], args, {
      ...env,
      OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
    })
    assert.equal(bad.code, 2)
    assert.equal(
      bad.stderr,
      "ftpd: error: OTEL_EXPORTER_OTLP_PROTOCOL: expected http/protobuf or http/json (grpc is not supported), got 'grpc'\n",
    )
  })
})
