/**
 * ftpd behind a real HAProxy (Debian's `haproxy`), with `send-proxy` and `send-proxy-v2`: control
 * and passive data connections go through it, and the client, which connects from 127.0.0.7
 * (HAProxy listens on 127.0.0.1, ftpd on 127.0.0.2), is seen as 127.0.0.7 by the log, the bans and
 * the per-address limits. Skipped, with a message, where haproxy is not installed.
 */
import assert from "node:assert/strict"
import { closeQuietly, curl, eventually, RawClient, startServer, type TestServer } from "./helpers.ts"

const haproxyInstalled = await new Deno.Command("haproxy", { args: ["-v"], stdout: "null", stderr: "null" })
  .output()
  .then((out) => out.success, () => false)
if (!haproxyInstalled) console.warn("skipping the HAProxy tests: haproxy is not installed (apt-get install haproxy)")

/** A free TCP port on both 127.0.0.1 and 127.0.0.2, below the ephemeral range, or a run of `count` of them. */
const freePorts = (count: number): number => {
  for (let attempt = 0; attempt < 100; attempt++) {
    const start = 20000 + Math.floor(Math.random() * 10000)
    try {
      const held: Deno.Listener[] = []
      for (let port = start; port < start + count; port++) {
        for (const hostname of ["127.0.0.1", "127.0.0.2"]) held.push(Deno.listen({ hostname, port }))
      }
      for (const listener of held) listener.close()
      return start
    } catch {
      // Taken: try another run.
    }
  }
  throw new Error("no free ports")
}

const config = (front: number, back: number, passive: readonly [number, number], send: string) => `
global
  maxconn 200
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend control
  bind 127.0.0.1:${front}
  default_backend ftpd
backend ftpd
  server ftpd 127.0.0.2:${back} ${send}
frontend passive
  bind 127.0.0.1:${passive[0]}-${passive[1]}
  default_backend passive
backend passive
  # No port: each connection goes to the same port on ftpd's address.
  server ftpd 127.0.0.2 ${send}
`

interface Balanced {
  readonly server: TestServer
  /** HAProxy's control port, on 127.0.0.1. */
  readonly port: number
}

const withHaproxy = async (send: string, f: (balanced: Balanced) => Promise<void>, options = {}) => {
  const back = freePorts(1)
  const front = freePorts(1)
  const from = freePorts(4)
  const passive = [from, from + 3] as const
  const server = await startServer({
    host: "127.0.0.2",
    port: back,
    passivePorts: passive,
    proxyProtocol: true,
    ...options,
  })
  const dir = await Deno.makeTempDir({ prefix: "ftpd-haproxy-" })
  await Deno.writeTextFile(`${dir}/haproxy.cfg`, config(front, back, passive, send))
  const haproxy = new Deno.Command("haproxy", {
    args: ["-db", "-f", `${dir}/haproxy.cfg`],
    stdout: "piped",
    stderr: "piped",
  })
    .spawn()
  try {
    await eventually(
      async () => {
        try {
          closeQuietly(await Deno.connect({ hostname: "127.0.0.1", port: front }))
          return true
        } catch {
          return false
        }
      },
      10_000,
      "haproxy to listen",
    )
    await f({ server, port: front })
  } finally {
    haproxy.kill("SIGKILL")
    await haproxy.output()
    await server.close()
    await Deno.remove(dir, { recursive: true })
  }
}

const download = (port: number, from: string, args: string[] = []) =>
  curl("--interface", from, ...args, `ftp://user:pass@127.0.0.1:${port}/hello.txt`)

for (const send of ["send-proxy", "send-proxy-v2"]) {
  Deno.test({
    name: `behind HAProxy (${send}), control and passive data go through it and the client is 127.0.0.7`,
    ignore: !haproxyInstalled,
    fn: () =>
      withHaproxy(send, async ({ server, port }) => {
        await Deno.writeTextFile(`${server.root}/hello.txt`, "hello through haproxy\n")
        for (const mode of [[], ["--disable-epsv"]]) {
          const got = await download(port, "127.0.0.7", mode)
          assert.equal(got.code, 0, got.stderr)
          assert.equal(new TextDecoder().decode(got.stdout), "hello through haproxy\n")
        }
        const up = await curl("--interface", "127.0.0.7", "-T", "-", `ftp://user:pass@127.0.0.1:${port}/up.txt`)
        assert.equal(up.code, 0, up.stderr)
        await eventually(() => server.logs.some((line) => line.includes("STOR /up.txt completed=1")))
        assert.ok(server.logs.some((line) => /127\.0\.0\.7:\d+-\[user\] RETR \/hello\.txt completed=1/.test(line)))
        assert.ok(!server.logs.some((line) => line.includes("Rejected data connection")), server.logs.join("\n"))
      }),
  })
}

Deno.test({
  name: "behind HAProxy, bans and per-address limits hold for the client's address, not HAProxy's",
  ignore: !haproxyInstalled,
  fn: () =>
    withHaproxy("send-proxy-v2", async ({ server, port }) => {
      await Deno.writeTextFile(`${server.root}/hello.txt`, "hi\n")
      // One session from 127.0.0.7 is held open: a second from 127.0.0.7 is refused, 127.0.0.8 is served.
      const held = await RawClient.connectFrom(port, "127.0.0.7")
      try {
        assert.equal(held.greeting.code, 220)
        const second = await download(port, "127.0.0.7")
        assert.notEqual(second.code, 0, "a second connection from 127.0.0.7")
        const other = await download(port, "127.0.0.8")
        assert.equal(other.code, 0, other.stderr)
      } finally {
        held.close()
      }
      await eventually(async () => (await download(port, "127.0.0.7")).code === 0, 5000, "127.0.0.7 served again")
      assert.ok(server.logs.some((line) => line.includes("127.0.0.7 refused: too many connections from this address")))

      const wrong = await curl("--interface", "127.0.0.9", `ftp://user:wrong@127.0.0.1:${port}/hello.txt`)
      assert.notEqual(wrong.code, 0)
      await eventually(() => server.logs.some((line) => line.includes("127.0.0.9 banned")), 5000, "the ban")
      assert.notEqual((await download(port, "127.0.0.9")).code, 0, "127.0.0.9 is banned")
      assert.equal((await download(port, "127.0.0.7")).code, 0, "127.0.0.7 is not")
      assert.ok(server.logs.some((line) => line.includes("127.0.0.9 refused: banned.")), server.logs.join("\n"))
    }, { maxConsPerIp: 1, banAfterFailures: 1 }),
})
