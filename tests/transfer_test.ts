/**
 * Transfers as a client sees them: RETR/STOR/APPE/STOU, REST, ASCII conversion, large binary
 * files, ABOR and the commands answered during a transfer, clients vanishing, data timeouts, and
 * many clients at once.
 */
import { Client } from "basic-ftp"
import assert from "node:assert/strict"
import net from "node:net"
import { Readable, Writable } from "node:stream"
import {
  closeQuietly,
  curl,
  eventually,
  loggedIn,
  openFds,
  randomBytes,
  type RawClient,
  readAll,
  recordingHooks,
  type Reply,
  sha256,
  sleep,
  sparseFile,
  startServer,
  type TestServer,
  timed,
  within,
  withLoggedIn,
  writeAllAndClose,
} from "./helpers.ts"

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** A sparse file far bigger than socket buffers. */
const BIG = 128 << 20
const makeBigFile = (server: TestServer, name = "big.bin", size = BIG) => sparseFile(`${server.root}/${name}`, size)

/** Run `command` over a fresh passive connection, sending `upload` (if any); returns the data read and the final reply. */
const transfer = async (
  client: RawClient,
  command: string,
  upload?: Uint8Array,
): Promise<{ preliminary: Reply; data: Uint8Array; final: Reply }> => {
  const conn = await client.passive()
  await client.send(command)
  const preliminary = await client.readReply()
  if (preliminary.code !== 150) {
    conn.close()
    return { preliminary, data: new Uint8Array(0), final: preliminary }
  }
  let data: Uint8Array = new Uint8Array(0)
  if (upload === undefined) data = await readAll(conn)
  else await writeAllAndClose(conn, upload)
  return { preliminary, data, final: await client.readReply() }
}

/** Read `conn` until it ends or fails; `true` if it did so within `ms`. */
const drainsWithin = async (conn: Deno.Conn, ms: number): Promise<boolean> => {
  const buffer = new Uint8Array(1 << 20)
  const deadline = Date.now() + ms
  for (;;) {
    const left = deadline - Date.now()
    if (left <= 0) return false
    const n = await within(conn.read(buffer).catch(() => null), left)
    if (n === null) return Date.now() < deadline
  }
}

/** Read at least `count` bytes from `conn`. */
const readSome = async (conn: Deno.Conn, count: number): Promise<number> => {
  const buffer = new Uint8Array(65536)
  let total = 0
  while (total < count) {
    const n = await timed(conn.read(buffer), 10_000, "data to read")
    if (n === null) break
    total += n
  }
  return total
}

Deno.test("RETR sends the file's exact bytes, then 226", async () => {
  await withLoggedIn({}, async (server, client) => {
    const content = randomBytes(300_000)
    await Deno.writeFile(`${server.root}/r.bin`, content)
    const result = await transfer(client, "RETR r.bin")
    assert.equal(result.preliminary.code, 150)
    assert.deepEqual(result.data, content)
    assert.equal(result.final.code, 226)
  })
})

Deno.test("STOR creates the file with the exact bytes sent and replaces a longer one", async () => {
  await withLoggedIn({}, async (server, client) => {
    const content = randomBytes(300_000)
    const stored = await transfer(client, "STOR s.bin", content)
    assert.equal(stored.final.code, 226)
    assert.deepEqual(await Deno.readFile(`${server.root}/s.bin`), content)
    assert.equal((await transfer(client, "STOR s.bin", encoder.encode("short"))).final.code, 226)
    assert.equal(await Deno.readTextFile(`${server.root}/s.bin`), "short")
  })
})

Deno.test("APPE appends to an existing file and creates a missing one", async () => {
  await withLoggedIn({}, async (server, client) => {
    await Deno.writeTextFile(`${server.root}/log.txt`, "one,")
    assert.equal((await transfer(client, "APPE log.txt", encoder.encode("two"))).final.code, 226)
    assert.equal(await Deno.readTextFile(`${server.root}/log.txt`), "one,two")
    assert.equal((await transfer(client, "APPE fresh.txt", encoder.encode("new"))).final.code, 226)
    assert.equal(await Deno.readTextFile(`${server.root}/fresh.txt`), "new")
  })
})

