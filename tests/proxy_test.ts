/**
 * The PROXY protocol (versions 1 and 2): the parser against valid, bad and random headers, and a
 * server behind a balancer, played by a raw client that sends the balancer's header from loopback:
 * the header's address is the client's for logs, hooks, bans, limits and the data-connection checks.
 * tests/haproxy_test.ts does the same through a real HAProxy.
 */
import assert from "node:assert/strict"
import { Effect } from "effect"
import { Cidr, parseProxyHeader, ProxyHeaderError } from "../src/net/proxy.ts"
import {
  closeQuietly,
  eventually,
  RawClient,
  readAll,
  sleep,
  startServer,
  type TestServer,
  type TestServerOptions,
  timed,
} from "./helpers.ts"

const encoder = new TextEncoder()

const V2_SIGNATURE = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]

/** A version 2 PROXY header for TCP over IPv4 (or LOCAL with `command` 0), with `tlv` bytes after the addresses. */
const v2 = (source: string, sourcePort: number, destination: string, destinationPort: number, command = 1, tlv = 0) => {
  const body = new Uint8Array(12 + tlv)
  body.set(source.split(".").map(Number), 0)
  body.set(destination.split(".").map(Number), 4)
  new DataView(body.buffer).setUint16(8, sourcePort)
  new DataView(body.buffer).setUint16(10, destinationPort)
  return Uint8Array.of(...V2_SIGNATURE, 0x20 | command, 0x11, body.length >> 8, body.length & 0xff, ...body)
}

const parse = (bytes: Uint8Array | string) =>
  parseProxyHeader(typeof bytes === "string" ? encoder.encode(bytes) : bytes)
const refused = (bytes: Uint8Array | string) => assert.throws(() => parse(bytes), ProxyHeaderError, String(bytes))

Deno.test("PROXY v1: TCP4, TCP6 and UNKNOWN headers are read, and what follows is left alone", () => {
  const tcp4 = parse("PROXY TCP4 192.0.2.7 198.51.100.1 50000 21\r\nUSER bob\r\n")!
  assert.deepEqual(tcp4.header, {
    version: 1,
    source: { address: "192.0.2.7", port: 50000 },
    destination: { address: "198.51.100.1", port: 21 },
  })
  assert.equal(tcp4.length, "PROXY TCP4 192.0.2.7 198.51.100.1 50000 21\r\n".length)
  const tcp6 = parse("PROXY TCP6 2001:db8::7 2001:DB8::1 50000 21\r\n")!
  assert.deepEqual(tcp6.header.source, { address: "2001:db8::7", port: 50000 })
  assert.deepEqual(tcp6.header.destination, { address: "2001:db8::1", port: 21 })
  assert.deepEqual(parse("PROXY UNKNOWN\r\n")!.header, { version: 1, source: undefined, destination: undefined })
  assert.equal(parse("PROXY TCP4 192.0.2.7 198.51.100.1 500"), undefined, "incomplete: more bytes needed")
  assert.equal(parse("PRO"), undefined)
})

Deno.test("PROXY v1: bad headers are refused", () => {
  for (
    const bad of [
      "GET / HTTP/1.1\r\n",
      "USER bob\r\n",
      "PROXY TCP5 192.0.2.7 198.51.100.1 50000 21\r\n",
      "PROXY TCP4 192.0.2.7 198.51.100.1 50000\r\n",
      "PROXY TCP4 192.0.2.7 198.51.100.1 50000 21 extra\r\n",
      "PROXY TCP4 999.0.2.7 198.51.100.1 50000 21\r\n",
      "PROXY TCP4 192.0.2.07 198.51.100.1 50000 21\r\n",
      "PROXY TCP4 192.0.2.7 198.51.100.1 70000 21\r\n",
      "PROXY TCP4 192.0.2.7 198.51.100.1 -1 21\r\n",
      "PROXY TCP6 192.0.2.7 198.51.100.1 50000 21\r\n",
      "PROXY TCP4 192.0.2.7 198.51.100.1 50000 21\n",
      "PROXY TCP4 " + "1".repeat(120) + "\r\n",
    ]
  ) refused(bad)
  refused("PROXY " + "x".repeat(110))
})

