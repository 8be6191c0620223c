/**
 * ABOR, STAT and QUIT behind a Telnet Synch (RFC 959 4.1.3): "IAC IP IAC DM <command>", with its
 * urgent byte (TCP urgent data, MSG_OOB) on any of the four, in one packet or split, sent while a
 * download runs and the client reads nothing. Without SO_OOBINLINE (which Deno cannot set) the
 * kernel takes the urgent byte out of the stream, so the server sees a different leftover for each
 * position (BSD ftp's `\xf2ABOR`, lftp's `\xff\xf4\xffABOR`, ...); each must be answered at once.
 */
import assert from "node:assert/strict"
import { RawClient, type Reply, sparseFile, startServer, type TestServer, timed } from "./helpers.ts"

const decoder = new TextDecoder()
const encoder = new TextEncoder()

/** Far bigger than the socket buffers: a download of it is still running when the command comes. */
const BIG = 256 << 20

const withServer = async (f: (server: TestServer) => Promise<void>, size = BIG) => {
  const server = await startServer()
  try {
    await sparseFile(`${server.root}/big.bin`, size)
    await f(server)
  } finally {
    await server.close()
  }
}

/** Logged in, with `RETR big.bin` running and its first bytes read; the data connection is then left unread. */
const downloading = async (server: TestServer): Promise<{ client: RawClient; data: Deno.TcpConn }> => {
  const client = await RawClient.connect(server.port)
  await client.login()
  assert.equal((await client.command("TYPE I")).code, 200)
  const data = await client.passive()
  assert.equal((await client.command("RETR big.bin")).code, 150)
  const buffer = new Uint8Array(65536)
  assert.ok((await timed(data.read(buffer), 5000, "the first bytes")) !== null)
  return { client, data }
}

/** Still bigger than the socket buffers, and quick to read to its end (QUIT lets a download finish). */
const QUIT_SIZE = 32 << 20

/** What the server sees of a Synch whose urgent byte the kernel dropped, by where that byte was. */
const LEFTOVERS: ReadonlyArray<readonly [string, number[]]> = [
  ["nothing urgent", [0xff, 0xf4, 0xff, 0xf2]],
  ["first IAC urgent", [0xf4, 0xff, 0xf2]],
  ["IP urgent", [0xff, 0xff, 0xf2]],
  ["second IAC urgent (BSD ftp)", [0xff, 0xf4, 0xf2]],
  ["DM urgent (lftp)", [0xff, 0xf4, 0xff]],
]

/** The replies `command` must get at once while the download runs. */
const expectAtOnce = async (client: RawClient, command: string): Promise<void> => {
  const first: Reply = await client.readReply(1000)
  if (command === "ABOR") {
    assert.equal(first.code, 426)
    assert.equal((await client.readReply(1000)).code, 226)
  } else {
    assert.equal(first.code, 211, first.lines.join("|"))
    assert.match(first.lines.join("\n"), /RETR \/big\.bin/)
  }
}

for (const command of ["ABOR", "STAT"]) {
  Deno.test(`${command} behind Synch leftovers written one byte per packet is answered at once during a RETR`, () =>
    withServer(async (server) => {
      for (const [variant, leftover] of LEFTOVERS) {
        const { client, data } = await downloading(server)
        try {
          for (const byte of leftover) {
            await client.send(Uint8Array.of(byte))
            await new Promise((resolve) => setTimeout(resolve, 10))
          }
          await client.send(encoder.encode(`${command}\r\n`))
          await expectAtOnce(client, command).catch((error) => {
            throw new Error(`${variant}: ${error}`)
          })
          if (command === "STAT") assert.equal((await client.command("ABOR")).code, 426)
          else assert.equal((await client.command("NOOP")).code, 200, variant)
        } finally {
          data.close()
          client.close()
        }
      }
    }))
}

Deno.test("QUIT behind Synch leftovers during a RETR gets 226 for the download, then 221", () =>
  withServer(async (server) => {
    for (const [variant, leftover] of LEFTOVERS) {
      const { client, data } = await downloading(server)
      try {
        await client.send(Uint8Array.of(...leftover, ...encoder.encode("QUIT\r\n")))
        // QUIT lets the download finish (RFC 959), so read it to its end.
        const buffer = new Uint8Array(1 << 20)
        while ((await timed(data.read(buffer), 10_000, "the download")) !== null) { /* drain */ }
        assert.deepEqual([(await client.readReply()).code, (await client.readReply()).code], [226, 221], variant)
        assert.ok(await client.closedByServer(), variant)
      } finally {
        data.close()
        client.close()
      }
    }
  }, QUIT_SIZE))