Deno.test("STOU replies 150 FILE: <name> and stores under that new name", async () => {
  await withLoggedIn({}, async (server, client) => {
    await Deno.writeTextFile(`${server.root}/report`, "old")
    const names: string[] = []
    for (const content of ["first", "second"]) {
      const result = await transfer(client, "STOU report", encoder.encode(content))
      assert.equal(result.preliminary.code, 150)
      const match = /^FILE: (\S+)$/.exec(result.preliminary.text)
      assert.ok(match !== null, result.preliminary.text)
      assert.equal(result.final.code, 226)
      assert.equal(await Deno.readTextFile(`${server.root}/${match[1]}`), content)
      names.push(match[1])
    }
    assert.notEqual(names[0], names[1])
    assert.ok(!names.includes("report"))
    assert.equal(await Deno.readTextFile(`${server.root}/report`), "old")
  })
})

Deno.test("REST before RETR sends the file from that offset", async () => {
  await withLoggedIn({}, async (server, client) => {
    const content = randomBytes(100_000)
    await Deno.writeFile(`${server.root}/r.bin`, content)
    assert.equal((await client.command("REST 12345")).code, 350)
    const result = await transfer(client, "RETR r.bin")
    assert.equal(result.final.code, 226)
    assert.deepEqual(result.data, content.subarray(12345))
    // The offset applies to one transfer only.
    assert.deepEqual((await transfer(client, "RETR r.bin")).data, content)
  })
})

Deno.test("REST before STOR writes at that offset and keeps the bytes before it", async () => {
  await withLoggedIn({}, async (server, client) => {
    await Deno.writeTextFile(`${server.root}/part.txt`, "0123456789")
    assert.equal((await client.command("REST 4")).code, 350)
    assert.equal((await transfer(client, "STOR part.txt", encoder.encode("abcdefghij"))).final.code, 226)
    assert.equal(await Deno.readTextFile(`${server.root}/part.txt`), "0123abcdefghij")
  })
})

Deno.test("REST beyond the end of the file makes RETR and STOR reply 554", async () => {
  await withLoggedIn({}, async (server, client) => {
    await Deno.writeTextFile(`${server.root}/ten.txt`, "0123456789")
    assert.equal((await client.command("REST 11")).code, 350)
    assert.equal((await transfer(client, "RETR ten.txt")).final.code, 554)
    assert.equal((await client.command("REST 11")).code, 350)
    assert.equal((await transfer(client, "STOR ten.txt", encoder.encode("x"))).final.code, 554)
    assert.equal(await Deno.readTextFile(`${server.root}/ten.txt`), "0123456789")
  })
})

Deno.test("APPE after REST replies 450 and appends nothing", async () => {
  await withLoggedIn({}, async (server, client) => {
    await Deno.writeTextFile(`${server.root}/log.txt`, "one")
    assert.equal((await client.command("REST 1")).code, 350)
    const conn = await client.passive()
    try {
      assert.equal((await client.command("APPE log.txt")).code, 450)
    } finally {
      conn.close()
    }
    assert.equal(await Deno.readTextFile(`${server.root}/log.txt`), "one")
  })
})

Deno.test("TYPE A RETR sends LF line ends as CRLF and leaves CRLF alone", async () => {
  await withLoggedIn({}, async (server, client) => {
    await Deno.writeTextFile(`${server.root}/text.txt`, "a\nb\r\nc\n\nd")
    const result = await transfer(client, "RETR text.txt")
    assert.equal(result.final.code, 226)
    assert.equal(decoder.decode(result.data), "a\r\nb\r\nc\r\n\r\nd")
  }, { type: "A" })
})

