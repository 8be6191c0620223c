/**
 * The data channel as a client sees it: PASV/EPSV leases from `passivePorts`, masquerading,
 * PORT/EPRT active mode, the bounce, privileged-port and theft refusals, and IPv6.
 */
import { Client } from "basic-ftp"
import assert from "node:assert/strict"
import net from "node:net"
import { Readable, Writable } from "node:stream"
import {
  curl,
  eventually,
  loggedIn,
  type RawClient,
  readAll,
  type Reply,
  startServer,
  within,
  withLoggedIn,
} from "./helpers.ts"

const decoder = new TextDecoder()

/** A random passive range of `count` ports below the OS's ephemeral range (32768+). */
const passiveRange = (count: number): [number, number] => {
  const from = 20000 + Math.floor(Math.random() * 10000)
  return [from, from + count - 1]
}

/** Host and port of a 227 reply. */
const pasvTarget = (reply: Reply): { host: string; port: number } => {
  const match = /\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)/.exec(reply.text)
  assert.equal(reply.code, 227, reply.lines.join("|"))
  assert.ok(match !== null, reply.text)
  const n = match.slice(1).map(Number)
  return { host: n.slice(0, 4).join("."), port: n[4] * 256 + n[5] }
}

/** Port of a 229 reply. */
const epsvPort = (reply: Reply): number => {
  assert.equal(reply.code, 229, reply.lines.join("|"))
  const match = /\(\|\|\|(\d+)\|\)/.exec(reply.text)
  assert.ok(match !== null, reply.text)
  return Number(match[1])
}

/** The PORT argument for `host:port`. */
const portArg = (host: string, port: number) => `${host.replaceAll(".", ",")},${port >> 8},${port & 255}`

/** A logged-in raw client in binary mode. */
/** RETR `name` over a passive connection to `port`; returns the bytes and checks 150/226. */
const retrVia = async (client: RawClient, hostname: string, port: number, name: string): Promise<string> => {
  const data = await Deno.connect({ hostname, port })
  await client.send(`RETR ${name}`)
  assert.equal((await client.readReply()).code, 150)
  const bytes = await readAll(data)
  assert.equal((await client.readReply()).code, 226)
  return decoder.decode(bytes)
}

/** A listener for active mode, closed with `close()`; `next()` is its first connection or `null` after `ms`. */
const activeTarget = (hostname = "127.0.0.1") => {
  const listener = Deno.listen({ hostname, port: 0 })
  const accepted = listener.accept().catch(() => null)
  return {
    port: (listener.addr as Deno.NetAddr).port,
    next: (ms: number) => within(accepted, ms),
    close: async () => {
      try {
        listener.close()
      } catch {
        // Closed already.
      }
      try {
        ;(await accepted)?.close()
      } catch {
        // Closed by reading it to its end.
      }
    },
  }
}

Deno.test("PASV replies 227 with the control address and a port from passivePorts", async () => {
  const range = passiveRange(10)
  await withLoggedIn({ passivePorts: range }, async (server, client) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "alpha")
    const reply = await client.command("PASV")
    assert.match(reply.text, /^Entering passive mode \(\d+,\d+,\d+,\d+,\d+,\d+\)\.$/i)
    const target = pasvTarget(reply)
    assert.equal(target.host, "127.0.0.1")
    assert.ok(target.port >= range[0] && target.port <= range[1], `${target.port} not in ${range}`)
    assert.equal(await retrVia(client, target.host, target.port, "a.txt"), "alpha")
  })
})

Deno.test("a one-port passive range serves many transfers in a row, from any session", async () => {
  const range = passiveRange(1)
  const server = await startServer({ passivePorts: range })
  const clients = [await loggedIn(server), await loggedIn(server)]
  try {
    await Deno.writeTextFile(`${server.root}/a.txt`, "alpha")
    // Alternating sessions: each one's transfer must have given the port back for the other.
    for (let i = 0; i < 8; i++) {
      const client = clients[i % 2]
      const target = pasvTarget(await client.command("PASV"))
      assert.equal(target.port, range[0])
      assert.equal(await retrVia(client, target.host, target.port, "a.txt"), "alpha")
    }
    // An ABOR of a pending PASV gives the port back too.
    pasvTarget(await clients[0].command("PASV"))
    assert.equal((await clients[0].command("ABOR")).code, 225)
    const target = pasvTarget(await clients[1].command("PASV"))
    assert.equal(target.port, range[0])
    assert.equal(await retrVia(clients[1], target.host, target.port, "a.txt"), "alpha")
    assert.ok(!server.logs.some((l) => l.includes("free passive port")), server.logs.join("\n"))
  } finally {
    for (const client of clients) client.close()
    await server.close()
  }
})

