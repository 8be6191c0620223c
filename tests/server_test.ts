/**
 * The server as a whole: connection limits, hooks, shutdown with transfers running, the log
 * format, and memory over a long session.
 */
import { Effect } from "effect"
import assert from "node:assert/strict"
import net from "node:net"
import type { HookSession, HooksShape } from "../src/hooks.ts"
import { startBanner } from "../src/log.ts"
import {
  closeQuietly,
  eventually,
  loggedIn,
  openFds,
  RawClient,
  readAll,
  startServer,
  type TestServer,
  timed,
  within,
  withLoggedIn,
} from "./helpers.ts"

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** A logged-in raw client in binary mode. */
/** Connect until the greeting is 220 (a session slot may be released a moment after a close). */
const admitted = async (server: TestServer): Promise<RawClient> => {
  for (let attempt = 0; attempt < 50; attempt++) {
    const client = await RawClient.connect(server.port)
    if (client.greeting.code === 220) return client
    client.close()
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error("never admitted")
}

/** The greeting seen by a connection from `localAddress` (made with `node:net`, which can pick it). */
const greetingFrom = (localAddress: string, port: number): Promise<{ line: string; socket: net.Socket }> =>
  new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port, localAddress })
    let text = ""
    socket.on("error", reject)
    socket.on("data", (chunk: Uint8Array) => {
      text += decoder.decode(chunk)
      const end = text.indexOf("\r\n")
      if (end >= 0) resolve({ line: text.slice(0, end), socket })
    })
  })

const destroyed = (socket: net.Socket) =>
  new Promise<void>((resolve) => {
    if (socket.destroyed) return resolve()
    socket.on("close", () => resolve())
    socket.destroy()
  })

Deno.test("maxCons: the connection over the limit gets 421 and is closed while the others are served", async () => {
  const server = await startServer({ maxCons: 2 })
  const a = await RawClient.connect(server.port)
  const b = await RawClient.connect(server.port)
  const c = await RawClient.connect(server.port)
  try {
    assert.equal(a.greeting.code, 220)
    assert.equal(b.greeting.code, 220)
    assert.equal(c.greeting.code, 421)
    assert.ok(await c.closedByServer())
    assert.equal((await a.command("NOOP")).code, 200)
    assert.equal((await b.command("NOOP")).code, 200)
  } finally {
    a.close()
    b.close()
    c.close()
    await server.close()
  }
})

Deno.test("maxCons: slots are given back when sessions end, by QUIT or by a dropped connection", async () => {
  const server = await startServer({ maxCons: 2 })
  const a = await RawClient.connect(server.port)
  const b = await RawClient.connect(server.port)
  const extra: RawClient[] = []
  try {
    assert.equal((await a.command("QUIT")).code, 221)
    assert.ok(await a.closedByServer())
    b.close()
    extra.push(await admitted(server), await admitted(server))
    for (const client of extra) assert.equal((await client.command("NOOP")).code, 200)
    const over = await RawClient.connect(server.port)
    extra.push(over)
    assert.equal(over.greeting.code, 421)
  } finally {
    a.close()
    b.close()
    for (const client of extra) client.close()
    await server.close()
  }
})

Deno.test("maxConsPerIp: a second connection from one address gets 421, another address is served", async () => {
  const server = await startServer({ maxConsPerIp: 1 })
  const a = await RawClient.connect(server.port)
  const b = await RawClient.connect(server.port)
  const other = await timed(greetingFrom("127.0.0.2", server.port), 5000, "the greeting from 127.0.0.2")
  let again: RawClient | undefined
  try {
    assert.equal(a.greeting.code, 220)
    assert.equal(b.greeting.code, 421)
    assert.ok(await b.closedByServer())
    assert.match(other.line, /^220 /)
    assert.equal((await a.command("NOOP")).code, 200)
    a.close()
    again = await admitted(server)
    assert.equal((await again.command("NOOP")).code, 200)
  } finally {
    a.close()
    b.close()
    again?.close()
    await destroyed(other.socket)
    await server.close()
  }
})

interface HookCall {
  readonly hook: string
  readonly session: HookSession
  readonly arg?: string
}