Deno.test("TYPE A STOR stores CRLF as LF and keeps a bare CR", async () => {
  await withLoggedIn({}, async (server, client) => {
    assert.equal((await transfer(client, "STOR text.txt", encoder.encode("a\r\nb\rc\r\n\r\nd\r"))).final.code, 226)
    assert.equal(await Deno.readTextFile(`${server.root}/text.txt`), "a\nb\rc\n\nd\r")
  }, { type: "A" })
})

Deno.test("TYPE A STOR stores a CRLF split across two TCP writes as one LF", async () => {
  await withLoggedIn({}, async (server, client) => {
    const conn = await client.passive()
    conn.setNoDelay(true)
    await client.send("STOR split.txt")
    assert.equal((await client.readReply()).code, 150)
    await conn.write(encoder.encode("a\r"))
    await sleep(100)
    await conn.write(encoder.encode("\nb\r"))
    await sleep(100)
    await conn.write(encoder.encode("\r\nc"))
    conn.close()
    assert.equal((await client.readReply()).code, 226)
    assert.equal(await Deno.readTextFile(`${server.root}/split.txt`), "a\nb\r\nc")
  }, { type: "A" })
})

Deno.test("a 20 MB binary file round-trips byte for byte through curl", async () => {
  const server = await startServer()
  const local = await Deno.makeTempDir({ prefix: "ftpd-curl-" })
  try {
    const content = randomBytes(20 << 20)
    const hash = await sha256(content)
    await Deno.writeFile(`${local}/up.bin`, content)
    const url = `ftp://user:pass@127.0.0.1:${server.port}/big.bin`
    const upload = await curl("-T", `${local}/up.bin`, url)
    assert.equal(upload.code, 0, upload.stderr)
    assert.equal(await sha256(await Deno.readFile(`${server.root}/big.bin`)), hash)
    const download = await curl(url)
    assert.equal(download.code, 0, download.stderr)
    assert.equal(download.stdout.length, content.length)
    assert.equal(await sha256(download.stdout), hash)
  } finally {
    await Deno.remove(local, { recursive: true })
    await server.close()
  }
})

Deno.test("a 20 MB binary file round-trips byte for byte through basic-ftp", async () => {
  const server = await startServer()
  const client = new Client(30_000)
  try {
    const content = randomBytes(20 << 20)
    const hash = await sha256(content)
    await client.access({ host: "127.0.0.1", port: server.port, user: "user", password: "pass" })
    await client.uploadFrom(Readable.from([content]), "big.bin")
    assert.equal(await sha256(await Deno.readFile(`${server.root}/big.bin`)), hash)
    const chunks: Uint8Array[] = []
    await client.downloadTo(new Writable({ write: (c, _e, cb) => (chunks.push(c), cb()) }), "big.bin")
    assert.equal(await sha256(Buffer.concat(chunks)), hash)
  } finally {
    client.close()
    await server.close()
  }
})

Deno.test("ABOR during RETR replies 426 then 226, closes the data connection, and the session goes on", async () => {
  await withLoggedIn({}, async (server, client) => {
    await makeBigFile(server)
    await Deno.writeTextFile(`${server.root}/small.txt`, "small")
    const conn = await client.passive()
    try {
      await client.send("RETR big.bin")
      assert.equal((await client.readReply()).code, 150)
      assert.ok((await readSome(conn, 65536)) >= 65536)
      await client.send("ABOR")
      assert.equal((await client.readReply()).code, 426)
      assert.equal((await client.readReply()).code, 226)
      assert.ok(await drainsWithin(conn, 5000), "the data connection stayed open after ABOR")
    } finally {
      conn.close()
    }
    const next = await transfer(client, "RETR small.txt")
    assert.equal(next.final.code, 226)
    assert.equal(decoder.decode(next.data), "small")
  })
})