Deno.test("a session's passive lease is given back when the session ends", async () => {
  const range = passiveRange(1)
  const server = await startServer({ passivePorts: range })
  const first = await loggedIn(server)
  const second = await loggedIn(server)
  try {
    assert.equal(pasvTarget(await first.command("PASV")).port, range[0])
    assert.equal((await first.command("QUIT")).code, 221)
    assert.ok(await first.closedByServer())
    assert.equal(pasvTarget(await second.command("PASV")).port, range[0])
  } finally {
    first.close()
    second.close()
    await server.close()
  }
})

Deno.test("a second PASV gives back the first lease", async () => {
  const range = passiveRange(1)
  await withLoggedIn({ passivePorts: range }, async (server, client) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "alpha")
    assert.equal(pasvTarget(await client.command("PASV")).port, range[0])
    assert.equal(pasvTarget(await client.command("PASV")).port, range[0])
    assert.equal(epsvPort(await client.command("EPSV")), range[0])
    const target = pasvTarget(await client.command("PASV"))
    assert.equal(target.port, range[0])
    assert.equal(await retrVia(client, target.host, target.port, "a.txt"), "alpha")
    assert.ok(!server.logs.some((l) => l.includes("free passive port")), server.logs.join("\n"))
  })
})

Deno.test("PASV falls back to an OS-chosen port with a warning when the range is used up", async () => {
  const range = passiveRange(1)
  const server = await startServer({ passivePorts: range })
  const first = await loggedIn(server)
  const second = await loggedIn(server)
  try {
    await Deno.writeTextFile(`${server.root}/a.txt`, "alpha")
    const held = pasvTarget(await first.command("PASV"))
    assert.equal(held.port, range[0])
    const fallback = pasvTarget(await second.command("PASV"))
    assert.notEqual(fallback.port, range[0])
    const warning = server.logs.find((l) => l.includes(`Can't find a free passive port in ${range[0]}-${range[1]}`))
    assert.ok(warning !== undefined, server.logs.join("\n"))
    assert.match(warning, /^\[W /)
    assert.equal(await retrVia(second, fallback.host, fallback.port, "a.txt"), "alpha")
    assert.equal(await retrVia(first, held.host, held.port, "a.txt"), "alpha")
  } finally {
    first.close()
    second.close()
    await server.close()
  }
})

Deno.test("PASV announces masqueradeAddress instead of the local address", async () => {
  await withLoggedIn({ masqueradeAddress: "203.0.113.7" }, async (server, client) => {
    const reply = await client.command("PASV")
    assert.equal(pasvTarget(reply).host, "203.0.113.7")
    // The lease really listens on the local address: the client can still connect there.
    await Deno.writeTextFile(`${server.root}/a.txt`, "alpha")
    assert.equal(await retrVia(client, "127.0.0.1", pasvTarget(reply).port, "a.txt"), "alpha")
  })
})

Deno.test("PASV announces the masqueradeAddressMap entry of the local address before masqueradeAddress", async () => {
  const mapped = await startServer({
    masqueradeAddress: "203.0.113.7",
    masqueradeAddressMap: { "127.0.0.1": "198.51.100.9" },
  })
  const unmapped = await startServer({
    masqueradeAddress: "203.0.113.7",
    masqueradeAddressMap: { "10.0.0.1": "198.51.100.9" },
  })
  const a = await loggedIn(mapped)
  const b = await loggedIn(unmapped)
  try {
    assert.equal(pasvTarget(await a.command("PASV")).host, "198.51.100.9")
    assert.equal(pasvTarget(await b.command("PASV")).host, "203.0.113.7")
  } finally {
    a.close()
    b.close()
    await mapped.close()
    await unmapped.close()
  }
})

Deno.test("EPSV and EPSV 1 reply 229 with a port from passivePorts and serve a transfer", async () => {
  const range = passiveRange(5)
  await withLoggedIn({ passivePorts: range }, async (server, client) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "alpha")
    for (const command of ["EPSV", "EPSV 1"]) {
      const reply = await client.command(command)
      assert.match(reply.text, /\(\|\|\|\d+\|\)/)
      const port = epsvPort(reply)
      assert.ok(port >= range[0] && port <= range[1], `${port} not in ${range}`)
      assert.equal(await retrVia(client, "127.0.0.1", port, "a.txt"), "alpha")
    }
  })
})

Deno.test("EPSV 2 on an IPv4 connection replies 522 naming protocol 1", async () => {
  await withLoggedIn({}, async (_server, client) => {
    const reply = await client.command("EPSV 2")
    assert.equal(reply.code, 522)
    assert.match(reply.text, /\(1\)/)
    assert.equal((await client.command("EPSV 3")).code, 501)
  })
})