Deno.test("PROXY v2: TCP over IPv4 and IPv6, LOCAL, and TLVs after the addresses", () => {
  const header = v2("192.0.2.7", 50000, "198.51.100.1", 21)
  const parsed = parse(Uint8Array.of(...header, ...encoder.encode("USER bob\r\n")))!
  assert.deepEqual(parsed.header, {
    version: 2,
    source: { address: "192.0.2.7", port: 50000 },
    destination: { address: "198.51.100.1", port: 21 },
  })
  assert.equal(parsed.length, header.length)
  assert.equal(parse(v2("192.0.2.7", 1, "198.51.100.1", 2, 1, 40))!.length, 16 + 12 + 40, "TLVs are skipped")
  assert.deepEqual(parse(v2("0.0.0.0", 0, "0.0.0.0", 0, 0))!.header.source, undefined, "LOCAL: the balancer itself")
  const body = new Uint8Array(36)
  body[15] = 7
  body[31] = 1
  new DataView(body.buffer).setUint16(32, 50000)
  const ipv6 = Uint8Array.of(...V2_SIGNATURE, 0x21, 0x21, 0, 36, ...body)
  assert.deepEqual(parse(ipv6)!.header.source, { address: "::7", port: 50000 })
  assert.equal(parse(header.subarray(0, 20)), undefined, "incomplete: more bytes needed")
})

Deno.test("PROXY v2: a bad version, command or family, or a header too long, is refused", () => {
  const good = v2("192.0.2.7", 50000, "198.51.100.1", 21)
  const changed = (index: number, value: number) => {
    const copy = good.slice()
    copy[index] = value
    return copy
  }
  refused(changed(12, 0x11)) // version 1 in a v2 header
  refused(changed(12, 0x22)) // command 2
  refused(changed(13, 0x31)) // AF_UNIX
  refused(Uint8Array.of(...V2_SIGNATURE, 0x21, 0x11, 0xff, 0xff))
  refused(Uint8Array.of(...V2_SIGNATURE, 0x21, 0x11, 0, 4, 1, 2, 3, 4)) // addresses cut short
  refused(changed(3, 0x0b)) // a broken signature
})

Deno.test("PROXY headers: random and mutated bytes never crash the parser (5,000 cases)", () => {
  const seeds = [
    v2("192.0.2.7", 50000, "198.51.100.1", 21),
    encoder.encode("PROXY TCP4 192.0.2.7 198.51.100.1 50000 21\r\n"),
    encoder.encode("PROXY TCP6 2001:db8::7 2001:db8::1 50000 21\r\n"),
  ]
  for (let i = 0; i < 5000; i++) {
    const seed = seeds[i % seeds.length]
    const bytes = i % 4 === 0 ? crypto.getRandomValues(new Uint8Array(1 + (i % 200))) : seed.slice()
    if (i % 4 !== 0) {
      for (let k = 0; k < 1 + (i % 5); k++) bytes[(i * 31 + k * 17) % bytes.length] = (i * 7 + k) & 0xff
    }
    try {
      const parsed = parseProxyHeader(bytes)
      if (parsed !== undefined) assert.ok(parsed.length <= bytes.length)
    } catch (error) {
      assert.ok(error instanceof ProxyHeaderError, `case ${i}: ${error}`)
    }
  }
})