Deno.test("ABOR whose LF was sent as urgent data (Python ftplib's abort) still replies 426 then 226", async () => {
  await withLoggedIn({}, async (server, client) => {
    await makeBigFile(server)
    const conn = await client.passive()
    try {
      await client.send("RETR big.bin")
      assert.equal((await client.readReply()).code, 150)
      assert.ok((await readSome(conn, 65536)) >= 65536)
      // MSG_OOB makes the last byte urgent; without SO_OOBINLINE the server never sees that LF.
      await client.send(encoder.encode("ABOR\r"))
      assert.equal((await client.readReply(3000)).code, 426)
      assert.equal((await client.readReply(3000)).code, 226)
    } finally {
      conn.close()
    }
    assert.equal((await client.command("NOOP")).code, 200)
  })
})

/**
 * A control connection through libc (Linux), which unlike Deno and `node:net` can send TCP urgent
 * data (`MSG_OOB`), as lftp does for the Telnet Synch before ABOR.
 */
const urgentCapable = Deno.build.os === "linux" && (() => {
  try {
    Deno.dlopen("libc.so.6", { getpid: { parameters: [], result: "i32" } }).close()
    return true
  } catch {
    return false
  }
})()

const openUrgentClient = async (port: number) => {
  const libc = Deno.dlopen("libc.so.6", {
    socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
    connect: { parameters: ["i32", "buffer", "u32"], result: "i32", nonblocking: true },
    send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
    recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize", nonblocking: true },
    shutdown: { parameters: ["i32", "i32"], result: "i32" },
    close: { parameters: ["i32"], result: "i32" },
  })
  const AF_INET = 2, SOCK_STREAM = 1, MSG_OOB = 1, SHUT_RDWR = 2
  const fd = libc.symbols.socket(AF_INET, SOCK_STREAM, 0)
  const address = new Uint8Array(16)
  new DataView(address.buffer).setUint16(0, AF_INET, true)
  new DataView(address.buffer).setUint16(2, port, false)
  address.set([127, 0, 0, 1], 4)
  if (fd < 0 || (await libc.symbols.connect(fd, address, 16)) !== 0) {
    libc.close()
    throw new Error("libc connect failed")
  }
  let text = ""
  const chunk = new Uint8Array(4096)
  return {
    send: (bytes: Uint8Array, urgent = false) => {
      const sent = Number(
        libc.symbols.send(fd, bytes as Uint8Array<ArrayBuffer>, BigInt(bytes.length), urgent ? MSG_OOB : 0),
      )
      if (sent !== bytes.length) throw new Error("libc send failed")
    },
    /** The code of the next reply's last line; `null` if none comes within `ms`. */
    reply: async (ms: number): Promise<number | null> => {
      const deadline = Date.now() + ms
      for (;;) {
        const match = /^(\d{3}) .*\r\n/m.exec(text)
        if (match !== null) {
          text = text.slice(match.index + match[0].length)
          return Number(match[1])
        }
        const left = deadline - Date.now()
        if (left <= 0) return null
        // A blocking recv on a worker thread; shutdown() in close() ends it if nothing comes.
        const n = await within(libc.symbols.recv(fd, chunk, 4096n, 0).then(Number), left)
        if (n === null || n <= 0) return null
        text += decoder.decode(chunk.subarray(0, n))
      }
    },
    close: async () => {
      libc.symbols.shutdown(fd, SHUT_RDWR)
      await sleep(50)
      libc.symbols.close(fd)
      libc.close()
    },
  }
}

