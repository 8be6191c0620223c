/**
 * Graceful shutdown: `RunningServer.close(deadline)` stops accepting, closes idle sessions with 421,
 * lets running transfers finish, and cuts what is left at the deadline; `closeAll()` cuts at once;
 * the CLI does `close(shutdownGrace)` at the first SIGTERM and stops at once at the second.
 */
import "../src/_no_async_hooks.ts"
import assert from "node:assert/strict"
import { Effect, Exit, Layer, Scope } from "effect"
import { DummyAuthorizer } from "../src/auth/dummy.ts"
import { LocalFilesystem } from "../src/fs/local.ts"
import { Hooks, type HookSession, type HooksShape } from "../src/hooks.ts"
import { FtpLogger } from "../src/log.ts"
import type { ServerOptions } from "../src/options.ts"
import { FtpServer, type RunningServer } from "../src/server.ts"
import {
  closeQuietly,
  eventually,
  loggedIn,
  openFds,
  type RawClient,
  readAll,
  sparseFile,
  timed,
  within,
} from "./helpers.ts"

interface Served {
  readonly server: RunningServer
  readonly root: string
  /** Close the scope (closeAll, if anything is left) and remove the root. */
  dispose(): Promise<void>
}

const serve = async (options: ServerOptions & { readonly hooks?: HooksShape } = {}): Promise<Served> => {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-shutdown-" }))
  const layers = Layer.mergeAll(
    DummyAuthorizer.layer((a) => a.addUser("user", "pass", root, { perm: "elradfmwMT" })),
    LocalFilesystem.layer,
    Hooks.layer(options.hooks ?? {}),
    FtpLogger.layer({ write: () => undefined }),
  )
  const scope = Effect.runSync(Scope.make())
  const server = await Effect.runPromise(
    FtpServer.make({ host: "127.0.0.1", port: 0, authFailedTimeout: 0, ...options }).pipe(
      Scope.provide(scope),
      Effect.provide(layers),
    ),
  )
  return {
    server,
    root,
    dispose: async () => {
      await Effect.runPromise(Scope.close(scope, Exit.void))
      await Deno.remove(root, { recursive: true }).catch(() => undefined)
    },
  }
}

/** Read a data connection slowly (64 KiB per `pauseMs`) to its end; the number of bytes. */
const readSlowly = async (conn: Deno.Conn, pauseMs: number): Promise<number> => {
  const buffer = new Uint8Array(65536)
  let total = 0
  for (;;) {
    const n = await timed(conn.read(buffer), 10_000, "data to read")
    if (n === null) return total
    total += n
    await new Promise((resolve) => setTimeout(resolve, pauseMs))
  }
}

/** The next reply's code, or "closed" when the server closed the connection instead. */
const nextCode = async (client: RawClient, timeoutMs = 5000): Promise<number | "closed"> => {
  try {
    return (await client.readReply(timeoutMs)).code
  } catch (error) {
    if (String(error).includes("connection closed")) return "closed"
    throw error
  }
}

const refused = async (port: number): Promise<boolean> => {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port })
    conn.close()
    return false
  } catch (error) {
    return error instanceof Deno.errors.ConnectionRefused
  }
}