Deno.test("Cidr: ranges and single addresses, IPv4 and IPv6; bad ones throw", () => {
  assert.ok(Cidr.parse("192.0.2.0/24").contains("192.0.2.255"))
  assert.ok(!Cidr.parse("192.0.2.0/24").contains("192.0.3.0"))
  assert.ok(Cidr.parse("10.1.2.3").contains("10.1.2.3"))
  assert.ok(!Cidr.parse("10.1.2.3").contains("10.1.2.4"))
  assert.ok(Cidr.parse("0.0.0.0/0").contains("203.0.113.9"))
  assert.ok(Cidr.parse("2001:db8::/32").contains("2001:db8:ffff::1"))
  assert.ok(!Cidr.parse("2001:db8::/32").contains("2001:db9::1"))
  assert.ok(!Cidr.parse("2001:db8::/32").contains("192.0.2.1"), "families never match")
  assert.ok(Cidr.parse("::1").contains("::1"))
  for (const bad of ["", "192.0.2.0/33", "192.0.2/24", "2001:db8::/129", "example.com", "10.0.0.0/x"]) {
    assert.throws(() => Cidr.parse(bad), RangeError, bad)
  }
})

// --- a server behind a balancer ------------------------------------------------------------------

/** A raw client that connects from loopback (a trusted balancer) and first sends `header`. */
const proxied = async (server: TestServer, header: string | Uint8Array): Promise<RawClient> => {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port })
  await conn.write(typeof header === "string" ? encoder.encode(header) : header)
  return await RawClient.over(conn)
}

const from = (address: string, port = 50000) => `PROXY TCP4 ${address} 127.0.0.1 ${port} 21\r\n`

const withProxied = async (options: TestServerOptions, f: (server: TestServer) => Promise<void>) => {
  const server = await startServer({ proxyProtocol: true, ...options })
  try {
    await f(server)
  } finally {
    await server.close()
  }
}

Deno.test("behind a balancer, the header's address is the client's in logs and hooks", async () => {
  const seen: string[] = []
  await withProxied({
    hooks: { onLogin: (session, user) => Effect.sync(() => void seen.push(`${user}@${session.remoteAddress}`)) },
  }, async (server) => {
    const raw = await proxied(server, from("192.0.2.7", 41000))
    try {
      await raw.login()
      assert.equal((await raw.command("STAT")).lines[1], " Connected to: 192.0.2.7:41000")
    } finally {
      raw.close()
    }
    const v2raw = await proxied(server, v2("198.51.100.9", 42000, "127.0.0.1", 21))
    try {
      await v2raw.login()
    } finally {
      v2raw.close()
    }
    await eventually(() => seen.length === 2)
    assert.deepEqual(seen, ["user@192.0.2.7", "user@198.51.100.9"])
    assert.ok(server.logs.some((line) => line.includes("192.0.2.7:41000-[user] USER 'user' logged in.")))
  })
})

Deno.test("behind a balancer, per-address limits and bans count the header's address", async () => {
  await withProxied({ maxConsPerIp: 1, banAfterFailures: 1 }, async (server) => {
    const first = await proxied(server, from("192.0.2.7"))
    try {
      const second = await Deno.connect({ hostname: "127.0.0.1", port: server.port })
      await second.write(encoder.encode(from("192.0.2.7", 50001)))
      const refusal = new TextDecoder().decode(await readAll(second))
      assert.match(refusal, /^421 Too many connections from the same IP address/)
      closeQuietly(second)
      const other = await proxied(server, from("192.0.2.8"))
      assert.equal(other.greeting.code, 220, "another client behind the same balancer is admitted")
      await other.command("USER user")
      assert.equal((await other.command("PASS wrong")).code, 421, "the failure bans 192.0.2.8")
      other.close()
      const banned = await Deno.connect({ hostname: "127.0.0.1", port: server.port })
      await banned.write(encoder.encode(from("192.0.2.8")))
      assert.match(new TextDecoder().decode(await readAll(banned)), /^421 Too many failed logins/)
      closeQuietly(banned)
      assert.equal((await first.command("NOOP")).code, 200, "192.0.2.7 is not banned")
    } finally {
      first.close()
    }
  })
})

