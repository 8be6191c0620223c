/**
 * `ftpd -d memory:`, `-d s3://BUCKET[/PREFIX]` and `--mount`: what the command serves, the
 * permissions it asks for before it starts, and its errors (one line, exit 2).
 */
import assert from "node:assert/strict"
import { closeQuietly, loggedIn, type RawClient, receive, writeAllAndClose } from "./helpers.ts"
import { hasNode, hasRclone, rclone, S3RVER_CREDENTIALS, startS3rver } from "./s3/s3rver.ts"

const CLI = new URL("../src/cli.ts", import.meta.url).pathname
const ENV = "--allow-env=AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY,AWS_SESSION_TOKEN"
const decoder = new TextDecoder()

/** Run the command to its end with `permissions` and `env` (nothing else of this environment). */
const runCli = async (permissions: string[], args: string[], env: Record<string, string> = {}) => {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...permissions, CLI, ...args],
    stdin: "null",
    clearEnv: true,
    env: { NO_COLOR: "1", ...env },
  }).output()
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) }
}

/** Start the command on 127.0.0.1 (a free port), run `f` with its port and log, then stop it. */
const withCli = async (
  permissions: string[],
  args: string[],
  env: Record<string, string>,
  f: (port: number, log: () => string) => Promise<void>,
) => {
  const process = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", "--allow-net=127.0.0.1", ...permissions, CLI, "-i", "127.0.0.1", "-p", "0", ...args],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    clearEnv: true,
    env: { NO_COLOR: "1", ...env },
  }).spawn()
  let log = ""
  const banner = Promise.withResolvers<number>()
  const drained = (async () => {
    for await (const chunk of process.stderr.pipeThrough(new TextDecoderStream())) {
      log += chunk
      const match = />>> starting FTP server on 127\.0\.0\.1:(\d+), pid=\d+ <<</.exec(log)
      if (match) banner.resolve(Number(match[1]))
    }
    banner.reject(new Error(`ftpd exited before its banner:\n${log}`))
  })()
  const timer = setTimeout(() => banner.reject(new Error(`no banner within 20 s:\n${log}`)), 20_000)
  try {
    await f(await banner.promise, () => log)
  } finally {
    clearTimeout(timer)
    try {
      process.kill("SIGKILL")
    } catch {
      // already exited
    }
    await Promise.all([process.status, drained])
  }
}

const store = async (raw: RawClient, name: string, text: string) => {
  const conn = await raw.passiveData()
  try {
    const first = await raw.command(`STOR ${name}`)
    if (first.code !== 150) return [first.code]
    await writeAllAndClose(conn, new TextEncoder().encode(text))
    return [first.code, (await raw.readReply()).code]
  } finally {
    closeQuietly(conn)
  }
}

Deno.test("ftpd -d memory: -w serves an empty tree in memory, with no read or write grant", () =>
  withCli([], ["-d", "memory:", "-w"], {}, async (port, log) => {
    assert.match(log(), /\] filesystem: memory\n/)
    const raw = await loggedIn(port, { user: "anonymous", password: "guest" })
    try {
      assert.equal((await receive(raw, "NLST")).data, "")
      assert.deepEqual(await store(raw, "a.txt", "in memory"), [150, 226])
      assert.equal((await raw.command("MKD dir")).code, 257)
      assert.deepEqual(await receive(raw, "RETR a.txt"), { codes: [150, 226], data: "in memory" })
    } finally {
      raw.close()
    }
  }))

Deno.test("ftpd -d memory: without -w is read-only", () =>
  withCli([], ["-d", "memory:"], {}, async (port) => {
    const raw = await loggedIn(port, { user: "anonymous", password: "guest" })
    try {
      assert.deepEqual(await store(raw, "a.txt", "x"), [550])
      assert.equal((await raw.command("MKD dir")).code, 550)
    } finally {
      raw.close()
    }
  }))

Deno.test("ftpd -d s3://... without its grants exits 2 naming --allow-net=HOST and --allow-env=AWS_...", async () => {
  const pathStyle = await runCli(
    ["--allow-net=127.0.0.1:2121,127.0.0.1:0"],
    [
      "-i",
      "127.0.0.1",
      "-p",
      "2121",
      "-d",
      "s3://bucket/ftp",
      "--s3-endpoint",
      "http://127.0.0.1:9000",
      "--s3-path-style",
    ],
  )
  assert.equal(pathStyle.code, 2)
  assert.equal(
    pathStyle.stderr,
    "ftpd: missing permission: net access to the S3 service at 127.0.0.1:9000 (add --allow-net=127.0.0.1:9000)\n" +
      "ftpd: missing permission: env access to the S3 credentials AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY," +
      " AWS_SESSION_TOKEN (add --allow-env=AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY,AWS_SESSION_TOKEN)\n",
  )
  const aws = await runCli(
    ["--allow-net=127.0.0.1:2121,127.0.0.1:0", ENV],
    ["-i", "127.0.0.1", "-p", "2121", "-d", "s3://bucket", "--s3-region", "eu-west-1"],
  )
  assert.equal(aws.code, 2)
  assert.equal(
    aws.stderr,
    "ftpd: missing permission: net access to the S3 service at bucket.s3.eu-west-1.amazonaws.com" +
      " (add --allow-net=bucket.s3.eu-west-1.amazonaws.com)\n",
  )
})