Deno.test({
  name: "ABOR after a Telnet Synch whose DM is urgent data (lftp) replies 426 then 226 at once",
  ignore: !urgentCapable,
  fn: async () => {
    const server = await startServer()
    const client = await openUrgentClient(server.port)
    try {
      await makeBigFile(server)
      assert.equal(await client.reply(5000), 220)
      for (const [command, code] of [["USER user", 331], ["PASS pass", 230], ["TYPE I", 200]] as const) {
        client.send(encoder.encode(`${command}\r\n`))
        assert.equal(await client.reply(5000), code, command)
      }
      // No transfer: the Synch and ABOR are answered with 225.
      client.send(Uint8Array.of(0xff, 0xf4, 0xff))
      client.send(Uint8Array.of(0xf2), true)
      client.send(encoder.encode("ABOR\r\n"))
      assert.equal(await client.reply(2000), 225, "ABOR after a Synch was not answered")

      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 })
      const port = (listener.addr as Deno.NetAddr).port
      client.send(encoder.encode(`PORT 127,0,0,1,${port >> 8},${port & 255}\r\n`))
      const conn = await timed(listener.accept(), 5000, "the PORT connection")
      listener.close()
      try {
        assert.equal(await client.reply(5000), 200)
        client.send(encoder.encode("RETR big.bin\r\n"))
        assert.equal(await client.reply(5000), 150)
        assert.ok((await readSome(conn, 65536)) >= 65536)
        client.send(Uint8Array.of(0xff, 0xf4, 0xff))
        client.send(Uint8Array.of(0xf2), true)
        client.send(encoder.encode("ABOR\r\n"))
        assert.equal(await client.reply(2000), 426, "ABOR after a Synch was not answered")
        assert.equal(await client.reply(2000), 226)
      } finally {
        conn.close()
      }
      client.send(encoder.encode("NOOP\r\n"))
      assert.equal(await client.reply(2000), 200)
    } finally {
      await client.close()
      await server.close()
    }
  },
})

Deno.test("a command whose LF arrives late is answered once", async () => {
  await withLoggedIn({}, async (_server, client) => {
    await client.send(encoder.encode("NOOP\r"))
    await sleep(300)
    await client.send(encoder.encode("\nPWD\r\n"))
    assert.equal((await client.readReply()).code, 200)
    assert.equal((await client.readReply()).code, 257)
    assert.equal((await client.command("SYST")).code, 215)
  })
})

const python = (() => {
  try {
    return new Deno.Command("python3", { args: ["-c", "import ftplib"], stdout: "null", stderr: "null" }).outputSync()
      .success
  } catch {
    return false
  }
})()

Deno.test({
  name: "Python ftplib's abort() during a RETR gets 426, then 226",
  ignore: !python,
  fn: async () => {
    const server = await startServer()
    try {
      await makeBigFile(server)
      const script = `
import ftplib, sys
f = ftplib.FTP()
f.connect("127.0.0.1", int(sys.argv[1]), timeout=5)
f.login("user", "pass")
f.voidcmd("TYPE I")
c = f.transfercmd("RETR big.bin")
c.recv(65536)
print(f.abort())
print(f.getline())
c.close()
print(f.voidcmd("NOOP"))
f.quit()
`
      const out = await new Deno.Command("python3", {
        args: ["-c", script, String(server.port)],
        stdout: "piped",
        stderr: "piped",
      }).output()
      assert.equal(out.code, 0, decoder.decode(out.stderr))
      const lines = decoder.decode(out.stdout).trim().split("\n")
      assert.deepEqual(lines.map((l) => l.slice(0, 3)), ["426", "226", "200"])
    } finally {
      await server.close()
    }
  },
})

Deno.test("ABOR with no transfer replies 225", async () => {
  await withLoggedIn({}, async (_server, client) => {
    assert.equal((await client.command("ABOR")).code, 225)
    assert.equal((await client.command("NOOP")).code, 200)
  })
})

Deno.test("STAT and NOOP are answered while a RETR waits on an unread data connection", async () => {
  await withLoggedIn({}, async (server, client) => {
    await makeBigFile(server)
    const conn = await client.passive()
    try {
      await client.send("RETR big.bin")
      assert.equal((await client.readReply()).code, 150)
      const stat = await client.command("STAT")
      assert.equal(stat.code, 211)
      assert.match(stat.lines.join("\n"), /Data connection open: RETR \/big\.bin, \d+ bytes/)
      assert.equal((await client.command("NOOP")).code, 200)
      assert.equal((await readAll(conn)).length, BIG)
    } finally {
      closeQuietly(conn)
    }
    assert.equal((await client.readReply()).code, 226)
  })
})