Deno.test("after EPSV ALL, PASV, PORT and EPRT reply 501 and EPSV still works", async () => {
  const server = await startServer()
  const client = await loggedIn(server)
  const target = activeTarget()
  try {
    await Deno.writeTextFile(`${server.root}/a.txt`, "alpha")
    assert.equal((await client.command("EPSV ALL")).code, 200)
    assert.equal((await client.command("PASV")).code, 501)
    assert.equal((await client.command(`PORT ${portArg("127.0.0.1", target.port)}`)).code, 501)
    assert.equal((await client.command(`EPRT |1|127.0.0.1|${target.port}|`)).code, 501)
    assert.equal(await target.next(200), null, "the server connected after a refused PORT/EPRT")
    const port = epsvPort(await client.command("EPSV"))
    assert.equal(await retrVia(client, "127.0.0.1", port, "a.txt"), "alpha")
  } finally {
    client.close()
    await target.close()
    await server.close()
  }
})

Deno.test("curl in active mode downloads and uploads over EPRT and over PORT", async () => {
  const server = await startServer({ debug: true })
  try {
    await Deno.writeTextFile(`${server.root}/a.txt`, "active")
    const base = `ftp://user:pass@127.0.0.1:${server.port}`
    for (const extra of [[], ["--disable-eprt"]]) {
      const down = await curl("-P", "127.0.0.1", ...extra, `${base}/a.txt`)
      assert.equal(down.code, 0, down.stderr)
      assert.equal(decoder.decode(down.stdout), "active")
      const up = await curl("-P", "127.0.0.1", ...extra, "-T", `${server.root}/a.txt`, `${base}/up${extra.length}.txt`)
      assert.equal(up.code, 0, up.stderr)
    }
    assert.equal(await Deno.readTextFile(`${server.root}/up0.txt`), "active")
    assert.equal(await Deno.readTextFile(`${server.root}/up1.txt`), "active")
    assert.ok(server.logs.some((l) => /<- EPRT \|1\|127\.0\.0\.1\|\d+\|/.test(l)), server.logs.join("\n"))
    assert.ok(server.logs.some((l) => /<- PORT 127,0,0,1,\d+,\d+/.test(l)), server.logs.join("\n"))
  } finally {
    await server.close()
  }
})

Deno.test("PORT makes the server connect to the client and RETR arrives there", async () => {
  const server = await startServer()
  const client = await loggedIn(server)
  const target = activeTarget()
  try {
    await Deno.writeTextFile(`${server.root}/a.txt`, "active alpha")
    assert.equal((await client.command(`PORT ${portArg("127.0.0.1", target.port)}`)).code, 200)
    const conn = await target.next(5000)
    assert.ok(conn !== null, "the server did not connect")
    await client.send("RETR a.txt")
    assert.equal((await client.readReply()).code, 150)
    assert.equal(decoder.decode(await readAll(conn)), "active alpha")
    assert.equal((await client.readReply()).code, 226)
  } finally {
    client.close()
    await target.close()
    await server.close()
  }
})

Deno.test("EPRT makes the server connect to the client and LIST arrives there", async () => {
  const server = await startServer()
  const client = await loggedIn(server)
  const target = activeTarget()
  try {
    await Deno.writeTextFile(`${server.root}/listed.txt`, "x")
    assert.equal((await client.command(`EPRT |1|127.0.0.1|${target.port}|`)).code, 200)
    const conn = await target.next(5000)
    assert.ok(conn !== null, "the server did not connect")
    await client.send("LIST")
    assert.equal((await client.readReply()).code, 150)
    assert.match(decoder.decode(await readAll(conn)), /listed\.txt\r\n$/)
    assert.equal((await client.readReply()).code, 226)
  } finally {
    client.close()
    await target.close()
    await server.close()
  }
})

Deno.test("PORT and EPRT to a foreign address reply 501 and connect nowhere", async () => {
  const server = await startServer()
  const client = await loggedIn(server)
  const target = activeTarget("127.0.0.2")
  try {
    assert.equal((await client.command(`PORT ${portArg("127.0.0.2", target.port)}`)).code, 501)
    assert.equal((await client.command(`EPRT |1|127.0.0.2|${target.port}|`)).code, 501)
    assert.equal(await target.next(300), null, "the server connected to a foreign address")
    // Nothing was prepared: a transfer still has no data connection.
    assert.equal((await client.command("LIST")).code, 425)
  } finally {
    client.close()
    await target.close()
    await server.close()
  }
})

