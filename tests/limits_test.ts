/**
 * Limits against hostile clients: sessions per user, bans after failed logins (and the shared
 * `Bans` service), the command-rate limit and the login timeout.
 */
import { Effect, Exit, Layer, Scope } from "effect"
import assert from "node:assert/strict"
import { DummyAuthorizer } from "../src/auth/dummy.ts"
import { BANNED_TEXT, Bans, type BansShape } from "../src/bans.ts"
import { LocalFilesystem } from "../src/fs/local.ts"
import { FtpLogger } from "../src/log.ts"
import { FtpServer } from "../src/server.ts"
import { closeQuietly, eventually, makeCertificate, RawClient, startServer, timed } from "./helpers.ts"

/** Log in with a fresh connection, retrying while a slot given back a moment ago is still counted. */
const loginEventually = async (port: number): Promise<RawClient> => {
  for (let attempt = 0; attempt < 50; attempt++) {
    const client = await RawClient.connect(port)
    await client.command("USER user")
    const reply = await client.command("PASS pass")
    if (reply.code === 230) return client
    assert.equal(reply.code, 530)
    assert.equal(reply.text, "Too many sessions for this user.")
    client.close()
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  throw new Error("the user's session slot was never given back")
}

Deno.test("maxSessionsPerUser: the login over the limit gets 530, and QUIT, REIN and a disconnect give slots back", async () => {
  const server = await startServer({ maxSessionsPerUser: 2 })
  const clients: RawClient[] = []
  try {
    const a = await RawClient.connect(server.port)
    const b = await RawClient.connect(server.port)
    const c = await RawClient.connect(server.port)
    clients.push(a, b, c)
    await a.login()
    await b.login()
    assert.equal((await c.command("USER user")).code, 331)
    assert.deepEqual(await c.command("PASS pass"), {
      code: 530,
      text: "Too many sessions for this user.",
      lines: ["530 Too many sessions for this user."],
    })
    // Refused, not logged in: the session still works for another user.
    assert.equal((await c.command("PWD")).code, 530)
    await c.login("anonymous", "guest@")
    assert.ok(server.logs.some((l) => l.includes("USER 'user' refused: too many sessions for this user.")))

    assert.equal((await a.command("QUIT")).code, 221)
    const d = await loginEventually(server.port)
    clients.push(d)
    b.close()
    const e = await loginEventually(server.port)
    clients.push(e)
    assert.equal((await d.command("REIN")).code, 220)
    const f = await loginEventually(server.port)
    clients.push(f)
    const over = await RawClient.connect(server.port)
    clients.push(over)
    await over.command("USER user")
    assert.equal((await over.command("PASS pass")).code, 530)
  } finally {
    for (const client of clients) client.close()
    await server.close()
  }
})

Deno.test("bans: a password-guessing loop gets banned (421 at connect) while a good client from another address logs in at full speed", async () => {
  const server = await startServer({
    banAfterFailures: 3,
    banWindow: 60,
    banDuration: 60,
    authFailedTimeout: 0.4,
    maxLoginAttempts: 100,
  })
  try {
    const guessing = (async () => {
      const guesser = await RawClient.connectFrom(server.port, "127.0.0.2")
      try {
        assert.equal(guesser.greeting.code, 220)
        const replies: number[] = []
        for (let guess = 0; guess < 10; guess++) {
          await guesser.command("USER user")
          const reply = await guesser.command(`PASS guess${guess}`)
          replies.push(reply.code)
          if (reply.code === 421) {
            assert.equal(reply.text, BANNED_TEXT)
            break
          }
        }
        assert.deepEqual(replies, [530, 530, 421])
        assert.ok(await guesser.closedByServer())
      } finally {
        await guesser.close()
      }
    })()
    let done = false
    guessing.finally(() => (done = true)).catch(() => undefined)
    // Each failed guess sleeps 0.4 s in its own session only: logins from 127.0.0.1 stay fast.
    let logins = 0
    while (!done) {
      const started = performance.now()
      const good = await RawClient.connect(server.port)
      try {
        await good.login()
        assert.equal((await good.command("QUIT")).code, 221)
      } finally {
        good.close()
      }
      const ms = performance.now() - started
      assert.ok(ms < 250, `a login from 127.0.0.1 took ${ms.toFixed(0)} ms while 127.0.0.2 was guessing`)
      logins++
    }
    await guessing
    assert.ok(logins >= 5, `only ${logins} logins during the guessing`)

    const again = await RawClient.connectFrom(server.port, "127.0.0.2")
    try {
      assert.deepEqual(again.greeting, { code: 421, text: BANNED_TEXT, lines: [`421 ${BANNED_TEXT}`] })
      assert.ok(await again.closedByServer())
    } finally {
      await again.close()
    }
    const good = await RawClient.connect(server.port)
    try {
      assert.equal(good.greeting.code, 220)
      await good.login()
    } finally {
      good.close()
    }
    assert.ok(server.logs.some((l) => l.includes("127.0.0.2 banned")), server.logs.join("\n"))
    assert.ok(server.logs.some((l) => l.includes("127.0.0.2 refused: banned.")), server.logs.join("\n"))
  } finally {
    await server.close()
  }
})

Deno.test("bans: failures older than banWindow do not count, and a ban ends after banDuration", async () => {
  const server = await startServer({ banAfterFailures: 2, banWindow: 0.3, banDuration: 0.6, maxLoginAttempts: 100 })
  try {
    const client = await RawClient.connectFrom(server.port, "127.0.0.2")
    try {
      await client.command("USER user")
      assert.equal((await client.command("PASS wrong")).code, 530)
      await new Promise((resolve) => setTimeout(resolve, 400))
      // The first failure is out of the window: this one alone does not ban.
      await client.command("USER user")
      assert.equal((await client.command("PASS wrong")).code, 530)
      await client.command("USER user")
      assert.equal((await client.command("PASS wrong")).code, 421)
    } finally {
      await client.close()
    }
    const banned = await RawClient.connectFrom(server.port, "127.0.0.2")
    await banned.close()
    assert.equal(banned.greeting.code, 421)
    await new Promise((resolve) => setTimeout(resolve, 700))
    const back = await RawClient.connectFrom(server.port, "127.0.0.2")
    try {
      assert.equal(back.greeting.code, 220)
      await back.command("USER user")
      assert.equal((await back.command("PASS pass")).code, 230)
    } finally {
      await back.close()
    }
  } finally {
    await server.close()
  }
})

/** A server with the given ban list, started like `startServer` but without its options. */
const startWithBans = async (bans: BansShape, root: string) => {
  const logs: string[] = []
  const layers = Layer.mergeAll(
    DummyAuthorizer.layer((a) => a.addUser("user", "pass", root, { perm: "elr" })),
    LocalFilesystem.layer,
    FtpLogger.layer({ write: (line) => void logs.push(line) }),
    Layer.succeed(Bans, bans),
  )
  const scope = Effect.runSync(Scope.make())
  const server = await Effect.runPromise(
    FtpServer.make({ host: "127.0.0.1", port: 0, authFailedTimeout: 0, maxLoginAttempts: 100 }).pipe(
      Scope.provide(scope),
      Effect.provide(layers),
    ),
  )
  return {
    port: server.address.port,
    bans: server.bans,
    logs,
    close: () => Effect.runPromise(Scope.close(scope, Exit.void)),
  }
}

Deno.test("bans: an application's Bans service is shared by two servers, pre-banned, listed and lifted", async () => {
  const root = await Deno.makeTempDir({ prefix: "ftpd-test-" })
  const shared = Bans.make({ banAfterFailures: 2, banWindow: 60, banDuration: 60 })
  const one = await startWithBans(shared, root)
  const two = await startWithBans(shared, root)
  try {
    assert.equal(one.bans, shared)
    await Effect.runPromise(shared.ban("127.0.0.2", 60))
    for (const server of [one, two]) {
      const client = await RawClient.connectFrom(server.port, "127.0.0.2")
      await client.close()
      assert.equal(client.greeting.code, 421)
    }
    const [entry] = await Effect.runPromise(shared.list())
    assert.equal(entry.ip, "127.0.0.2")
    assert.ok(entry.until > Date.now() + 50_000 && entry.until <= Date.now() + 60_000)
    await Effect.runPromise(shared.unban("127.0.0.2"))
    assert.deepEqual(await Effect.runPromise(shared.list()), [])

    // One failed login on each server: together they reach banAfterFailures.
    for (const server of [one, two]) {
      const client = await RawClient.connectFrom(server.port, "127.0.0.2")
      try {
        assert.equal(client.greeting.code, 220)
        await client.command("USER user")
        assert.ok([530, 421].includes((await client.command("PASS wrong")).code))
      } finally {
        await client.close()
      }
    }
    assert.deepEqual((await Effect.runPromise(shared.list())).map((e) => e.ip), ["127.0.0.2"])
    assert.ok(two.logs.some((l) => l.includes("127.0.0.2 banned")), two.logs.join("\n"))
    const good = await RawClient.connect(one.port)
    try {
      await good.login()
    } finally {
      good.close()
    }
  } finally {
    await one.close()
    await two.close()
    await Deno.remove(root, { recursive: true })
  }
})

Deno.test("bans: Bans.layerNoop never bans, whatever the failures", async () => {
  const bans = await Effect.runPromise(
    Effect.gen(function* () {
      return yield* Bans
    }).pipe(Effect.provide(Bans.layerNoop)),
  )
  assert.equal(await Effect.runPromise(bans.recordFailure("127.0.0.2")), false)
  await Effect.runPromise(bans.ban("127.0.0.2", 60))
  assert.equal(await Effect.runPromise(bans.isBanned("127.0.0.2")), false)
})

Deno.test("maxCommandsPerSecond: a flood gets 421 and is disconnected (and counts toward a ban); a steady client is not", async () => {
  const server = await startServer({ maxCommandsPerSecond: 20, banAfterFailures: 1 })
  try {
    const steady = await RawClient.connect(server.port)
    const flood = await RawClient.connectFrom(server.port, "127.0.0.2")
    try {
      await steady.login()
      for (let i = 0; i < 15; i++) assert.equal((await steady.command("NOOP")).code, 200)

      const codes: number[] = []
      // 100 commands at once, one write each, not waiting for replies (writes after the close fail).
      for (let i = 0; i < 100; i++) void flood.send("NOOP").catch(() => undefined)
      for (;;) {
        const reply = await flood.readReply().catch(() => null)
        if (reply === null) break
        codes.push(reply.code)
      }
      assert.deepEqual(codes, [...Array(20).fill(200), 421])
      assert.ok(await flood.closedByServer())
      await new Promise((resolve) => setTimeout(resolve, 1000))
      for (let i = 0; i < 15; i++) assert.equal((await steady.command("NOOP")).code, 200)
    } finally {
      steady.close()
      await flood.close()
    }
    assert.ok(server.logs.some((l) => l.includes("Disconnected: more than 20 commands per second.")))
    const banned = await RawClient.connectFrom(server.port, "127.0.0.2")
    await banned.close()
    assert.equal(banned.greeting.code, 421)
  } finally {
    await server.close()
  }
})

Deno.test("loginTimeout: a connection that does not log in in time gets 421 and is closed; a logged-in one stays", async () => {
  const server = await startServer({ loginTimeout: 0.5 })
  const idle = await RawClient.connect(server.port)
  const logged = await RawClient.connect(server.port)
  try {
    await logged.login()
    assert.equal((await idle.command("USER user")).code, 331)
    const reply = await timed(idle.readReply(3000), 3000, "the login timeout")
    assert.deepEqual(reply.code, 421)
    assert.equal(reply.text, "No login within 0.5 seconds: closing control connection.")
    assert.ok(await idle.closedByServer())
    assert.equal((await logged.command("NOOP")).code, 200)
    await eventually(() => server.logs.some((l) => l.includes("No login within 0.5 seconds")), 2000, "the log line")
  } finally {
    idle.close()
    logged.close()
    await server.close()
  }
})

Deno.test("bans: the in-memory list tracks at most maxTracked addresses, forgetting the oldest", async () => {
  const bans = Bans.make({ banAfterFailures: 2, banWindow: 60, banDuration: 60, maxTracked: 2 })
  const run = <A>(effect: Effect.Effect<A>) => Effect.runPromise(effect)
  for (const ip of ["192.0.2.1", "192.0.2.2", "192.0.2.3"]) assert.equal(await run(bans.recordFailure(ip)), false)
  // 192.0.2.1's first failure was forgotten: its second one starts over.
  assert.equal(await run(bans.recordFailure("192.0.2.1")), false)
  assert.equal(await run(bans.recordFailure("192.0.2.3")), true)
  for (const ip of ["198.51.100.1", "198.51.100.2", "198.51.100.3"]) await run(bans.ban(ip, 60))
  assert.deepEqual((await run(bans.list())).map((e) => e.ip), ["198.51.100.2", "198.51.100.3"])
})

Deno.test("maxCons counts a connection still in its implicit TLS handshake, and its slot comes back when the handshake times out", async () => {
  const cert = await makeCertificate()
  const server = await startServer({
    maxCons: 1,
    tls: { cert: cert.cert, key: cert.key },
    implicitTlsPort: 0,
    tlsHandshakeTimeout: 0.5,
  })
  const clients: RawClient[] = []
  let stalled: Deno.TcpConn | undefined
  try {
    const banner = server.logs.find((l) => l.includes("] TLS: ")) ?? ""
    const implicitPort = Number(/implicit TLS on 127\.0\.0\.1:(\d+)/.exec(banner)?.[1])
    // Connects and never sends a ClientHello.
    stalled = await Deno.connect({ hostname: "127.0.0.1", port: implicitPort })
    await new Promise((resolve) => setTimeout(resolve, 100))
    const refused = await RawClient.connect(server.port)
    clients.push(refused)
    assert.equal(refused.greeting.code, 421)
    assert.equal(await timed(stalled.read(new Uint8Array(16)), 3000, "the handshake timeout"), null)
    await eventually(
      async () => {
        const client = await RawClient.connect(server.port)
        clients.push(client)
        return client.greeting.code === 220
      },
      3000,
      "the slot to come back",
    )
  } finally {
    if (stalled !== undefined) closeQuietly(stalled)
    for (const client of clients) client.close()
    await server.close()
    await cert.remove()
  }
})