Deno.test("QUIT during a transfer waits for it: 226, then 221", async () => {
  await withLoggedIn({}, async (server, client) => {
    await makeBigFile(server)
    const conn = await client.passive()
    try {
      await client.send("RETR big.bin")
      assert.equal((await client.readReply()).code, 150)
      await client.send("QUIT")
      // Keep the pending read: a RawClient read that times out would lose what arrives later.
      const next = client.readReply()
      assert.equal(await within(next, 300), null, "a reply came before the transfer ended")
      assert.equal((await readAll(conn)).length, BIG)
      assert.equal((await next).code, 226)
    } finally {
      closeQuietly(conn)
    }
    assert.equal((await client.readReply()).code, 221)
    assert.ok(await client.closedByServer())
  })
})

Deno.test("a client closing the data connection mid-RETR gets 426 and the session goes on", async () => {
  const { calls, hooks } = recordingHooks()
  await withLoggedIn({ hooks }, async (server, client) => {
    await makeBigFile(server)
    const conn = await client.passive()
    await client.send("RETR big.bin")
    assert.equal((await client.readReply()).code, 150)
    assert.ok((await readSome(conn, 1 << 20)) >= 1 << 20)
    conn.close()
    assert.equal((await client.readReply()).code, 426)
    await eventually(() => calls.includes(`onIncompleteFileSent ${server.root}/big.bin`), 5000, "the hook")
    assert.ok(server.logs.some((l) => /RETR \/big\.bin completed=0 bytes=\d+/.test(l)), server.logs.join("\n"))
    await Deno.writeTextFile(`${server.root}/small.txt`, "small")
    assert.equal(decoder.decode((await transfer(client, "RETR small.txt")).data), "small")
  })
})

/** A passive data connection made with `node:net`, which can reset (RST) instead of closing. */
const nodeConnect = async (port: number) => {
  const socket = net.connect({ host: "127.0.0.1", port })
  socket.on("error", () => undefined)
  const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()))
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve())
    socket.once("error", reject)
  })
  return { socket, closed }
}

Deno.test("a client resetting the data connection mid-STOR leaves the partial file, fires onIncompleteFileReceived, and the session goes on", async () => {
  const { calls, hooks } = recordingHooks()
  await withLoggedIn({ hooks }, async (server, client) => {
    const data = await nodeConnect(await client.epsvPort())
    try {
      await client.send("STOR partial.bin")
      assert.equal((await client.readReply()).code, 150)
      await new Promise((resolve) => data.socket.write(new Uint8Array(256 * 1024), resolve))
      await eventually(
        async () => (await Deno.stat(`${server.root}/partial.bin`)).size >= 256 * 1024,
        5000,
        "the first bytes on disk",
      )
      data.socket.resetAndDestroy()
      await data.closed
    } finally {
      data.socket.destroy()
    }
    assert.equal((await client.readReply()).code, 426)
    assert.equal((await Deno.stat(`${server.root}/partial.bin`)).size, 256 * 1024)
    await eventually(() => calls.includes(`onIncompleteFileReceived ${server.root}/partial.bin`), 5000, "the hook")
    assert.ok(!calls.some((c) => c.startsWith("onFileReceived")), calls.join("\n"))
    assert.equal((await transfer(client, "STOR next.txt", encoder.encode("next"))).final.code, 226)
    assert.equal(await Deno.readTextFile(`${server.root}/next.txt`), "next")
  })
})

