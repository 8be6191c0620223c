/**
 * Bounded resources under load: 500 simultaneous connections, memory under slow readers of a big
 * file and of huge listings. The server runs in a child process, so that its RSS (read from
 * /proc/PID/status) and its file descriptors are its own and not the test runner's.
 *
 * The timeouts are here once more, together on one server: idle, passive accept and stalled
 * transfer (each also has a test of its own in tests/control_robustness_test.ts and
 * tests/transfer_test.ts). Covered elsewhere and not repeated: the TLS handshake timeout
 * (tests/tls_test.ts, "20 stalled handshakes ... each is closed by the timeout") and shutdown with
 * live transfers leaving no open fd (tests/server_test.ts, counted from /proc/self/fd).
 */
import assert from "node:assert/strict"
import { closeQuietly, loggedIn, RawClient, sleep, startServer, timed, withChildServer } from "./helpers.ts"

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const MiB = 1 << 20

/** The greeting of a new raw connection: its first line and how long connect + greeting took. */
const greet = async (port: number): Promise<{ conn: Deno.TcpConn; line: string; ms: number }> => {
  const t0 = performance.now()
  const conn = await Deno.connect({ hostname: "127.0.0.1", port })
  const buffer = new Uint8Array(256)
  let text = ""
  while (!text.includes("\r\n")) {
    const n = await conn.read(buffer)
    if (n === null) break
    text += decoder.decode(buffer.subarray(0, n))
  }
  return { conn, line: text.split("\r\n")[0], ms: performance.now() - t0 }
}

/** The soft limit on open files of this process (the child inherits it). */
const openFileLimit = (): number => {
  const line = Deno.readTextFileSync("/proc/self/limits").split("\n").find((l) => l.startsWith("Max open files"))
  return Number(line?.split(/\s{2,}/)[1] ?? 0)
}

/** The accept backlog of the socket listening on `port`, from `ss` (its Send-Q), or null without `ss`. */
const listenBacklog = async (port: number): Promise<number | null> => {
  const out = await new Deno.Command("ss", { args: ["-Hltn", `sport = :${port}`], stdout: "piped", stderr: "null" })
    .output()
    .catch(() => null)
  const fields = out === null ? undefined : decoder.decode(out.stdout).trim().split(/\s+/)
  return fields === undefined || fields.length < 3 ? null : Number(fields[2])
}

// 500 sockets here and 500 in the server, plus what the runtimes hold.
const FILES_NEEDED = 1200
const fileLimit = openFileLimit()
if (fileLimit < FILES_NEEDED) {
  console.warn(`skipping the 500-connection test: ulimit -n is ${fileLimit}, it needs ${FILES_NEEDED}`)
}

Deno.test({
  name: "500 simultaneous connects are all greeted at once (no SYN dropped) and the 501st over maxCons 500 gets 421",
  ignore: fileLimit < FILES_NEEDED,
  fn: () =>
    withChildServer({ maxCons: 500 }, async (server) => {
      // Deno.listen takes no backlog; it asks for 511 (capped by net.core.somaxconn), enough for 500.
      const backlog = await listenBacklog(server.port)
      if (backlog !== null) assert.ok(backlog >= 500, `the control port's listen backlog is ${backlog}`)
      const conns: Deno.TcpConn[] = []
      try {
        const started = performance.now()
        const settled = await timed(
          Promise.allSettled(Array.from({ length: 500 }, () => greet(server.port))),
          30_000,
          "500 greetings",
        )
        const elapsed = performance.now() - started
        for (const result of settled) if (result.status === "fulfilled") conns.push(result.value.conn)
        const failed = settled.filter((r) => r.status === "rejected").map((r) =>
          String((r as PromiseRejectedResult).reason)
        )
        assert.deepEqual(failed.slice(0, 5), [], `${failed.length} connects failed`)
        const greetings = settled.map((r) => (r as PromiseFulfilledResult<{ line: string; ms: number }>).value)
        const slowest = Math.max(...greetings.map((g) => g.ms))
        console.log(`500 connects greeted in ${elapsed.toFixed(0)} ms, slowest ${slowest.toFixed(0)} ms`)
        assert.deepEqual(greetings.filter((g) => !g.line.startsWith("220 ")).map((g) => g.line).slice(0, 5), [])
        // A SYN (or the handshake's last ACK) dropped by a full accept queue is retried after 1 s:
        // every greeting within that means the listen backlog took the burst.
        assert.ok(slowest < 1000, `the slowest of 500 greetings took ${slowest.toFixed(0)} ms (a dropped SYN?)`)

        const over = await RawClient.connect(server.port)
        try {
          assert.equal(over.greeting.code, 421, over.greeting.lines.join("|"))
          assert.ok(await over.closedByServer())
        } finally {
          over.close()
        }

        // Every one of the 500 is served.
        const noop = encoder.encode("NOOP\r\n")
        const answers = await timed(
          Promise.all(conns.map(async (conn) => {
            await conn.write(noop)
            const buffer = new Uint8Array(256)
            const n = await conn.read(buffer)
            return n === null ? "closed" : decoder.decode(buffer.subarray(0, n))
          })),
          20_000,
          "500 NOOPs",
        )
        assert.deepEqual(answers.filter((a) => !a.startsWith("200 ")).slice(0, 5), [])
      } finally {
        for (const conn of conns) closeQuietly(conn)
      }
    }),
})

