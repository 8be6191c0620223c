/**
 * The control channel under abuse: binary junk, Telnet commands, overlong lines, pipelining, idle
 * clients and clients that vanish. The session (and the server) must keep answering, with every
 * reply line well formed.
 */
import assert from "node:assert/strict"
import { RawClient, type Reply, startServer, type TestServer, type TestServerOptions } from "./helpers.ts"

const REPLY_LINE = /^\d{3}[ -]/

/** Read one reply and check that every line of it is a well-formed reply line. */
const read = async (raw: RawClient, timeoutMs?: number): Promise<Reply> => {
  const reply = await raw.readReply(timeoutMs)
  for (const line of reply.lines) assert.match(line, REPLY_LINE)
  return reply
}

/** Send `data` as is (no CRLF added) and read `count` replies. */
const exchange = async (raw: RawClient, data: string | Uint8Array, count = 1): Promise<Reply[]> => {
  await raw.send(typeof data === "string" ? bytes(data) : data)
  const replies: Reply[] = []
  for (let i = 0; i < count; i++) replies.push(await read(raw))
  return replies
}

/** Latin-1 string → bytes, so that "\xff" is the byte 0xFF. */
const bytes = (text: string): Uint8Array => Uint8Array.from(text, (c) => c.charCodeAt(0))

const withServer = async (f: (server: TestServer) => Promise<void>, options: TestServerOptions = {}) => {
  const server = await startServer(options)
  try {
    await f(server)
  } finally {
    await server.close()
  }
}

/** A client that is closed after `f`. */
const withClient = async (server: TestServer, f: (raw: RawClient) => Promise<void>, login = false) => {
  const raw = await RawClient.connect(server.port)
  try {
    assert.match(raw.greeting.lines[0], REPLY_LINE)
    if (login) await raw.login()
    await f(raw)
  } finally {
    raw.close()
  }
}

/** Another client logs in and gets a NOOP answered: the server still serves. */
const serverStillServes = (server: TestServer) =>
  withClient(server, async (other) => {
    await other.login()
    assert.equal((await exchange(other, "NOOP\r\n"))[0].code, 200)
  })

/** Deterministic pseudo-random bytes (mulberry32), so a failure can be reproduced. */
const junk = (length: number, seed: number): Uint8Array => {
  const out = new Uint8Array(length)
  let state = seed
  for (let i = 0; i < length; i++) {
    state = (state + 0x6d2b79f5) | 0
    let t = Math.imul(state ^ (state >>> 15), 1 | state)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    out[i] = (t ^ (t >>> 14)) & 0xff
  }
  return out
}

// --- junk ----------------------------------------------------------------------------------------

Deno.test("random binary junk gets only 500-series replies and the session and server keep working", () =>
  withServer(async (server) => {
    await withClient(server, async (raw) => {
      for (const seed of [1, 2, 3]) {
        const data = junk(8192, seed)
        assert.ok(data.includes(0) && data.includes(0xff) && data.includes(10), "junk has NUL, IAC and LF")
        await raw.send(data)
        await raw.send("\r\nNOOP")
        let reply = await read(raw)
        let refused = 0
        while (reply.code !== 200) {
          assert.ok(reply.code >= 500 && reply.code < 600, `junk got ${reply.lines.join("|")}`)
          refused++
          reply = await read(raw)
        }
        assert.ok(refused > 0, "junk lines must be refused")
      }
      await raw.login()
      assert.equal((await exchange(raw, "PWD\r\n"))[0].code, 257)
    })
    await serverStillServes(server)
  }))

Deno.test("NUL bytes, control characters and invalid UTF-8 as a command get 500 and the next command works", () =>
  withServer((server) =>
    withClient(server, async (raw) => {
      for (
        const line of ["\x00\x00\x00", "\x00NOOP", "\x1b[2J\x07", "\xc3\x28\xa0\xa1", "\xed\xa0\x80 x", "\x80\x81"]
      ) {
        const [reply] = await exchange(raw, `${line}\r\n`)
        assert.equal(reply.code, 500, JSON.stringify(line))
      }
      assert.equal((await exchange(raw, "NOOP\r\n"))[0].code, 200)
    }, true)
  ))

Deno.test("an empty line gets a 500 reply", () =>
  withServer((server) =>
    withClient(server, async (raw) => {
      assert.deepEqual((await exchange(raw, "\r\n\nNOOP\r\n", 3)).map((r) => r.code), [500, 500, 200])
    })
  ))

// --- Telnet --------------------------------------------------------------------------------------

Deno.test("Telnet option negotiation (IAC WILL/DO/WONT/DONT) is stripped from command lines", () =>
  withServer((server) =>
    withClient(server, async (raw) => {
      assert.equal((await exchange(raw, "\xff\xfb\x01\xff\xfd\x03NOOP\r\n"))[0].code, 200)
      assert.equal((await exchange(raw, "SY\xff\xfc\x18ST\xff\xfe\x01\r\n"))[0].code, 215)
    })
  ))