Deno.test("a control connection dropped mid-transfer makes the server fire the incomplete hooks and close every fd", async () => {
  const { calls, hooks } = recordingHooks()
  const server = await startServer({ hooks })
  try {
    await makeBigFile(server)
    const fdsBefore = openFds()
    const reader = await loggedIn(server)
    const readerData = await reader.passive()
    await reader.send("RETR big.bin")
    assert.equal((await reader.readReply()).code, 150)
    assert.ok((await readSome(readerData, 65536)) >= 65536)
    const writer = await loggedIn(server)
    const writerData = await writer.passive()
    await writer.send("STOR up.bin")
    assert.equal((await writer.readReply()).code, 150)
    await writerData.write(new Uint8Array(65536))
    assert.ok(openFds() > fdsBefore)
    reader.close()
    writer.close()
    await eventually(
      () =>
        calls.includes(`onIncompleteFileSent ${server.root}/big.bin`) &&
        calls.includes(`onIncompleteFileReceived ${server.root}/up.bin`),
      5000,
      "the incomplete hooks",
    )
    assert.ok(await drainsWithin(readerData, 5000), "the server kept the RETR data connection open")
    assert.ok(await drainsWithin(writerData, 5000), "the server kept the STOR data connection open")
    closeQuietly(readerData)
    closeQuietly(writerData)
    await eventually(() => openFds() === fdsBefore, 5000, `open fds back to ${fdsBefore} (now ${openFds()})`)
  } finally {
    await server.close()
  }
})

Deno.test("with dataTimeout 1, a RETR nobody reads ends with 426 within seconds and the session goes on", async () => {
  await withLoggedIn({ dataTimeout: 1 }, async (server, client) => {
    await makeBigFile(server)
    const conn = await client.passive()
    try {
      await client.send("RETR big.bin")
      assert.equal((await client.readReply()).code, 150)
      const started = Date.now()
      const reply = await client.readReply(8000)
      assert.equal(reply.code, 426, reply.lines.join("|"))
      assert.ok(Date.now() - started < 5000, `426 after ${Date.now() - started} ms`)
    } finally {
      conn.close()
    }
    assert.equal((await client.command("NOOP")).code, 200)
  })
})

Deno.test("with dataTimeout 1, a STOR whose client sends nothing ends with 426 within seconds", async () => {
  await withLoggedIn({ dataTimeout: 1 }, async (_server, client) => {
    const conn = await client.passive()
    try {
      await client.send("STOR idle.bin")
      assert.equal((await client.readReply()).code, 150)
      const started = Date.now()
      const reply = await client.readReply(8000)
      assert.equal(reply.code, 426, reply.lines.join("|"))
      assert.ok(Date.now() - started < 5000, `426 after ${Date.now() - started} ms`)
    } finally {
      conn.close()
    }
  })
})

Deno.test("with dataTimeout 1, a RETR whose passive connection never comes replies 425", async () => {
  await withLoggedIn({ dataTimeout: 1 }, async (server, client) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "alpha")
    await client.epsvPort()
    await client.send("RETR a.txt")
    assert.equal((await client.readReply()).code, 150)
    const started = Date.now()
    assert.equal((await client.readReply(8000)).code, 425)
    assert.ok(Date.now() - started < 5000, `425 after ${Date.now() - started} ms`)
    assert.equal((await client.command("NOOP")).code, 200)
  })
})