Deno.test("ftpd -d s3://... without credentials in the environment exits 2 with one error line", async () => {
  const { code, stderr } = await runCli(
    ["--allow-net=127.0.0.1", ENV],
    ["-i", "127.0.0.1", "-p", "0", "-d", "s3://bucket", "--s3-endpoint", "http://127.0.0.1:9", "--s3-path-style"],
  )
  assert.equal(code, 2)
  assert.equal(
    stderr,
    "ftpd: error: s3:// storage needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment\n",
  )
})

Deno.test("ftpd --mount /pub=DIR:ro needs --allow-read=DIR, then serves DIR read-only at /pub beside memory:", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-mount-" }))
  try {
    await Deno.writeTextFile(`${dir}/hello.txt`, "hello")
    const denied = await runCli(["--allow-net=127.0.0.1"], [
      "-i",
      "127.0.0.1",
      "-p",
      "0",
      "-d",
      "memory:",
      "-w",
      "--mount",
      `/pub=${dir}:ro`,
    ])
    assert.equal(denied.code, 2)
    assert.equal(denied.stderr, `ftpd: missing permission: read access to ${dir} (add --allow-read=${dir})\n`)
    const missing = await runCli(["--allow-net=127.0.0.1", "--allow-read"], [
      "-i",
      "127.0.0.1",
      "-p",
      "0",
      "-d",
      "memory:",
      "--mount",
      `/pub=${dir}/nope`,
    ])
    assert.equal(missing.code, 2)
    assert.match(missing.stderr, /^ftpd: error: argument --mount: no such directory: '.*\/nope'\n/)
    await withCli(
      [`--allow-read=${dir}`],
      ["-d", "memory:", "-w", "--mount", `/pub=${dir}:ro`],
      {},
      async (port, log) => {
        assert.match(log(), /\] filesystem: memory; \/pub mounted from .* \(local disk, .*, read-only\)\n/)
        const raw = await loggedIn(port, { user: "anonymous", password: "guest" })
        try {
          assert.deepEqual(await receive(raw, "RETR /pub/hello.txt"), { codes: [150, 226], data: "hello" })
          assert.deepEqual(await store(raw, "/pub/new.txt", "x"), [550])
          assert.deepEqual(await store(raw, "/top.txt", "x"), [150, 226])
          assert.equal(
            (await receive(raw, "NLST /")).data.split("\r\n").filter((l) => l !== "").sort().join(","),
            "pub,top.txt",
          )
        } finally {
          raw.close()
        }
      },
    )
  } finally {
    await Deno.remove(dir, { recursive: true })
  }
})

Deno.test({
  name: "ftpd -d s3://BUCKET/PREFIX serves the bucket: STOR lands under the prefix; a missing bucket exits 2",
  ignore: !((await hasNode()) && (await hasRclone())),
  fn: async () => {
    const s3 = await startS3rver()
    const env = {
      AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    }
    const flags = ["--s3-endpoint", s3.endpoint, "--s3-path-style"]
    try {
      const missing = await runCli(["--allow-net=127.0.0.1", ENV], [
        "-i",
        "127.0.0.1",
        "-p",
        "0",
        "-d",
        "s3://nosuchbucket",
        ...flags,
      ], env)
      assert.equal(missing.code, 2)
      assert.match(missing.stderr, /^ftpd: error: s3:\/\/nosuchbucket: .*\n$/)
      await withCli([ENV], ["-d", `s3://${s3.bucket}/ftp`, "-w", ...flags], env, async (port, log) => {
        assert.match(log(), new RegExp(`\\] filesystem: S3 s3://${s3.bucket}/ftp at 127\\.0\\.0\\.1:${s3.port}\\n`))
        const raw = await loggedIn(port, { user: "anonymous", password: "guest" })
        try {
          assert.deepEqual(await store(raw, "a.txt", "to the bucket"), [150, 226])
          assert.equal(decoder.decode(await rclone(s3, "cat", `s3rver:${s3.bucket}/ftp/a.txt`)), "to the bucket")
          assert.equal((await raw.command("APPE a.txt")).code, 550)
        } finally {
          raw.close()
        }
      })
    } finally {
      await s3.close()
    }
  },
})
