/**
 * Bandwidth limits as a client sees them: the server (not the client) holds each transfer to its
 * session's, its user's and the server's limit, measured by raw clients that read and write as fast
 * as they can, over about 5 s each; and it sleeps while it waits rather than spinning.
 */
import assert from "node:assert/strict"
import process from "node:process"
import { Bandwidth } from "../src/data/throttle.ts"
import { resolveOptions } from "../src/options.ts"
import {
  loggedIn,
  type RawClient,
  sparseFile,
  startServer,
  type TestServer,
  timed,
  withLoggedIn,
  writeAllAndClose,
} from "./helpers.ts"

/** The limit every test uses, in bytes/s; each transfer moves `LIMIT * SECONDS` bytes. */
const LIMIT = 2_000_000
const SECONDS = 5

/** A sparse file of `size` zero bytes in the server's root. */
const makeFile = (server: TestServer, name: string, size: number) => sparseFile(`${server.root}/${name}`, size)

/** Read `conn` as fast as possible to its end; the byte count. */
const drain = async (conn: Deno.Conn): Promise<number> => {
  const buffer = new Uint8Array(1 << 20)
  let total = 0
  for (;;) {
    const n = await conn.read(buffer)
    if (n === null) return total
    total += n
  }
}

/** RETR `name` reading as fast as possible; resolves once the 226 arrives, with the bytes read. */
const download = async (client: RawClient, name: string): Promise<number> => {
  const conn = await client.passive()
  try {
    await client.send(`RETR ${name}`)
    assert.equal((await client.readReply()).code, 150)
    const bytes = await timed(drain(conn), 30_000, "the download")
    assert.equal((await client.readReply(30_000)).code, 226)
    return bytes
  } finally {
    conn.close()
  }
}

/** STOR `size` zero bytes written as fast as the server takes them; resolves once the 226 arrives. */
const upload = async (client: RawClient, name: string, size: number): Promise<void> => {
  const conn = await client.passive()
  await client.send(`STOR ${name}`)
  assert.equal((await client.readReply()).code, 150)
  await timed(writeAllAndClose(conn, new Uint8Array(size)), 30_000, "the upload")
  assert.equal((await client.readReply(30_000)).code, 226)
}

/** Seconds `work` takes. */
const seconds = async (work: () => Promise<unknown>): Promise<number> => {
  const start = performance.now()
  await work()
  return (performance.now() - start) / 1000
}

/** Assert that `bytes` in `elapsed` seconds is within 5% of `LIMIT`. */
const assertRate = (bytes: number, elapsed: number) => {
  const rate = bytes / elapsed
  assert.ok(
    Math.abs(rate / LIMIT - 1) <= 0.05,
    `${Math.round(rate)} bytes/s over ${elapsed.toFixed(2)} s is not within 5% of ${LIMIT}`,
  )
}

Deno.test("with writeLimit, a RETR read as fast as possible runs within 5% of the limit, and the server sleeps meanwhile", async () => {
  await withLoggedIn({ writeLimit: LIMIT }, async (server, client) => {
    const size = LIMIT * SECONDS
    await makeFile(server, "big.bin", size)
    const cpuBefore = process.cpuUsage()
    let bytes = 0
    const elapsed = await seconds(async () => bytes = await download(client, "big.bin"))
    const cpu = process.cpuUsage(cpuBefore)
    assert.equal(bytes, size)
    assertRate(bytes, elapsed)
    // Server and client share this process: both together stay far below a busy loop's 5 CPU-s.
    const cpuSeconds = (cpu.user + cpu.system) / 1e6
    assert.ok(cpuSeconds < 0.5, `${cpuSeconds.toFixed(3)} CPU-s during a ${elapsed.toFixed(2)} s throttled transfer`)
  })
})