/** Log in on a raw client, binary mode. */
/**
 * Read `conn` at about `bytesPerSecond` for `seconds` (or until it ends), sampling `rss` once a
 * second; returns the bytes read and the samples.
 */
const slowRead = async (
  conn: Deno.Conn,
  bytesPerSecond: number,
  seconds: number,
  rss: () => number,
): Promise<{ bytes: number; samples: number[]; ended: boolean }> => {
  const tick = 50
  const perTick = Math.max(1, Math.round((bytesPerSecond * tick) / 1000))
  const buffer = new Uint8Array(perTick)
  const samples: number[] = []
  const started = performance.now()
  let bytes = 0
  let nextSample = started
  while (performance.now() - started < seconds * 1000) {
    if (performance.now() >= nextSample) {
      samples.push(rss())
      nextSample += 1000
    }
    const tickStart = performance.now()
    let got = 0
    while (got < perTick) {
      const n = await timed(conn.read(buffer.subarray(got)), 10_000, "data to read")
      if (n === null) return { bytes: bytes + got, samples, ended: true }
      got += n
    }
    bytes += got
    await sleep(Math.max(0, tick - (performance.now() - tickStart)))
  }
  return { bytes, samples, ended: false }
}

const mib = (bytes: number) => (bytes / MiB).toFixed(1)

// The issue asks for a 1 GiB file read at 1 MB/s; all of it would take 17 minutes, so the client
// reads for 12 s (about 12 MB): enough to see whether the server's memory follows the bytes it
// has read from the file or the bytes the client has taken.
Deno.test("a client reading a 1 GiB file at 1 MB/s for 12 s leaves the server's memory flat (backpressure)", async () => {
  const root = await Deno.makeTempDir({ prefix: "ftpd-big-" })
  try {
    await Deno.writeFile(`${root}/big.bin`, new Uint8Array())
    await Deno.truncate(`${root}/big.bin`, 1 << 30)
    await withChildServer({ root }, async (server) => {
      const client = await loggedIn(server.port)
      let data: Deno.Conn | undefined
      try {
        data = await client.passive()
        await client.send("RETR big.bin")
        assert.equal((await client.readReply()).code, 150)
        const { bytes, samples, ended } = await slowRead(data, 1_000_000, 12, server.rss)
        assert.ok(!ended, "the transfer ended early")
        // The first seconds fill socket buffers and warm the runtime up.
        const steady = samples.slice(3)
        const band = Math.max(...steady) - Math.min(...steady)
        console.log(`read ${mib(bytes)} MiB; server RSS ${samples.map(mib).join(" ")} MiB`)
        assert.ok(bytes > 8 * MiB && bytes < 16 * MiB, `read ${mib(bytes)} MiB in 12 s at 1 MB/s`)
        assert.ok(band < 20 * MiB, `server RSS moved by ${mib(band)} MiB while the client read slowly`)
        closeQuietly(data)
        assert.equal((await client.readReply()).code, 426)
        assert.equal((await client.command("NOOP")).code, 200)
      } finally {
        if (data !== undefined) closeQuietly(data)
        client.close()
      }
    })
  } finally {
    await Deno.remove(root, { recursive: true })
  }
})