Deno.test("every hook fires with the session and the user or file it is about", async () => {
  const calls: HookCall[] = []
  const one = (hook: string) => (session: HookSession) => Effect.sync(() => void calls.push({ hook, session }))
  const two = (hook: string) => (session: HookSession, arg: string) =>
    Effect.sync(() => void calls.push({ hook, session, arg }))
  const hooks: HooksShape = {
    onConnect: one("onConnect"),
    onDisconnect: one("onDisconnect"),
    onLogin: two("onLogin"),
    onLoginFailed: two("onLoginFailed"),
    onLogout: two("onLogout"),
    onFileSent: two("onFileSent"),
    onFileReceived: two("onFileReceived"),
    onIncompleteFileSent: two("onIncompleteFileSent"),
    onIncompleteFileReceived: two("onIncompleteFileReceived"),
  }
  const server = await startServer({ hooks })
  const client = await RawClient.connect(server.port)
  const port = (client.conn.localAddr as Deno.NetAddr).port
  const root = server.root
  /** Wait for the next hook call and check it (`user` undefined: not checked). */
  let seen = 0
  const expectHook = async (hook: string, arg: string | undefined, user: string | null | undefined) => {
    await eventually(() => calls.length > seen, 5000, `${hook} (got ${calls.map((c) => c.hook).join(", ")})`)
    const call = calls[seen++]
    assert.equal(call.hook, hook)
    assert.equal(call.arg, arg, hook)
    const { id, ...session } = user === undefined ? { ...call.session, user } : call.session
    assert.deepEqual(session, { remoteAddress: "127.0.0.1", remotePort: port, user, host: null }, hook)
    // One id for the whole session, as in its JSON log lines and traces.
    assert.equal(id, calls[0].session.id, hook)
    assert.match(id, /^[0-9a-f]{8}$/)
  }
  try {
    await expectHook("onConnect", undefined, null)
    await client.command("USER user")
    assert.equal((await client.command("PASS wrong")).code, 530)
    await expectHook("onLoginFailed", "user", null)
    await client.login()
    await expectHook("onLogin", "user", "user")
    await client.command("TYPE I")

    let data = await client.passive()
    await client.send("STOR a.txt")
    assert.equal((await client.readReply()).code, 150)
    await data.write(encoder.encode("alpha"))
    data.close()
    assert.equal((await client.readReply()).code, 226)
    await expectHook("onFileReceived", `${root}/a.txt`, "user")

    data = await client.passive()
    await client.send("RETR a.txt")
    assert.equal((await client.readReply()).code, 150)
    assert.equal(decoder.decode(await readAll(data)), "alpha")
    assert.equal((await client.readReply()).code, 226)
    await expectHook("onFileSent", `${root}/a.txt`, "user")

    const big = await Deno.open(`${root}/big.bin`, { write: true, create: true })
    await big.truncate(128 << 20)
    big.close()
    data = await client.passive()
    await client.send("RETR big.bin")
    assert.equal((await client.readReply()).code, 150)
    await timed(data.read(new Uint8Array(65536)), 5000, "the first bytes")
    data.close()
    assert.equal((await client.readReply()).code, 426)
    await expectHook("onIncompleteFileSent", `${root}/big.bin`, "user")

    data = await client.passive()
    await client.send("STOR b.txt")
    assert.equal((await client.readReply()).code, 150)
    await data.write(encoder.encode("partial"))
    await client.send("ABOR")
    assert.equal((await client.readReply()).code, 426)
    assert.equal((await client.readReply()).code, 226)
    closeQuietly(data)
    await expectHook("onIncompleteFileReceived", `${root}/b.txt`, "user")

    assert.equal((await client.command("USER anonymous")).code, 331)
    // The hook still sees the session of the user who is leaving.
    await expectHook("onLogout", "user", "user")
    await client.command("USER user")
    await client.command("PASS pass")
    await expectHook("onLogin", "user", "user")
    assert.equal((await client.command("QUIT")).code, 221)
    await expectHook("onLogout", "user", "user")
    assert.ok(await client.closedByServer())
    await expectHook("onDisconnect", undefined, "user")
    await new Promise((resolve) => setTimeout(resolve, 100))
    assert.equal(calls.length, seen, `unexpected calls: ${calls.slice(seen).map((c) => c.hook).join(", ")}`)
  } finally {
    client.close()
    await server.close()
  }
})