Deno.test("with readLimit, a STOR written as fast as possible runs within 5% of the limit and stores every byte", async () => {
  await withLoggedIn({ readLimit: LIMIT }, async (server, client) => {
    const size = LIMIT * SECONDS
    const elapsed = await seconds(() => upload(client, "up.bin", size))
    assertRate(size, elapsed)
    assert.equal((await Deno.stat(`${server.root}/up.bin`)).size, size)
  })
})

Deno.test("two sessions of one user share userWriteLimit: their combined RETR rate is within 5% of it", async () => {
  // Each session alone may use the whole limit; the user's bucket is what holds the sum.
  const server = await startServer({ writeLimit: LIMIT, userWriteLimit: LIMIT })
  const clients = [await loggedIn(server), await loggedIn(server)]
  try {
    const size = (LIMIT * SECONDS) / 2
    await makeFile(server, "half.bin", size)
    let bytes = 0
    const elapsed = await seconds(async () => {
      const counts = await Promise.all(clients.map((client) => download(client, "half.bin")))
      bytes = counts[0] + counts[1]
    })
    assert.equal(bytes, size * 2)
    assertRate(bytes, elapsed)
  } finally {
    for (const client of clients) client.close()
    await server.close()
  }
})

Deno.test("globalReadLimit holds the uploads of different users together within 5% of it", async () => {
  const server = await startServer({
    globalReadLimit: LIMIT,
    users: (a, root) =>
      a.addUser("alice", "a", root, { perm: "elradfmw" }).addUser("bob", "b", root, { perm: "elradfmw" }),
  })
  const alice = await loggedIn(server, { user: "alice", password: "a" })
  const bob = await loggedIn(server, { user: "bob", password: "b" })
  try {
    const size = (LIMIT * SECONDS) / 2
    const elapsed = await seconds(() => Promise.all([upload(alice, "a.bin", size), upload(bob, "b.bin", size)]))
    assertRate(size * 2, elapsed)
  } finally {
    alice.close()
    bob.close()
    await server.close()
  }
})

Deno.test("writeLimit holds listings too", async () => {
  const limit = 100_000
  await withLoggedIn({ writeLimit: limit }, async (server, client) => {
    const name = (i: number) => `${String(i).padStart(6, "0")}-${"x".repeat(50)}`
    for (let i = 0; i < 3000; i++) Deno.writeFileSync(`${server.root}/${name(i)}`, new Uint8Array(0))
    const conn = await client.passive()
    let bytes = 0
    const elapsed = await seconds(async () => {
      await client.send("NLST")
      assert.equal((await client.readReply()).code, 150)
      bytes = await timed(drain(conn), 30_000, "the listing")
      assert.equal((await client.readReply(30_000)).code, 226)
    })
    conn.close()
    assert.equal(bytes, 3000 * (name(0).length + 2))
    // One burst of a tenth of a second comes free; the rest is paid for at the limit.
    const expected = bytes / limit - 0.1
    assert.ok(elapsed >= expected * 0.95 && elapsed <= expected * 1.5, `${elapsed.toFixed(2)} s, expected ${expected}`)
  })
})

Deno.test("limits are bytes per second >= 0, and with none set a transfer gets no throttle at all", () => {
  for (
    const name of ["readLimit", "writeLimit", "userReadLimit", "userWriteLimit", "globalReadLimit", "globalWriteLimit"]
  ) {
    assert.throws(() => resolveOptions({ [name]: -1 }), RangeError)
    assert.throws(() => resolveOptions({ [name]: Infinity }), RangeError)
  }
  const none = { read: 0, write: 0 }
  assert.equal(new Bandwidth(none, none, none).throttle({}, { user: "user" }, "write"), undefined)
  const userOnly = new Bandwidth(none, { read: 0, write: LIMIT }, none)
  assert.equal(userOnly.throttle({}, { user: "user" }, "read"), undefined)
  assert.equal(userOnly.throttle({}, null, "write"), undefined)
  assert.equal(userOnly.throttle({}, { user: "user" }, "write")?.chunk, LIMIT / 10)
})