// Names of 100 characters make each listing (LIST about 8 MB, MLSD about 10 MB) bigger than the
// loopback socket buffers, so the server cannot have sent it all while the client reads slowly.
Deno.test("LIST and MLSD of a 50,000-entry directory, read slowly, stream: the server's live heap stays bounded", async () => {
  const root = await Deno.makeTempDir({ prefix: "ftpd-huge-dir-" })
  try {
    await Deno.mkdir(`${root}/huge`)
    const made = await new Deno.Command("python3", {
      args: [
        "-c",
        `import os\nfor i in range(50000): open(os.path.join(${
          JSON.stringify(`${root}/huge`)
        }, "entry-%05d-%s.txt" % (i, "n" * 89)), "w").close()`,
      ],
    }).output()
    assert.ok(made.success, "python3 could not make the directory")
    await withChildServer({ root }, async (server) => {
      const before = await server.heap()
      const rssBefore = server.rss()
      const heaps: number[] = []
      const list = async (command: string) => {
        const client = await loggedIn(server.port)
        let data: Deno.Conn | undefined
        try {
          data = await client.passive()
          await client.send(command)
          assert.equal((await client.readReply()).code, 150)
          const read = await slowRead(data, 2_000_000, 30, server.rss)
          assert.ok(read.ended, `${command} did not end within 30 s`)
          assert.equal((await client.readReply()).code, 226)
          return read
        } finally {
          if (data !== undefined) closeQuietly(data)
          client.close()
        }
      }
      const listings = Promise.all([list("LIST huge"), list("MLSD huge")])
      // Mid-listing: both are still being sent (and read at 2 MB/s).
      for (let i = 0; i < 3; i++) {
        await sleep(1000)
        heaps.push(await server.heap())
      }
      const [listed, mlsd] = await listings
      console.log(
        `LIST ${mib(listed.bytes)} MiB, MLSD ${mib(mlsd.bytes)} MiB; server live heap before ${mib(before)} MiB, ` +
          `during ${heaps.map(mib).join(" ")} MiB; RSS before ${mib(rssBefore)}, during ${
            listed.samples.map(mib).join(" ")
          } MiB`,
      )
      assert.ok(listed.bytes > 50_000 * 140, `LIST sent ${listed.bytes} bytes for 50,000 entries`)
      assert.ok(mlsd.bytes > 50_000 * 140, `MLSD sent ${mlsd.bytes} bytes for 50,000 entries`)
      // Streaming holds each listing's names (50,000 of 100 characters) and one batch: about 14 MiB
      // for both listings when measured. A listing built in memory would also hold 50,000 file
      // records and its text (8 MB for LIST alone), for each of the two.
      const grown = Math.max(...heaps) - before
      assert.ok(grown < 30 * MiB, `server live heap grew by ${mib(grown)} MiB during two slow listings`)
    })
  } finally {
    await Deno.remove(root, { recursive: true })
  }
})

// The active (PORT) connect timeout is tested in tests/active_connect_timeout_test.ts, against a
// listener whose full accept queue makes the kernel drop the SYNs.

/** What the client saw of each timeout, and the server's log. */
interface TimeoutRun {
  /** Reply lines and milliseconds from the start, per timeout. */
  readonly idle: readonly [string, number]
  readonly accept: readonly [string, number]
  readonly stall: readonly [string, number]
  readonly logs: ReadonlyArray<string>
}

/**
 * On one server with `timeout: 1` and `dataTimeout: 1`, at once: a session that sends nothing
 * (idle), a RETR whose passive connection never comes (accept), a RETR whose data nobody reads
 * (stall).
 */
const runTimeouts = async (): Promise<TimeoutRun> => {
  const server = await startServer({ timeout: 1, dataTimeout: 1 })
  const clients: RawClient[] = []
  let data: Deno.Conn | undefined
  try {
    await Deno.writeFile(`${server.root}/big.bin`, new Uint8Array())
    await Deno.truncate(`${server.root}/big.bin`, 256 * MiB)
    const idle = await RawClient.connect(server.port)
    clients.push(idle)
    const accept = await loggedIn(server.port)
    clients.push(accept)
    const stall = await loggedIn(server.port)
    clients.push(stall)
    const t0 = performance.now()
    const next = async (client: RawClient) => {
      const reply = await client.readReply(5000)
      return [reply.lines.join("|"), performance.now() - t0] as const
    }
    const retr = async (client: RawClient) => {
      await client.send("RETR big.bin")
      assert.equal((await client.readReply()).code, 150)
      return await next(client)
    }
    const [idleReply, acceptReply, stallReply] = await Promise.all([
      next(idle),
      (async () => {
        assert.equal((await accept.command("EPSV")).code, 229)
        return await retr(accept)
      })(),
      (async () => {
        data = await stall.passive()
        return await retr(stall)
      })(),
    ])
    return { idle: idleReply, accept: acceptReply, stall: stallReply, logs: server.logs }
  } finally {
    if (data !== undefined) closeQuietly(data)
    for (const client of clients) client.close()
    await server.close()
  }
}

Deno.test("with timeout 1 and dataTimeout 1: the idle 421, passive accept 425 and stalled transfer 426 each fire in about a second", async () => {
  const { idle, accept, stall } = await runTimeouts()
  assert.equal(idle[0], "421 Control connection timed out.")
  assert.equal(accept[0], "425 Data connection timed out.")
  assert.equal(stall[0], "426 Transfer aborted: data connection timed out.")
  for (const [reply, ms] of [idle, accept, stall]) {
    assert.ok(ms >= 900 && ms < 3000, `${reply} after ${ms.toFixed(0)} ms, expected about 1000`)
  }
})

Deno.test("with timeout 1 and dataTimeout 1: the idle, passive accept and stalled transfer timeouts are each logged", async () => {
  const { logs } = await runTimeouts()
  const timedOut = logs.filter((line) => /timed out/i.test(line))
  assert.equal(timedOut.filter((line) => /control connection timed out/i.test(line)).length, 1, logs.join("\n"))
  assert.equal(timedOut.length, 3, `log lines about timeouts:\n${timedOut.join("\n")}`)
})