Deno.test("slow onLogin and onFileReceived hooks block neither their session, nor another one, nor shutdown", async () => {
  const started = { login: 0, received: 0 }
  const finished = { login: 0, received: 0 }
  const slow = (kind: "login" | "received") => () =>
    Effect.sync(() => started[kind]++).pipe(
      Effect.andThen(Effect.sleep("3 seconds")),
      Effect.andThen(Effect.sync(() => finished[kind]++)),
    )
  const server = await startServer({ hooks: { onLogin: slow("login"), onFileReceived: slow("received") } })
  let uploader: RawClient | undefined
  let other: RawClient | undefined
  try {
    await Deno.writeTextFile(`${server.root}/a.txt`, "alpha")
    const t0 = Date.now()
    uploader = await loggedIn(server)
    // Two uploads in a row: the second must neither wait for the first hook nor cut it short.
    for (const name of ["up1.txt", "up2.txt"]) {
      const data = await uploader.passive()
      await uploader.send(`STOR ${name}`)
      assert.equal((await uploader.readReply()).code, 150)
      await data.write(encoder.encode("upload"))
      data.close()
      assert.equal((await uploader.readReply()).code, 226)
    }
    assert.equal((await uploader.command("NOOP")).code, 200)
    assert.ok(Date.now() - t0 < 1500, `login and two uploads took ${Date.now() - t0} ms`)
    await eventually(() => started.login === 1 && started.received === 2, 1000, "the hooks to start")

    const t1 = Date.now()
    other = await loggedIn(server)
    const conn = await other.passive()
    await other.send("RETR a.txt")
    assert.equal((await other.readReply()).code, 150)
    assert.equal(decoder.decode(await readAll(conn)), "alpha")
    assert.equal((await other.readReply()).code, 226)
    assert.ok(Date.now() - t1 < 1000, `another session's login and RETR took ${Date.now() - t1} ms`)
    assert.deepEqual(finished, { login: 0, received: 0 }, "the hooks finished early: this test proves nothing")
    await eventually(
      () => finished.login === 2 && finished.received === 2,
      5000,
      `every hook to finish (${JSON.stringify(finished)})`,
    )

    // A hook still sleeping when the server closes is interrupted, not waited for.
    const data = await uploader.passive()
    await uploader.send("STOR up3.txt")
    assert.equal((await uploader.readReply()).code, 150)
    data.close()
    assert.equal((await uploader.readReply()).code, 226)
    await eventually(() => started.received === 3, 1000, "the last hook to start")
    const t2 = Date.now()
    await server.close()
    assert.ok(Date.now() - t2 < 1500, `close() took ${Date.now() - t2} ms`)
  } finally {
    uploader?.close()
    other?.close()
    await server.close()
  }
})

/** The next reply is 421 and then the connection closes, or the connection just closes. */
const told421OrClosed = async (client: RawClient): Promise<string> => {
  try {
    const reply = await client.readReply(5000)
    if (reply.code !== 421) return `got ${reply.lines.join("|")}`
    return (await client.closedByServer()) ? "ok" : "421 but not closed"
  } catch (error) {
    return String(error).includes("connection closed") ? "ok" : String(error)
  }
}