Deno.test("close() says 421 to an idle session at once, lets a running download finish (226, then 421), refuses new connections and leaves no fd", async () => {
  const fdsBefore = openFds()
  const { server, root, dispose } = await serve({ writeLimit: 2 << 20 })
  const port = server.address.port
  const clients: RawClient[] = []
  const conns: Deno.Conn[] = []
  try {
    await sparseFile(`${root}/big.bin`, 3 << 20)
    const idle = await loggedIn(port, { type: null })
    clients.push(idle)
    const downloader = await loggedIn(port, { type: null })
    clients.push(downloader)
    const data = await downloader.passive()
    conns.push(data)
    assert.equal((await downloader.command("RETR big.bin")).code, 150)
    const received = readAll(data)
    await new Promise((resolve) => setTimeout(resolve, 200))

    const t0 = Date.now()
    const closed = Effect.runPromise(server.close(10))
    assert.equal(await nextCode(idle), 421, "the idle session is told 421")
    assert(await idle.closedByServer(), "the idle session is closed")
    assert(Date.now() - t0 < 1000, "the idle session is closed at once, not at the deadline")
    assert(await refused(port), "a new connection during close is refused")

    assert.equal((await received).length, 3 << 20, "the download got every byte")
    assert.equal(await nextCode(downloader), 226)
    assert.equal(await nextCode(downloader), 421)
    assert(await downloader.closedByServer())
    await timed(closed, 5000, "close() to complete")
    assert(Date.now() - t0 < 5000, `close() took ${Date.now() - t0} ms, the grace is not a fixed wait`)
    assert.equal(server.connections(), 0)
    // Idempotent: a second close and a closeAll return at once.
    await timed(Effect.runPromise(Effect.andThen(server.close(), server.closeAll())), 1000, "a second close")
  } finally {
    for (const client of clients) client.close()
    for (const conn of conns) closeQuietly(conn)
    await dispose()
  }
  await eventually(() => openFds() === fdsBefore, 5000, `open fds back to ${fdsBefore} (now ${openFds()})`)
})

Deno.test("close() with a deadline shorter than a stalled transfer cuts it at the deadline, reports the cut upload and leaves no fd", async () => {
  const fdsBefore = openFds()
  const calls: string[] = []
  const record = (hook: string) => (_session: HookSession, file: string) =>
    Effect.sync(() => void calls.push(`${hook} ${file}`))
  const { server, root, dispose } = await serve({
    hooks: {
      onIncompleteFileSent: record("onIncompleteFileSent"),
      onIncompleteFileReceived: record("onIncompleteFileReceived"),
      onFileReceived: record("onFileReceived"),
    },
  })
  const port = server.address.port
  const clients: RawClient[] = []
  const conns: Deno.Conn[] = []
  try {
    await sparseFile(`${root}/big.bin`, 128 << 20)
    // A download nobody reads: it stalls once the socket buffers are full.
    const reader = await loggedIn(port, { type: null })
    clients.push(reader)
    conns.push(await reader.passive())
    assert.equal((await reader.command("RETR big.bin")).code, 150)
    // An upload that sent a little and then waits.
    const writer = await loggedIn(port, { type: null })
    clients.push(writer)
    const upload = await writer.passive()
    conns.push(upload)
    assert.equal((await writer.command("STOR up.bin")).code, 150)
    await upload.write(new Uint8Array(65536))
    await eventually(async () => (await Deno.stat(`${root}/up.bin`)).size > 0, 5000, "the upload to start")

    const t0 = Date.now()
    await timed(Effect.runPromise(server.close(1)), 5000, "close(1) to complete")
    const took = Date.now() - t0
    assert(took >= 900 && took < 3000, `close(1) took ${took} ms`)
    for (const client of [reader, writer]) {
      const code = await nextCode(client)
      assert(code === 421 || code === 426 || code === "closed", `got ${code} after the deadline`)
      if (code !== "closed") assert(await client.closedByServer())
    }
    await eventually(
      () =>
        calls.includes(`onIncompleteFileSent ${root}/big.bin`) &&
        calls.includes(`onIncompleteFileReceived ${root}/up.bin`),
      2000,
      `the incomplete hooks (got ${calls.join(", ")})`,
    )
    assert(!calls.some((call) => call.startsWith("onFileReceived")), "a cut upload is not reported as received")
  } finally {
    for (const client of clients) client.close()
    for (const conn of conns) closeQuietly(conn)
    await dispose()
  }
  await eventually(() => openFds() === fdsBefore, 5000, `open fds back to ${fdsBefore} (now ${openFds()})`)
})