Deno.test("Telnet commands inside a line (IAC NOP, IAC AYT) are stripped", () =>
  withServer((server) =>
    withClient(server, async (raw) => {
      assert.equal((await exchange(raw, "NO\xff\xf1OP\r\n"))[0].code, 200)
      assert.equal((await exchange(raw, "\xff\xf6SYST\r\n"))[0].code, 215)
    })
  ))

Deno.test("IAC IP IAC DM ABOR reads as ABOR", () =>
  withServer((server) =>
    withClient(server, async (raw) => {
      const [reply] = await exchange(raw, "\xff\xf4\xff\xf2ABOR\r\n")
      assert.equal(reply.code, 225)
      assert.equal(reply.text, "No transfer to abort.")
    }, true)
  ))

Deno.test("IAC IP IAC ABOR (the Data Mark taken out of band) still reads as ABOR", () =>
  withServer((server) =>
    withClient(server, async (raw) => {
      assert.equal((await exchange(raw, "\xff\xf4\xffABOR\r\n"))[0].code, 225)
    }, true)
  ))

Deno.test("a Telnet command split across writes is still stripped", () =>
  withServer((server) =>
    withClient(server, async (raw) => {
      await raw.send(bytes("NO\xff"))
      await new Promise((resolve) => setTimeout(resolve, 20))
      await raw.send(bytes("\xfb"))
      await new Promise((resolve) => setTimeout(resolve, 20))
      assert.equal((await exchange(raw, "\x01OP\r\n"))[0].code, 200)
    })
  ))

// The urgent byte of a Telnet Synch leaves the stream, and the read that follows it stops short:
// the server then sits on the rest of the line until the client sends more. Deno can neither set
// SO_OOBINLINE nor send urgent data, so python3 plays the client (BSD ftp's abort sequence).
Deno.test({
  name: "ABOR after a Telnet Synch sent as urgent data (IAC IP, IAC DM with MSG_OOB) is answered",
  fn: () =>
    withServer(async (server) => {
      const script = [
        "import socket, sys",
        `s = socket.create_connection(("127.0.0.1", ${server.port}))`,
        "s.settimeout(3)",
        "f = s.makefile('rb')",
        "f.readline()",
        "s.sendall(b'USER user\\r\\nPASS pass\\r\\n'); f.readline(); f.readline()",
        "s.sendall(b'\\xff\\xf4'); s.sendall(b'\\xff\\xf2', socket.MSG_OOB); s.sendall(b'ABOR\\r\\n')",
        "try: sys.stdout.write(f.readline().decode())",
        "except Exception as e: sys.stdout.write('no reply: %s' % e)",
      ].join("\n")
      const out = await new Deno.Command("python3", { args: ["-c", script], stdout: "piped" }).output()
      assert.equal(new TextDecoder().decode(out.stdout), "225 No transfer to abort.\r\n")
    }),
})

// --- overlong lines ------------------------------------------------------------------------------

Deno.test("a line over 2048 bytes gets exactly one 500 Command too long. and the next command works", () =>
  withServer((server) =>
    withClient(server, async (raw) => {
      const replies = await exchange(raw, `NOOP ${"x".repeat(3000)}\r\nNOOP\r\n`, 2)
      assert.deepEqual(replies[0].lines, ["500 Command too long."])
      assert.equal(replies[1].code, 200)
    })
  ))

Deno.test("a 2048-byte line is read as a command, a 2049-byte line is too long", () =>
  withServer((server) =>
    withClient(server, async (raw) => {
      const [exact, over] = await exchange(raw, `${"X".repeat(2048)}\r\n${"X".repeat(2049)}\r\n`, 2)
      assert.equal(exact.code, 500)
      assert.match(exact.text, /^Command "X+" not understood\.$/)
      assert.equal(over.text, "Command too long.")
    })
  ))

Deno.test("a 1 MB line without a line end is refused with 500 before it ends, and the server keeps serving", () =>
  withServer((server) =>
    withClient(server, async (raw) => {
      await raw.send(new Uint8Array(1024 * 1024).fill(0x41))
      // No line end has been sent: the refusal must not wait for one.
      assert.deepEqual((await read(raw)).lines, ["500 Command too long."])
      await serverStillServes(server)
      await raw.send(new Uint8Array(1024 * 1024).fill(0x42))
      assert.deepEqual((await exchange(raw, "\r\nNOOP\r\n"))[0].lines[0].slice(0, 3), "200")
    }, true)
  ))