Deno.test("PORT and EPRT to a foreign address are allowed with permitForeignAddresses", async () => {
  const server = await startServer({ permitForeignAddresses: true })
  const client = await loggedIn(server)
  const first = activeTarget("127.0.0.2")
  const second = activeTarget("127.0.0.2")
  try {
    await Deno.writeTextFile(`${server.root}/a.txt`, "fxp")
    assert.equal((await client.command(`PORT ${portArg("127.0.0.2", first.port)}`)).code, 200)
    const conn = await first.next(5000)
    assert.ok(conn !== null, "the server did not connect")
    await client.send("RETR a.txt")
    assert.equal((await client.readReply()).code, 150)
    assert.equal(decoder.decode(await readAll(conn)), "fxp")
    assert.equal((await client.readReply()).code, 226)
    assert.equal((await client.command(`EPRT |1|127.0.0.2|${second.port}|`)).code, 200)
    assert.ok((await second.next(5000)) !== null, "the server did not connect")
  } finally {
    client.close()
    await first.close()
    await second.close()
    await server.close()
  }
})

Deno.test("PORT and EPRT to a privileged port reply 501", async () => {
  await withLoggedIn({}, async (_server, client) => {
    assert.equal((await client.command(`PORT ${portArg("127.0.0.1", 21)}`)).code, 501)
    assert.equal((await client.command(`PORT ${portArg("127.0.0.1", 1023)}`)).code, 501)
    assert.equal((await client.command("EPRT |1|127.0.0.1|1023|")).code, 501)
    assert.equal((await client.command("NOOP")).code, 200)
  })
})

Deno.test("PORT to a privileged port is not refused with permitPrivilegedPorts", async () => {
  await withLoggedIn({ permitPrivilegedPorts: true }, async (_server, client) => {
    // Nothing listens there, so the connect may fail (425); the point is that it was tried.
    const reply = await client.command(`PORT ${portArg("127.0.0.1", 1023)}`)
    assert.notEqual(reply.code, 501, reply.lines.join("|"))
    assert.ok(reply.code === 200 || reply.code === 425, reply.lines.join("|"))
  })
})

/** A `node:net` connection from `localAddress`; resolves when it is closed by the other side. */
const connectFrom = (localAddress: string, port: number) => {
  let received = 0
  const socket = net.connect({ host: "127.0.0.1", port, localAddress })
  socket.on("data", (chunk: Uint8Array) => (received += chunk.length))
  socket.on("error", () => undefined)
  const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()))
  const connected = new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve())
    socket.once("error", reject)
  })
  return { socket, connected, closed, received: () => received }
}

Deno.test("a passive data connection from a foreign address is closed and the client's own is served", async () => {
  const server = await startServer()
  const client = await loggedIn(server)
  const port = epsvPort(await client.command("EPSV"))
  const thief = connectFrom("127.0.0.2", port)
  try {
    await Deno.writeTextFile(`${server.root}/secret.txt`, "secret")
    await thief.connected
    await client.send("RETR secret.txt")
    assert.equal((await client.readReply()).code, 150)
    assert.notEqual(await within(thief.closed, 5000), null, "the thief's connection was not closed")
    assert.equal(thief.received(), 0)
    await eventually(() => server.logs.some((l) => l.includes("foreign address 127.0.0.2")), 2000, "the log line")
    const data = await Deno.connect({ hostname: "127.0.0.1", port })
    assert.equal(decoder.decode(await readAll(data)), "secret")
    assert.equal((await client.readReply()).code, 226)
  } finally {
    thief.socket.destroy()
    await thief.closed
    client.close()
    await server.close()
  }
})

Deno.test("RETR, STOR and LIST without PASV or PORT reply 425 at once and STOR creates nothing", async () => {
  await withLoggedIn({}, async (server, client) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "alpha")
    const started = Date.now()
    assert.equal((await client.command("RETR a.txt")).code, 425)
    assert.equal((await client.command("STOR new.txt")).code, 425)
    assert.equal((await client.command("LIST")).code, 425)
    assert.ok(Date.now() - started < 1000, `took ${Date.now() - started} ms`)
    await assert.rejects(Deno.stat(`${server.root}/new.txt`), Deno.errors.NotFound)
  })
})

const ipv6Available = (() => {
  try {
    Deno.listen({ hostname: "::1", port: 0 }).close()
    return true
  } catch {
    return false
  }
})()