for (const jail of ["descriptor", "path"] as const) {
  Deno.test(`${jail} jail: a STOR whose passive connection never comes (425) leaves the existing file byte-identical`, async () => {
    await withLoggedIn({ dataTimeout: 1, jail }, async (server, client) => {
      const old = randomBytes(100_000)
      await Deno.writeFile(`${server.root}/keep.bin`, old)
      await client.epsvPort()
      await client.send("STOR keep.bin")
      assert.equal((await client.readReply()).code, 150)
      assert.equal((await client.readReply(8000)).code, 425)
      assert.equal(await sha256(await Deno.readFile(`${server.root}/keep.bin`)), await sha256(old))
      // The session goes on, and a later STOR does replace the file.
      const content = randomBytes(1000)
      assert.equal((await transfer(client, "STOR keep.bin", content)).final.code, 226)
      assert.equal(await sha256(await Deno.readFile(`${server.root}/keep.bin`)), await sha256(content))
    })
  })

  Deno.test(`${jail} jail: ABOR of a STOR before its data connection leaves the existing file byte-identical`, async () => {
    await withLoggedIn({ jail }, async (server, client) => {
      const old = randomBytes(100_000)
      await Deno.writeFile(`${server.root}/keep.bin`, old)
      await client.epsvPort()
      await client.send("STOR keep.bin")
      assert.equal((await client.readReply()).code, 150)
      assert.deepEqual([(await client.command("ABOR")).code, (await client.readReply()).code], [426, 226])
      assert.equal(await sha256(await Deno.readFile(`${server.root}/keep.bin`)), await sha256(old))
    })
  })

  Deno.test(`${jail} jail: an empty STOR empties the existing file`, async () => {
    await withLoggedIn({ jail }, async (server, client) => {
      await Deno.writeFile(`${server.root}/keep.bin`, randomBytes(100_000))
      assert.equal((await transfer(client, "STOR keep.bin", new Uint8Array(0))).final.code, 226)
      assert.equal((await Deno.stat(`${server.root}/keep.bin`)).size, 0)
    })
  })
}

Deno.test("50 parallel basic-ftp clients each upload and download their own 1 MB file intact", async () => {
  const server = await startServer()
  const clients = Array.from({ length: 50 }, () => new Client(30_000))
  try {
    const results = await Promise.all(clients.map(async (client, i) => {
      const content = randomBytes(1 << 20)
      const hash = await sha256(content)
      await client.access({ host: "127.0.0.1", port: server.port, user: "user", password: "pass" })
      await client.uploadFrom(Readable.from([content]), `file${i}.bin`)
      const chunks: Uint8Array[] = []
      await client.downloadTo(new Writable({ write: (c, _e, cb) => (chunks.push(c), cb()) }), `file${i}.bin`)
      return { i, hash, downloaded: await sha256(Buffer.concat(chunks)) }
    }))
    assert.equal(results.length, 50)
    for (const { i, hash, downloaded } of results) {
      assert.equal(downloaded, hash, `client ${i} downloaded other bytes`)
      assert.equal(await sha256(await Deno.readFile(`${server.root}/file${i}.bin`)), hash, `file${i}.bin on disk`)
    }
  } finally {
    for (const client of clients) client.close()
    await server.close()
  }
})

for (const [label, options] of [["", {}], [" under readLimit", { readLimit: 256 * 1024 }]] as const) {
  Deno.test(`ABOR during STOR${label}: 426 then 226, and the partial file holds exactly the bytes the log counts`, async () => {
    const server = await startServer(options)
    const client = await loggedIn(server)
    const sent = randomBytes(600_000)
    try {
      const data = await client.passive()
      try {
        await client.send("STOR part.bin")
        assert.equal((await client.readReply()).code, 150)
        await data.write(sent.subarray(0, 300_000))
        // Long enough for the received bytes to reach the file, then more that are still in flight at ABOR.
        await sleep(400)
        const rest = data.write(sent.subarray(300_000)).catch(() => 0)
        await sleep(20)
        await client.send("ABOR")
        assert.equal((await client.readReply()).code, 426)
        assert.equal((await client.readReply()).code, 226)
        await rest
      } finally {
        closeQuietly(data)
      }
      assert.equal((await client.command("NOOP")).code, 200)
      const line = server.logs.find((l) => l.includes("STOR /part.bin ")) ?? ""
      const logged = Number(/completed=0 bytes=(\d+) /.exec(line)?.[1])
      assert.ok(logged > 0, line)
      const stored = await Deno.readFile(`${server.root}/part.bin`)
      assert.equal(stored.length, logged)
      assert.deepEqual(stored, sent.subarray(0, logged))
    } finally {
      client.close()
      await server.close()
    }
  })
}