Deno.test("closeAll() cuts a running upload at once with 421 and reports it; close() then returns at once", async () => {
  const calls: string[] = []
  const { server, root, dispose } = await serve({
    hooks: {
      onIncompleteFileReceived: (_session, file) => Effect.sync(() => void calls.push(file)),
    },
  })
  const clients: RawClient[] = []
  const conns: Deno.Conn[] = []
  try {
    const writer = await loggedIn(server.address.port, { type: null })
    clients.push(writer)
    const upload = await writer.passive()
    conns.push(upload)
    assert.equal((await writer.command("STOR up.bin")).code, 150)
    await upload.write(new Uint8Array(65536))
    await eventually(async () => (await Deno.stat(`${root}/up.bin`)).size > 0, 5000, "the upload to start")
    const t0 = Date.now()
    await timed(Effect.runPromise(server.closeAll()), 3000, "closeAll() to complete")
    assert(Date.now() - t0 < 1500, `closeAll() took ${Date.now() - t0} ms`)
    assert.equal(await nextCode(writer), 421)
    assert(await writer.closedByServer())
    await eventually(() => calls.includes(`${root}/up.bin`), 2000, `onIncompleteFileReceived (got ${calls})`)
    assert(await refused(server.address.port))
    await timed(Effect.runPromise(server.close(10)), 1000, "close() after closeAll()")
  } finally {
    for (const client of clients) client.close()
    for (const conn of conns) closeQuietly(conn)
    await dispose()
  }
})

Deno.test("close(0), as with shutdownGrace 0, cuts a running download at once", async () => {
  const { server, root, dispose } = await serve({ shutdownGrace: 0 })
  const clients: RawClient[] = []
  const conns: Deno.Conn[] = []
  try {
    await sparseFile(`${root}/big.bin`, 128 << 20)
    const reader = await loggedIn(server.address.port, { type: null })
    clients.push(reader)
    conns.push(await reader.passive())
    assert.equal((await reader.command("RETR big.bin")).code, 150)
    const t0 = Date.now()
    await timed(Effect.runPromise(server.close()), 3000, "close() to complete")
    assert(Date.now() - t0 < 1500, `close() with shutdownGrace 0 took ${Date.now() - t0} ms`)
    const code = await nextCode(reader)
    assert(code === 421 || code === "closed", `got ${code}`)
  } finally {
    for (const client of clients) client.close()
    for (const conn of conns) closeQuietly(conn)
    await dispose()
  }
})

Deno.test("close() lets a session finish its command, answers NOOP while its transfer runs, and QUIT still gets 221", async () => {
  const { server, root, dispose } = await serve({ writeLimit: 1 << 20 })
  const clients: RawClient[] = []
  const conns: Deno.Conn[] = []
  try {
    await sparseFile(`${root}/big.bin`, 1 << 20)
    const client = await loggedIn(server.address.port, { type: null })
    clients.push(client)
    const data = await client.passive()
    conns.push(data)
    assert.equal((await client.command("RETR big.bin")).code, 150)
    const received = readAll(data)
    const closed = Effect.runPromise(server.close(10))
    await new Promise((resolve) => setTimeout(resolve, 100))
    assert.equal((await client.command("NOOP")).code, 200, "NOOP is answered during the grace")
    // Any other command waits for the transfer, and then the session is closed instead of running it.
    await client.send("PWD")
    assert.equal((await received).length, 1 << 20)
    assert.equal(await nextCode(client), 226)
    assert.equal(await nextCode(client), 421)
    assert(await client.closedByServer())
    await timed(closed, 5000, "close() to complete")

    const other = await serve()
    try {
      const quitter = await loggedIn(other.server.address.port, { type: null })
      clients.push(quitter)
      const data2 = await quitter.passive()
      conns.push(data2)
      await sparseFile(`${other.root}/f.bin`, 64 << 20)
      assert.equal((await quitter.command("RETR f.bin")).code, 150)
      const closing = Effect.runPromise(other.server.close(10))
      await new Promise((resolve) => setTimeout(resolve, 100))
      await quitter.send("QUIT")
      closeQuietly(data2)
      const codes = [await nextCode(quitter), await nextCode(quitter)]
      assert(codes.includes(221), `QUIT during the grace gets 221 (got ${codes})`)
      await timed(closing, 5000, "close() to complete")
    } finally {
      await other.dispose()
    }
  } finally {
    for (const client of clients) client.close()
    for (const conn of conns) closeQuietly(conn)
    await dispose()
  }
})