Deno.test({
  name: "an IPv6 server serves curl over EPSV and over EPRT",
  ignore: !ipv6Available,
  fn: async () => {
    const server = await startServer({ host: "::1", debug: true })
    try {
      await Deno.writeTextFile(`${server.root}/six.txt`, "over ipv6")
      const url = `ftp://user:pass@[::1]:${server.port}/six.txt`
      const passive = await curl("-g", url)
      assert.equal(passive.code, 0, passive.stderr)
      assert.equal(decoder.decode(passive.stdout), "over ipv6")
      const active = await curl("-g", "-P", "-", url)
      assert.equal(active.code, 0, active.stderr)
      assert.equal(decoder.decode(active.stdout), "over ipv6")
      assert.ok(server.logs.some((l) => l.includes("<- EPSV")), server.logs.join("\n"))
      assert.ok(server.logs.some((l) => /<- EPRT \|2\|::1\|\d+\|/.test(l)), server.logs.join("\n"))
      const upload = await curl("-g", "-T", `${server.root}/six.txt`, `ftp://user:pass@[::1]:${server.port}/up.txt`)
      assert.equal(upload.code, 0, upload.stderr)
      assert.equal(await Deno.readTextFile(`${server.root}/up.txt`), "over ipv6")
    } finally {
      await server.close()
    }
  },
})

Deno.test({
  name: "an IPv6 server serves basic-ftp uploads and downloads",
  ignore: !ipv6Available,
  fn: async () => {
    const server = await startServer({ host: "::1" })
    const client = new Client(10_000)
    try {
      await client.access({ host: "::1", port: server.port, user: "user", password: "pass" })
      await client.uploadFrom(Readable.from([new TextEncoder().encode("six")]), "six.txt")
      assert.equal(await Deno.readTextFile(`${server.root}/six.txt`), "six")
      const chunks: Uint8Array[] = []
      await client.downloadTo(new Writable({ write: (c, _e, cb) => (chunks.push(c), cb()) }), "six.txt")
      assert.equal(decoder.decode(Buffer.concat(chunks)), "six")
    } finally {
      client.close()
      await server.close()
    }
  },
})

Deno.test({
  name: "on IPv6, EPSV replies 229, EPRT |2|::1| connects, and PASV and PORT are refused",
  ignore: !ipv6Available,
  fn: async () => {
    const server = await startServer({ host: "::1" })
    const client = await loggedIn(server, { hostname: "::1" })
    const target = activeTarget("::1")
    try {
      await Deno.writeTextFile(`${server.root}/a.txt`, "alpha")
      assert.equal((await client.command("EPSV 1")).code, 522)
      const port = epsvPort(await client.command("EPSV 2"))
      assert.equal(await retrVia(client, "::1", port, "a.txt"), "alpha")
      const pasv = await client.command("PASV")
      assert.ok(pasv.code >= 400, pasv.lines.join("|"))
      const portReply = await client.command(`PORT ${portArg("127.0.0.1", target.port)}`)
      assert.ok(portReply.code >= 400, portReply.lines.join("|"))
      assert.equal((await client.command(`EPRT |1|127.0.0.1|${target.port}|`)).code, 522)
      assert.equal((await client.command(`EPRT |2|::1|${target.port}|`)).code, 200)
      const conn = await target.next(5000)
      assert.ok(conn !== null, "the server did not connect")
      await client.send("RETR a.txt")
      assert.equal((await client.readReply()).code, 150)
      assert.equal(decoder.decode(await readAll(conn)), "alpha")
      assert.equal((await client.readReply()).code, 226)
    } finally {
      client.close()
      await target.close()
      await server.close()
    }
  },
})

const bindv6only = (() => {
  try {
    return Deno.readTextFileSync("/proc/sys/net/ipv6/bindv6only").trim() === "1"
  } catch {
    return true
  }
})()

Deno.test({
  name: "a dual-stack server on :: serves IPv4 clients with PASV and IPv6 clients with EPSV",
  ignore: !ipv6Available || bindv6only,
  fn: async () => {
    const server = await startServer({ host: "::" })
    const four = await loggedIn(server, { hostname: "127.0.0.1" })
    const six = await loggedIn(server, { hostname: "::1" })
    try {
      await Deno.writeTextFile(`${server.root}/a.txt`, "alpha")
      const target = pasvTarget(await four.command("PASV"))
      assert.equal(target.host, "127.0.0.1")
      assert.equal(await retrVia(four, target.host, target.port, "a.txt"), "alpha")
      assert.match((await four.command("STAT")).lines.join("\n"), /Connected to: 127\.0\.0\.1:/)
      const port = epsvPort(await six.command("EPSV"))
      assert.equal(await retrVia(six, "::1", port, "a.txt"), "alpha")
    } finally {
      four.close()
      six.close()
      await server.close()
    }
  },
})
