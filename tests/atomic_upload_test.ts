/**
 * Atomic uploads as a client (and a reader of the server's disk) sees them: with `atomicUploads`,
 * STOR and STOU write to a hidden temporary file and rename it over the target once complete, so
 * the target name never holds half a file; an aborted, reset or abandoned upload leaves the
 * target as it was and no temporary file behind.
 */
import assert from "node:assert/strict"
import net from "node:net"
import {
  eventually,
  loggedIn,
  readAll,
  recordingHooks,
  startServer,
  type TestServer,
  timed,
  withLoggedIn,
  writeAllAndClose,
} from "./helpers.ts"

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** Names in the server's root starting with the temporary prefix. */
const temporaries = (server: TestServer): string[] =>
  [...Deno.readDirSync(server.root)].map((e) => e.name).filter((n) => n.startsWith(".ftpd-upload-"))

/** The one temporary file, once it holds at least `size` bytes. */
const temporaryWith = async (server: TestServer, size: number): Promise<string> => {
  let found = ""
  await eventually(
    () => {
      const names = temporaries(server)
      if (names.length !== 1) return false
      found = names[0]
      return Deno.statSync(`${server.root}/${found}`).size >= size
    },
    5000,
    `a temporary file of ${size} bytes`,
  )
  return found
}

Deno.test("with atomicUploads, the target keeps its old content during a STOR and holds the whole new file after 226", async () => {
  const { calls, hooks } = recordingHooks()
  // A slow upload: 300 kB at 100 kB/s.
  await withLoggedIn({ atomicUploads: true, readLimit: 100_000, hooks }, async (server, client) => {
    const target = `${server.root}/a.bin`
    await Deno.writeTextFile(target, "old")
    const content = new Uint8Array(300_000).map((_, i) => i % 251)
    const conn = await client.passive()
    await client.send("STOR a.bin")
    assert.equal((await client.readReply()).code, 150)
    const sending = writeAllAndClose(conn, content)
    const temporary = await temporaryWith(server, 100_000)
    assert.match(temporary, /^\.ftpd-upload-[0-9a-f]{8}-a\.bin$/)
    assert.equal(await Deno.readTextFile(target), "old")
    await timed(sending, 10_000, "the upload")
    assert.equal((await client.readReply()).code, 226)
    assert.deepEqual(await Deno.readFile(target), content)
    assert.deepEqual(temporaries(server), [])
    await eventually(() => calls.includes(`onFileReceived ${target}`), 5000, "the hook with the target's path")
  })
})

Deno.test("with atomicUploads, a STOR of a new file creates nothing under its name until complete", async () => {
  await withLoggedIn({ atomicUploads: true, readLimit: 100_000 }, async (server, client) => {
    const conn = await client.passive()
    await client.send("STOR new.bin")
    assert.equal((await client.readReply()).code, 150)
    const sending = writeAllAndClose(conn, new Uint8Array(200_000))
    await temporaryWith(server, 50_000)
    await assert.rejects(Deno.stat(`${server.root}/new.bin`), Deno.errors.NotFound)
    await timed(sending, 10_000, "the upload")
    assert.equal((await client.readReply()).code, 226)
    assert.equal((await Deno.stat(`${server.root}/new.bin`)).size, 200_000)
  })
})

Deno.test("with atomicUploads, ABOR during a STOR removes the temporary file, leaves the target unchanged and reports the temporary path", async () => {
  const { calls, hooks } = recordingHooks()
  await withLoggedIn({ atomicUploads: true, hooks }, async (server, client) => {
    await Deno.writeTextFile(`${server.root}/a.bin`, "old")
    const conn = await client.passive()
    await client.send("STOR a.bin")
    assert.equal((await client.readReply()).code, 150)
    await conn.write(new Uint8Array(65536))
    const temporary = await temporaryWith(server, 65536)
    await client.send("ABOR")
    assert.equal((await client.readReply()).code, 426)
    assert.equal((await client.readReply()).code, 226)
    conn.close()
    assert.equal(await Deno.readTextFile(`${server.root}/a.bin`), "old")
    assert.deepEqual(temporaries(server), [])
    await eventually(
      () => calls.includes(`onIncompleteFileReceived ${server.root}/${temporary}`),
      5000,
      "the incomplete hook with the temporary path",
    )
  })
})