// The CLI: SIGTERM is a graceful close, a second SIGTERM stops at once; both exit 130.

const CLI = new URL("../src/cli.ts", import.meta.url).pathname

interface Cli {
  readonly port: number
  readonly process: Deno.ChildProcess
  readonly log: () => string
  readonly drained: Promise<void>
}

/** An application that launches `FtpServer.layer` under `runMain`; `FTPD_ROOT` is its directory. */
const LAYER_APP = `
import { DummyAuthorizer, FtpLogger, FtpServer, LocalFilesystem, runMain } from "./mod.ts"
import { Layer } from "effect"
const root = Deno.env.get("FTPD_ROOT")
const users = DummyAuthorizer.layer((a) => a.addUser("user", "pass", root, { perm: "elr" }))
const server = FtpServer.layer({ host: "127.0.0.1", port: 0, shutdownGrace: 10 })
runMain(Layer.launch(server.pipe(Layer.provide([users, LocalFilesystem.layer]), Layer.provide(FtpLogger.layer()))))
`

type App = "cli" | "workers" | "layer"

const startCli = async (dir: string, app: App = "cli"): Promise<Cli> => {
  const flags = [CLI, "-i", "127.0.0.1", "-p", "0", "-d", dir, "-u", "user", "-P", "pass"]
  const process = new Deno.Command(Deno.execPath(), {
    // Workers share the port through Deno.listen under --unstable-net (tests/workers_test.ts covers node:net).
    args: app === "cli"
      ? ["run", "-A", ...flags]
      : app === "workers"
      ? ["run", "-A", "--unstable-net", ...flags, "--workers", "2"]
      : ["eval", LAYER_APP],
    cwd: new URL("..", import.meta.url).pathname,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1", FTPD_ROOT: dir },
  }).spawn()
  let log = ""
  const banner = Promise.withResolvers<number>()
  const drained = (async () => {
    for await (const chunk of process.stderr.pipeThrough(new TextDecoderStream())) {
      log += chunk
      const match = />>> starting FTP server on 127\.0\.0\.1:(\d+)/.exec(log)
      if (match) banner.resolve(Number(match[1]))
    }
    banner.reject(new Error(`ftpd exited before its banner:\n${log}`))
  })()
  try {
    return { port: await timed(banner.promise, 10_000, `the banner:\n${log}`), process, log: () => log, drained }
  } catch (error) {
    stop(process)
    await Promise.all([process.status, drained])
    throw error
  }
}

const stop = (process: Deno.ChildProcess) => {
  try {
    process.kill("SIGKILL")
  } catch {
    // Exited already.
  }
}

const withCli = async (f: (cli: Cli, dir: string) => Promise<void>, app: App = "cli") => {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-shutdown-cli-" }))
  try {
    const cli = await startCli(dir, app)
    try {
      await f(cli, dir)
    } finally {
      stop(cli.process)
      await Promise.all([cli.process.status, cli.drained])
    }
  } finally {
    await Deno.remove(dir, { recursive: true })
  }
}

const downloadThroughSigterm = async (cli: Cli, dir: string) => {
  await sparseFile(`${dir}/big.bin`, 4 << 20)
  const client = await loggedIn(cli.port, { type: null })
  const data = await client.passive()
  try {
    assert.equal((await client.command("RETR big.bin")).code, 150)
    // About 2 s of reading: 64 KiB per 30 ms.
    const received = readSlowly(data, 30)
    await new Promise((resolve) => setTimeout(resolve, 300))
    cli.process.kill("SIGTERM")
    await eventually(() => refused(cli.port), 3000, "the listener to close")
    assert.equal(await received, 4 << 20, "the download got every byte")
    assert.equal(await nextCode(client), 226)
    assert.equal(await nextCode(client), 421)
    const status = await timed(cli.process.status, 5000, `the process to exit:\n${cli.log()}`)
    assert.equal(status.code, 130)
  } finally {
    client.close()
    closeQuietly(data)
  }
}