Deno.test("closing the server with transfers running tells every session 421, closes every connection and leaves no fd", async () => {
  const fdsBefore = openFds()
  const calls: string[] = []
  const record = (hook: string) => (_session: HookSession, file: string) =>
    Effect.sync(() => void calls.push(`${hook} ${file}`))
  const server = await startServer({
    hooks: {
      onIncompleteFileSent: record("onIncompleteFileSent"),
      onIncompleteFileReceived: record("onIncompleteFileReceived"),
    },
  })
  const activeTarget = Deno.listen({ hostname: "127.0.0.1", port: 0 })
  const reader = await loggedIn(server)
  const writer = await loggedIn(server)
  const idle = await loggedIn(server)
  const active = await loggedIn(server)
  const conns: Deno.Conn[] = []
  let pause = 20
  try {
    const big = await Deno.open(`${server.root}/big.bin`, { write: true, create: true })
    await big.truncate(128 << 20)
    big.close()

    const readerData = await reader.passive()
    conns.push(readerData)
    await reader.send("RETR big.bin")
    assert.equal((await reader.readReply()).code, 150)
    // A slow reader: 64 KiB every 20 ms until the server closes, then what is buffered as fast as it comes.
    const slowRead = (async () => {
      const buffer = new Uint8Array(65536)
      const deadline = Date.now() + 10_000
      while (Date.now() < deadline) {
        const left = deadline - Date.now()
        const n = await within(readerData.read(buffer).then((r) => r ?? "eof", () => "eof"), left)
        if (n === null) return "still open"
        if (n === "eof") return "ended"
        if (pause > 0) await new Promise((resolve) => setTimeout(resolve, pause))
      }
      return "still open"
    })()
    await new Promise((resolve) => setTimeout(resolve, 100))

    const writerData = await writer.passive()
    conns.push(writerData)
    await writer.send("STOR up.bin")
    assert.equal((await writer.readReply()).code, 150)
    await writerData.write(new Uint8Array(65536))
    await eventually(async () => (await Deno.stat(`${server.root}/up.bin`)).size > 0, 5000, "the upload to start")

    // The idle session holds a passive lease, the active one a PORT connection waiting for a transfer.
    assert.equal((await idle.command("EPSV")).code, 229)
    const port = (activeTarget.addr as Deno.NetAddr).port
    assert.equal((await active.command(`PORT 127,0,0,1,${port >> 8},${port & 255}`)).code, 200)
    const activeData = await timed(activeTarget.accept(), 5000, "the PORT connection")
    conns.push(activeData)

    const t0 = Date.now()
    await server.close()
    const closing = Date.now() - t0
    pause = 0
    assert.ok(closing < 3000, `close() took ${closing} ms`)
    for (const client of [reader, writer, idle, active]) assert.equal(await told421OrClosed(client), "ok")
    assert.equal(await within(slowRead, 5000), "ended")
    const ended = (conn: Deno.Conn) =>
      within(conn.read(new Uint8Array(16)).then((n) => (n === null ? "ended" : "data"), () => "ended"), 5000)
    assert.equal(await ended(writerData), "ended", "the STOR data connection is still open")
    assert.equal(await ended(activeData), "ended", "the PORT data connection is still open")
    await eventually(
      () =>
        calls.includes(`onIncompleteFileSent ${server.root}/big.bin`) &&
        calls.includes(`onIncompleteFileReceived ${server.root}/up.bin`),
      2000,
      `the incomplete hooks (got ${calls.join(", ")})`,
    )
  } finally {
    pause = 0
    for (const client of [reader, writer, idle, active]) client.close()
    for (const conn of conns) closeQuietly(conn)
    closeQuietly(activeTarget)
    await server.close()
  }
  await eventually(() => openFds() === fdsBefore, 5000, `open fds back to ${fdsBefore} (now ${openFds()})`)
})