Deno.test("with atomicUploads, a data connection reset or a dropped control connection mid-STOR leaves no file behind", async () => {
  const server = await startServer({ atomicUploads: true })
  try {
    const client = await loggedIn(server)
    const socket = net.connect({ host: "127.0.0.1", port: await client.epsvPort() })
    socket.on("error", () => undefined)
    await new Promise((resolve) => socket.once("connect", resolve))
    await client.send("STOR reset.bin")
    assert.equal((await client.readReply()).code, 150)
    await new Promise((resolve) => socket.write(new Uint8Array(65536), resolve))
    await temporaryWith(server, 65536)
    socket.resetAndDestroy()
    assert.equal((await client.readReply()).code, 426)
    assert.deepEqual(temporaries(server), [])
    await assert.rejects(Deno.stat(`${server.root}/reset.bin`), Deno.errors.NotFound)

    const data = await client.passive()
    await client.send("STOR dropped.bin")
    assert.equal((await client.readReply()).code, 150)
    await data.write(new Uint8Array(65536))
    await temporaryWith(server, 65536)
    client.close()
    await eventually(() => temporaries(server).length === 0, 5000, "the temporary file to go")
    data.close()
    await assert.rejects(Deno.stat(`${server.root}/dropped.bin`), Deno.errors.NotFound)
  } finally {
    await server.close()
  }
})

Deno.test("with atomicUploads, REST then STOR replies 550 and changes nothing", async () => {
  await withLoggedIn({ atomicUploads: true }, async (server, client) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "old content")
    assert.equal((await client.command("REST 3")).code, 350)
    const reply = await client.command("STOR a.txt")
    assert.equal(reply.code, 550)
    assert.match(reply.text, /atomic/)
    assert.equal(await Deno.readTextFile(`${server.root}/a.txt`), "old content")
    assert.deepEqual(temporaries(server), [])
  })
})

Deno.test("with atomicUploads, STOU stores under its new name and APPE appends in place", async () => {
  await withLoggedIn({ atomicUploads: true }, async (server, client) => {
    let conn = await client.passive()
    await client.send("STOU")
    const preliminary = await client.readReply()
    assert.equal(preliminary.code, 150)
    const name = /^FILE: (.+)$/.exec(preliminary.text)![1]
    await writeAllAndClose(conn, encoder.encode("unique"))
    assert.equal((await client.readReply()).code, 226)
    assert.equal(await Deno.readTextFile(`${server.root}/${name}`), "unique")

    conn = await client.passive()
    await client.send(`APPE ${name}`)
    assert.equal((await client.readReply()).code, 150)
    await writeAllAndClose(conn, encoder.encode("+more"))
    assert.equal((await client.readReply()).code, 226)
    conn = await client.passive()
    await client.send(`RETR ${name}`)
    assert.equal((await client.readReply()).code, 150)
    assert.equal(decoder.decode(await readAll(conn)), "unique+more")
    assert.equal((await client.readReply()).code, 226)
    assert.deepEqual(temporaries(server), [])
  })
})

Deno.test("with atomicUploads, STOR onto a directory replies 550 before any data is sent", async () => {
  await withLoggedIn({ atomicUploads: true }, async (server, client) => {
    await Deno.mkdir(`${server.root}/dir`)
    const conn = await client.passive()
    const reply = await client.command("STOR dir")
    conn.close()
    assert.equal(reply.code, 550)
    assert.deepEqual(temporaries(server), [])
  })
})

Deno.test("with atomicUploads, a server shut down mid-STOR removes the temporary file", async () => {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-atomic-" }))
  const server = await startServer({ atomicUploads: true, root })
  try {
    const client = await loggedIn(server)
    const conn = await client.passive()
    await client.send("STOR cut.bin")
    assert.equal((await client.readReply()).code, 150)
    await conn.write(new Uint8Array(65536))
    await temporaryWith(server, 65536)
    await server.close()
    client.close()
    conn.close()
    assert.deepEqual(temporaries(server), [])
    await assert.rejects(Deno.stat(`${root}/cut.bin`), Deno.errors.NotFound)
  } finally {
    await server.close()
    await Deno.remove(root, { recursive: true })
  }
})