Deno.test("ftpd: SIGTERM lets a running download finish, then the process exits 130", async () => {
  await withCli(downloadThroughSigterm)
})

Deno.test("ftpd --workers 2: SIGTERM drains every worker, then the process exits 130", async () => {
  await withCli(downloadThroughSigterm, "workers")
})

Deno.test("an application launching FtpServer.layer under runMain gets the same grace at SIGTERM", async () => {
  await withCli(downloadThroughSigterm, "layer")
})

Deno.test("ftpd: a second SIGTERM during the grace stops a stalled download at once and exits 130", async () => {
  await withCli(async (cli, dir) => {
    await sparseFile(`${dir}/big.bin`, 256 << 20)
    const client = await loggedIn(cli.port, { type: null })
    const data = await client.passive()
    try {
      assert.equal((await client.command("RETR big.bin")).code, 150)
      // Nobody reads: the transfer stalls and would hold the process for the whole grace.
      await new Promise((resolve) => setTimeout(resolve, 300))
      cli.process.kill("SIGTERM")
      assert.equal(await within(cli.process.status, 1000), null, "the first SIGTERM waits for the transfer")
      const t0 = Date.now()
      cli.process.kill("SIGTERM")
      const status = await timed(cli.process.status, 3000, `the process to exit:\n${cli.log()}`)
      assert(Date.now() - t0 < 2500, `exit took ${Date.now() - t0} ms`)
      assert.equal(status.code, 130)
      const code = await nextCode(client)
      assert(code === 421 || code === "closed", `got ${code}`)
    } finally {
      client.close()
      closeQuietly(data)
    }
  })
})

/** A program under `runMain` that logs each SIGHUP through `Hangup`, and whose reload fails at the second. */
const HANGUP_APP = `
import { Effect } from "effect"
import { Hangup, runMain } from "./mod.ts"
let count = 0
runMain(Effect.scoped(Effect.gen(function* () {
  const hangup = yield* Hangup
  yield* hangup.onHangup(Effect.suspend(() => ++count === 2 ? Effect.die("reload broke") : Effect.sync(() => console.log("reload " + count))))
  yield* hangup.onHangup(Effect.sync(() => console.log("second reload " + count)))
  console.log("ready")
  return yield* Effect.never
})))
`

Deno.test("under runMain, each SIGHUP runs every reload registered with Hangup, a failing one alone fails, and SIGTERM still stops", async () => {
  const app = new URL(`../hangup_app_${crypto.randomUUID().slice(0, 8)}.ts`, import.meta.url).pathname
  await Deno.writeTextFile(app, HANGUP_APP)
  try {
    const process = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", app],
      stdout: "piped",
      stderr: "piped",
    }).spawn()
    const reader = process.stdout.pipeThrough(new TextDecoderStream()).getReader()
    let out = ""
    const until = async (text: string) => {
      while (!out.includes(text)) {
        const { value, done } = await timed(reader.read(), 10_000, `"${text}" on stdout (got ${out})`)
        if (done) throw new Error(`exited before "${text}": ${out}`)
        out += value
      }
    }
    await until("ready")
    for (const expected of ["second reload 1", "second reload 2", "reload 3"]) {
      process.kill("SIGHUP")
      await until(expected)
    }
    assert.doesNotMatch(out, /^reload 2$/m)
    // Effect's default logger writes to the console.
    assert.match(out, /A SIGHUP reload failed/)
    process.kill("SIGTERM")
    reader.releaseLock()
    const [status] = await Promise.all([process.status, process.stderr.cancel()])
    await process.stdout.cancel().catch(() => undefined)
    assert.equal(status.code, 130)
  } finally {
    await Deno.remove(app)
  }
})