Deno.test("time spent in a transfer is not idle time, and an idle session then gets 421 after timeout", async () => {
  await withLoggedIn({ timeout: 1 }, async (server, client) => {
    const big = await Deno.open(`${server.root}/big.bin`, { write: true, create: true })
    await big.truncate(128 << 20)
    big.close()
    const conn = await client.passive()
    await client.send("RETR big.bin")
    assert.equal((await client.readReply()).code, 150)
    // Read slowly for 2.5 s (more than twice the idle timeout), then the rest at full speed.
    const buffer = new Uint8Array(65536)
    const slowUntil = Date.now() + 2500
    while (Date.now() < slowUntil) {
      assert.notEqual(await timed(conn.read(buffer), 5000, "data to read"), null, "the transfer ended early")
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    await readAll(conn)
    assert.equal((await client.readReply()).code, 226)
    assert.equal((await client.command("NOOP")).code, 200)
    const t0 = Date.now()
    const reply = await client.readReply(5000)
    assert.equal(reply.code, 421, reply.lines.join("|"))
    assert.ok(Date.now() - t0 >= 800 && Date.now() - t0 < 3000, `421 after ${Date.now() - t0} ms`)
    assert.ok(await client.closedByServer())
  })
})

const TIMESTAMP = String.raw`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d`

Deno.test("the server logs the start banner, logins and transfers in pyftpdlib's format", async () => {
  await withLoggedIn({}, async (server, client) => {
    const port = (client.conn.localAddr as Deno.NetAddr).port
    const prefix = String.raw`^\[I ${TIMESTAMP}\] 127\.0\.0\.1:${port}-\[user\] `
    await Deno.writeTextFile(`${server.root}/x`, "0123456789")
    const conn = await client.passive()
    await client.send("RETR x")
    assert.equal((await client.readReply()).code, 150)
    await readAll(conn)
    assert.equal((await client.readReply()).code, 226)
    const upload = await client.passive()
    await client.send("STOR y")
    assert.equal((await client.readReply()).code, 150)
    await upload.write(encoder.encode("abc"))
    upload.close()
    assert.equal((await client.readReply()).code, 226)
    const logs = server.logs.join("\n")
    assert.match(
      logs,
      new RegExp(
        String
          .raw`^\[I ${TIMESTAMP}\] >>> starting FTP server on 127\.0\.0\.1:${server.port}, pid=${Deno.pid}(, worker 1 of \d+)? <<<$`,
        "m",
      ),
    )
    assert.match(logs, new RegExp(`${prefix}USER 'user' logged in\\.$`, "m"))
    assert.match(logs, new RegExp(String.raw`${prefix}RETR /x completed=1 bytes=10 seconds=\d+\.\d+$`, "m"))
    assert.match(logs, new RegExp(String.raw`${prefix}STOR /y completed=1 bytes=3 seconds=\d+\.\d+$`, "m"))
  })
})

Deno.test("the start banner says which folder is served to whom, with which letters", async () => {
  const server = await startServer()
  try {
    assert.ok(
      server.logs.some((line) =>
        line.endsWith(`] serving ${server.root}: user user read-write (elradfmwMT), anonymous read-only (elr)`)
      ),
      server.logs.join("\n"),
    )
  } finally {
    await server.close()
  }
  const lines = startBanner({
    address: "[::]:21",
    pid: 1,
    masqueradeAddress: null,
    passivePorts: null,
    filesystem: undefined,
    serving: undefined,
    tls: null,
  })
  assert.ok(lines.includes("serving custom authorizer"), "an authorizer that does not describe itself")
})

Deno.test("with debug on, every command and reply is logged and the password is masked", async () => {
  const server = await startServer({
    debug: true,
    users: (a, root) => a.addUser("alice", "s3cr3t-pw", root, { perm: "elr" }),
  })
  const client = await RawClient.connect(server.port)
  try {
    await client.login("alice", "s3cr3t-pw")
    assert.equal((await client.command("NOOP")).code, 200)
    assert.equal((await client.command("PWD")).code, 257)
    assert.equal((await client.command("QUIT")).code, 221)
    assert.ok(await client.closedByServer())
    const port = (client.conn.localAddr as Deno.NetAddr).port
    const line = (text: string) =>
      new RegExp(String.raw`^\[D ${TIMESTAMP}\] 127\.0\.0\.1:${port}-\[\w*\] ${text}$`, "m")
    const logs = server.logs.join("\n")
    assert.match(logs, line(String.raw`-> 220 .*`))
    assert.match(logs, line("<- USER alice"))
    assert.match(logs, line(String.raw`-> 331 .*`))
    assert.match(logs, line(String.raw`<- PASS \*\*\*\*\*\*`))
    assert.match(logs, line(String.raw`-> 230 .*`))
    assert.match(logs, line("<- NOOP"))
    assert.match(logs, line(String.raw`-> 200 .*`))
    assert.match(logs, line("<- PWD"))
    assert.match(logs, line(String.raw`-> 257 "/" .*`))
    assert.match(logs, line("<- QUIT"))
    assert.match(logs, line(String.raw`-> 221 .*`))
    assert.ok(!logs.includes("s3cr3t-pw"), "the password is in the log")
  } finally {
    client.close()
    await server.close()
  }
})

/** Run in a child process with `--expose-gc`: the heap growth of a server over 20,000 NOOPs. */
const MEMORY_PROBE = `
import { RawClient, startServer } from ${JSON.stringify(new URL("./helpers.ts", import.meta.url).href)}
const gc = (globalThis as unknown as { gc: () => void }).gc
const server = await startServer()
const client = await RawClient.connect(server.port)
await client.login()
const batch = new TextEncoder().encode("NOOP\\r\\n".repeat(100))
const noops = async (count: number) => {
  for (let i = 0; i < count / 100; i++) {
    await client.send(batch)
    for (let j = 0; j < 100; j++) if ((await client.readReply()).code !== 200) throw new Error("NOOP failed")
  }
}
const heap = () => { gc(); gc(); return Deno.memoryUsage().heapUsed }
await noops(2000)
const before = heap()
await noops(20000)
const after = heap()
client.close()
await server.close()
console.log(JSON.stringify({ before, after }))
`

Deno.test("a session answering 20,000 NOOPs keeps the server heap flat", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ftpd-memory-" })
  try {
    await Deno.writeTextFile(`${dir}/probe.ts`, MEMORY_PROBE)
    const config = new URL("../deno.json", import.meta.url).pathname
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", "--no-prompt", "--config", config, "--v8-flags=--expose-gc", `${dir}/probe.ts`],
      stdout: "piped",
      stderr: "piped",
    }).output()
    assert.equal(output.code, 0, decoder.decode(output.stderr))
    const { before, after } = JSON.parse(decoder.decode(output.stdout).trim().split("\n").at(-1)!)
    const growth = after - before
    assert.ok(growth < 3 << 20, `heap grew by ${(growth / (1 << 20)).toFixed(1)} MB over 20,000 NOOPs`)
  } finally {
    await Deno.remove(dir, { recursive: true })
  }
})