Deno.test("behind a balancer, a passive data connection must carry the control client's address", async () => {
  await withProxied({}, async (server) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "hello")
    const raw = await proxied(server, from("192.0.2.7"))
    try {
      await raw.login()
      await raw.command("TYPE I")
      const port = await raw.epsvPort()
      assert.equal((await raw.command("RETR a.txt")).code, 150)
      // Another client behind the balancer tries the port first: refused, and the wait goes on.
      const thief = await Deno.connect({ hostname: "127.0.0.1", port })
      await thief.write(encoder.encode(from("192.0.2.66")))
      assert.equal((await readAll(thief)).length, 0)
      closeQuietly(thief)
      const data = await Deno.connect({ hostname: "127.0.0.1", port })
      await data.write(encoder.encode(from("192.0.2.7", 50002)))
      assert.equal(new TextDecoder().decode(await readAll(data)), "hello")
      closeQuietly(data)
      assert.equal((await raw.readReply()).code, 226)
      assert.ok(server.logs.some((line) => line.includes("Rejected data connection from foreign address 192.0.2.66")))
      // PORT's bounce check compares with the header's address, not the balancer's.
      const bounce = await raw.command("PORT 127,0,0,1,200,0")
      assert.equal(bounce.code, 501)
    } finally {
      raw.close()
    }
  })
})

Deno.test("behind a balancer, PASV announces the address the client reached", async () => {
  await withProxied({}, async (server) => {
    const raw = await proxied(server, "PROXY TCP4 192.0.2.7 203.0.113.5 50000 21\r\n")
    try {
      await raw.login()
      assert.match((await raw.command("PASV")).text, /\(203,0,113,5,\d+,\d+\)/)
    } finally {
      raw.close()
    }
  })
})

Deno.test("with the PROXY protocol on, bad, late, cut and untrusted connections are closed, and others served", async () => {
  await withProxied({ loginTimeout: 1 }, async (server) => {
    const closedAt = async (bytes: string | Uint8Array | undefined, endAfterSending = false) => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port })
      const started = performance.now()
      if (bytes !== undefined) await conn.write(typeof bytes === "string" ? encoder.encode(bytes) : bytes)
      if (endAfterSending) await conn.closeWrite()
      // Closed with bytes still unread, a socket may end with a reset rather than a FIN: closed either way.
      const received = await timed(readAll(conn), 5000, "the server to close").catch((error) => {
        if (error instanceof Deno.errors.ConnectionReset) return new Uint8Array(0)
        throw error
      })
      closeQuietly(conn)
      return { received: received.length, ms: performance.now() - started }
    }
    assert.equal((await closedAt("USER bob\r\n")).received, 0, "no header: closed, no greeting")
    assert.equal((await closedAt("PROXY TCP4 1.2.3.4 x 1 2\r\n")).received, 0, "malformed")
    assert.equal((await closedAt("PROXY TCP4 192.0.2.7", true)).received, 0, "cut short")
    assert.equal((await closedAt(Uint8Array.of(...V2_SIGNATURE, 0x21, 0x11, 0xff, 0xff))).received, 0, "oversized")
    const late = await closedAt(undefined)
    assert.equal(late.received, 0)
    assert.ok(late.ms >= 900 && late.ms < 3000, `silent: closed at the login timeout (${late.ms.toFixed(0)} ms)`)
    const raw = await proxied(server, from("192.0.2.7"))
    try {
      await raw.login()
    } finally {
      raw.close()
    }
    assert.ok(server.logs.some((line) => line.includes("closed: the connection did not start with a PROXY header")))
  })
  await withProxied({ proxyTrusted: ["10.0.0.0/8"] }, async (server) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port })
    await conn.write(encoder.encode(from("192.0.2.7")))
    // The header is never read: the close may come as a reset.
    const received = await timed(readAll(conn), 5000, "the server to close").catch((error) => {
      if (error instanceof Deno.errors.ConnectionReset) return new Uint8Array(0)
      throw error
    })
    assert.equal(received.length, 0, "an untrusted source")
    closeQuietly(conn)
    await sleep(50)
    assert.ok(server.logs.some((line) => line.includes("127.0.0.1 refused: not a trusted PROXY protocol source")))
  })
})