Deno.test("an unknown verb ending with ABOR (junk before it) aborts at once, as pyftpdlib reads it", () =>
  withServer(async (server) => {
    const { client, data } = await downloading(server)
    try {
      await client.send(encoder.encode("\x00\x01ABOR\r\n"))
      await expectAtOnce(client, "ABOR")
      assert.equal((await client.command("NOOP")).code, 200)
    } finally {
      data.close()
      client.close()
    }
  }))

const python = (() => {
  try {
    return new Deno.Command("python3", { args: ["-c", "import socket"], stdout: "null", stderr: "null" }).outputSync()
      .success
  } catch {
    return false
  }
})()
if (!python) console.warn("python3 is not installed (apt-get install -y python3): the urgent-data Synch tests skip")

/**
 * A client that sends real urgent data (Deno cannot): for each urgent position and packing, log
 * in, start `RETR big.bin`, read 64 KiB, send the Synch and the command, and report the reply
 * codes that came within 1 s (then, for ABOR and STAT, whether a NOOP or ABOR after it works).
 * "one": the whole sequence in one TCP segment (TCP_CORK); "split": one segment per byte.
 */
const URGENT_CLIENT = `
import json, socket, sys, time
port, command = int(sys.argv[1]), sys.argv[2]
SYNCH = bytes([0xff, 0xf4, 0xff, 0xf2])

def reply(f):
    line = f.readline()
    if len(line) < 4:
        raise EOFError("connection closed")
    if line[3:4] == b"-":
        while not f.readline().startswith(line[:3] + b" "):
            pass
    return int(line[:3])

def run(urgent, packing):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(5)
    f = s.makefile("rb")
    reply(f)
    for line in [b"USER user", b"PASS pass", b"TYPE I"]:
        s.sendall(line + b"\\r\\n")
        reply(f)
    s.sendall(b"EPSV\\r\\n")
    epsv = f.readline().decode()
    data = socket.create_connection(("127.0.0.1", int(epsv.split("|||")[1].split("|")[0])))
    s.sendall(b"RETR big.bin\\r\\n")
    assert reply(f) == 150
    got = 0
    while got < 65536:
        got += len(data.recv(65536))
    tail = command.encode() + b"\\r\\n"
    if packing == "one":
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    pieces = [(bytes([b]), i == urgent) for i, b in enumerate(SYNCH)] + [(tail, False)]
    for piece, oob in pieces:
        s.send(piece, socket.MSG_OOB if oob else 0)
        if packing == "split":
            time.sleep(0.01)
    if packing == "one":
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
    s.settimeout(1)
    codes = []
    try:
        if command == "QUIT":
            data.settimeout(10)
            while data.recv(1 << 20):
                pass
            s.settimeout(5)
            return [reply(f), reply(f), "closed" if f.read() == b"" else "open"]
        codes.append(reply(f))
        if command == "ABOR":
            codes.append(reply(f))
        s.settimeout(5)
        s.sendall(b"NOOP\\r\\n" if command == "ABOR" else b"ABOR\\r\\n")
        codes.append(reply(f))
    except Exception as e:
        codes.append(repr(e))
    data.close()
    s.close()
    return codes

results = {}
for urgent in [None, 0, 1, 2, 3]:
    for packing in ["one", "split"]:
        results["urgent byte %s, %s" % (urgent, packing)] = run(urgent, packing)
print(json.dumps(results))
`

const URGENT_CASES = [
  ["ABOR", [426, 226, 200]],
  ["STAT", [211, 426]],
  ["QUIT", [226, 221, "closed"]],
] as const

for (const [command, expected] of URGENT_CASES) {
  Deno.test({
    name: `${command} behind a Synch sent as urgent data, urgent byte on each of IAC IP IAC DM, is recognised at once`,
    ignore: !python,
    fn: () =>
      withServer(async (server) => {
        const out = await new Deno.Command("python3", {
          args: ["-c", URGENT_CLIENT, String(server.port), command],
          stdout: "piped",
          stderr: "piped",
        }).output()
        assert.equal(out.code, 0, decoder.decode(out.stderr))
        const results: Record<string, Array<number | string>> = JSON.parse(decoder.decode(out.stdout))
        assert.equal(Object.keys(results).length, 10)
        for (const [variant, codes] of Object.entries(results)) {
          // The command's own replies, then the next command's (the session goes on), or for QUIT the close.
          assert.deepEqual(codes.slice(0, expected.length - 1), expected.slice(0, -1), variant)
          assert.equal(codes.at(-1), expected.at(-1), `${variant}: the next command (${codes})`)
        }
      }, command === "QUIT" ? QUIT_SIZE : BIG),
  })
}