Deno.test("an endless line is refused once and not buffered: server memory stays flat over 256 MB", () =>
  withServer((server) =>
    withClient(server, async (raw) => {
      const chunk = new Uint8Array(1024 * 1024).fill(0x41)
      await raw.send(chunk)
      assert.equal((await read(raw)).text, "Command too long.")
      // Warm up first: the allocator's high-water mark from read buffers awaiting GC is not a leak.
      for (let i = 0; i < 64; i++) await raw.send(chunk)
      const before = Deno.memoryUsage().rss
      for (let i = 0; i < 256; i++) await raw.send(chunk)
      // NOOP answered (and no second 500): the server has read and dropped all of the line.
      assert.equal((await exchange(raw, "\r\nNOOP\r\n"))[0].code, 200)
      const grown = Deno.memoryUsage().rss - before
      assert.ok(grown < 96 * 1024 * 1024, `rss grew by ${(grown / 1048576).toFixed(1)} MB over 256 MB sent`)
    })
  ))

// --- pipelining ----------------------------------------------------------------------------------

Deno.test("pipelined commands in one write are answered in order", () =>
  withServer((server) =>
    withClient(server, async (raw) => {
      const commands = ["USER user", "PASS pass", "TYPE I", "PWD", "SYST", "MKD d", "CWD d", "PWD", "BOGUS", "NOOP"]
      const replies = await exchange(raw, commands.map((c) => `${c}\r\n`).join(""), commands.length)
      assert.deepEqual(replies.map((r) => r.code), [331, 230, 200, 257, 215, 257, 250, 257, 500, 200])
      assert.equal(replies[7].text, '"/d" is the current directory.')
    })
  ))

Deno.test("bare LF line ends are accepted", () =>
  withServer((server) =>
    withClient(server, async (raw) => {
      assert.deepEqual((await exchange(raw, "NOOP\nSYST\n", 2)).map((r) => r.code), [200, 215])
    })
  ))

Deno.test("a command sent one byte at a time is answered once, when its line ends", () =>
  withServer((server) =>
    withClient(server, async (raw) => {
      for (const byte of bytes("SYST\r\n")) await raw.send(Uint8Array.of(byte))
      assert.equal((await read(raw)).code, 215)
      assert.equal((await exchange(raw, "NOOP\r\n"))[0].code, 200)
    })
  ))

// --- idle and vanishing clients ------------------------------------------------------------------

Deno.test("an idle client gets 421 after timeout seconds and is disconnected", () =>
  withServer((server) =>
    withClient(server, async (raw) => {
      const started = performance.now()
      const reply = await read(raw, 5000)
      const elapsed = performance.now() - started
      assert.deepEqual(reply.lines, ["421 Control connection timed out."])
      assert.ok(elapsed >= 900 && elapsed < 3000, `421 after ${elapsed.toFixed(0)} ms, expected about 1000`)
      assert.ok(await raw.closedByServer())
    }), { timeout: 1 }))

Deno.test("a command restarts the idle timeout", () =>
  withServer((server) =>
    withClient(server, async (raw) => {
      await new Promise((resolve) => setTimeout(resolve, 600))
      assert.equal((await exchange(raw, "NOOP\r\n"))[0].code, 200)
      const noop = performance.now()
      const reply = await read(raw, 5000)
      const elapsed = performance.now() - noop
      assert.equal(reply.code, 421)
      assert.ok(elapsed >= 900, `421 came ${elapsed.toFixed(0)} ms after the NOOP, expected >= 1000`)
    }, true), { timeout: 1 }))

Deno.test("a client trickling a line that never ends still gets the idle 421", () =>
  withServer((server) =>
    withClient(server, async (raw) => {
      const started = performance.now()
      let answered = false
      const trickle = (async () => {
        for (let i = 0; i < 15 && !answered; i++) {
          await new Promise((resolve) => setTimeout(resolve, 200))
          await raw.send(bytes("N")).catch(() => undefined)
        }
      })()
      const reply = await read(raw, 5000).finally(() => (answered = true))
      await trickle
      const elapsed = performance.now() - started
      assert.equal(reply.code, 421)
      assert.ok(elapsed < 2500, `421 after ${elapsed.toFixed(0)} ms of trickling, expected about 1000`)
    }), { timeout: 1 }))

Deno.test("clients that connect and disconnect at once do not disturb the server", () =>
  withServer(async (server) => {
    for (let i = 0; i < 20; i++) (await Deno.connect({ hostname: "127.0.0.1", port: server.port })).close()
    for (let i = 0; i < 5; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port })
      await conn.write(bytes("USER user\r\nPASS pass\r\nPWD\r\n"))
      conn.close()
    }
    await serverStillServes(server)
    assert.deepEqual(server.logs.filter((line) => line.startsWith("[E")), [])
  }))

Deno.test("a client that vanishes after junk does not disturb other sessions", () =>
  withServer(async (server) => {
    await withClient(server, async (steady) => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port })
      await conn.write(junk(4096, 7))
      conn.close()
      assert.equal((await exchange(steady, "PWD\r\n"))[0].code, 257)
    }, true)
    await serverStillServes(server)
    assert.deepEqual(server.logs.filter((line) => line.startsWith("[E")), [])
  }))
