/**
 * `MemoryFilesystem` seen through whole FTP sessions on the in-memory network: no socket and no
 * disk. Files are byte-exact, uploads are stored only when complete, the size cap answers 552 with
 * nothing half-stored, and directories rename, append and resume as on a disk.
 */
import assert from "node:assert/strict"
import { makeMemoryFilesystem } from "../src/fs/memory.ts"
import {
  closeQuietly,
  loggedIn,
  randomBytes,
  type RawClient,
  receive,
  type Reply,
  sha256,
  startServer,
  writeAllAndClose,
} from "./helpers.ts"

const MiB = 1 << 20
const encoder = new TextEncoder()

const withMemory = async (
  f: (raw: RawClient) => Promise<void>,
  options: { maxBytes?: number } = {},
) => {
  const server = await startServer({
    filesystem: makeMemoryFilesystem(options),
    root: "memory:/",
    localHomes: false,
    inMemory: true,
  })
  const raw = await loggedIn(server)
  try {
    await f(raw)
  } finally {
    raw.close()
    await server.close()
  }
}

const store = async (raw: RawClient, command: string, data: Uint8Array): Promise<Reply[]> => {
  const conn = await raw.passiveData()
  try {
    const first = await raw.command(command)
    if (first.code !== 150) return [first]
    await writeAllAndClose(conn, data)
    return [first, await raw.readReply()]
  } finally {
    closeQuietly(conn)
  }
}

const retrieve = async (raw: RawClient, name: string): Promise<Uint8Array> => {
  const conn = await raw.passiveData()
  try {
    assert.equal((await raw.command(`RETR ${name}`)).code, 150)
    const chunks: Uint8Array[] = []
    const buffer = new Uint8Array(MiB)
    for (;;) {
      const n = await conn.read(buffer)
      if (n === null) break
      chunks.push(buffer.slice(0, n))
    }
    assert.equal((await raw.readReply()).code, 226)
    const data = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0))
    let offset = 0
    for (const chunk of chunks) {
      data.set(chunk, offset)
      offset += chunk.length
    }
    return data
  } finally {
    closeQuietly(conn)
  }
}

const codes = (replies: ReadonlyArray<Reply>) => replies.map((r) => r.code)

Deno.test("memory: STOR then RETR are byte-exact for 0 B, 1 B, 5 MiB + 1 and 100 MiB", () =>
  withMemory(async (raw) => {
    for (const size of [0, 1, 5 * MiB + 1, 100 * MiB]) {
      const data = randomBytes(size)
      assert.deepEqual(codes(await store(raw, `STOR f${size}`, data)), [150, 226])
      assert.equal((await raw.command(`SIZE f${size}`)).text, String(size))
      assert.equal(await sha256(await retrieve(raw, `f${size}`)), await sha256(data), `${size} bytes`)
    }
  }))

Deno.test("memory: an upload over the size cap gets 552 and stores nothing; the file it would replace stays", () =>
  withMemory(async (raw) => {
    assert.deepEqual(codes(await store(raw, "STOR a.bin", randomBytes(600_000))), [150, 226])
    const replies = await store(raw, "STOR b.bin", randomBytes(600_000))
    assert.deepEqual(codes(replies), [150, 552])
    assert.match(replies[1].text, /Storage allocation exceeded/)
    assert.equal((await raw.command("SIZE b.bin")).code, 550)
    const kept = randomBytes(1000)
    assert.deepEqual(codes(await store(raw, "STOR c.bin", kept)), [150, 226])
    assert.deepEqual(codes(await store(raw, "STOR c.bin", randomBytes(500_000))), [150, 552])
    assert.equal(await sha256(await retrieve(raw, "c.bin")), await sha256(kept))
    assert.equal((await raw.command("DELE a.bin")).code, 250)
    assert.deepEqual(codes(await store(raw, "STOR b.bin", randomBytes(600_000))), [150, 226], "space freed by DELE")
  }, { maxBytes: MiB }))

Deno.test("memory: ABOR mid-upload and a data connection that never comes change nothing", async () => {
  const server = await startServer({
    filesystem: makeMemoryFilesystem(),
    root: "memory:/",
    localHomes: false,
    inMemory: true,
    dataTimeout: 1,
  })
  const raw = await loggedIn(server)
  try {
    assert.deepEqual(codes(await store(raw, "STOR a.txt", encoder.encode("old"))), [150, 226])
    const conn = await raw.passiveData()
    assert.equal((await raw.command("STOR a.txt")).code, 150)
    await conn.write(randomBytes(3 * MiB))
    await raw.send("ABOR")
    assert.equal((await raw.readReply()).code, 426)
    assert.equal((await raw.readReply()).code, 226)
    closeQuietly(conn)
    assert.deepEqual(await receive(raw, "RETR a.txt"), { codes: [150, 226], data: "old" })
    assert.equal((await raw.command("EPSV")).code, 229)
    assert.equal((await raw.command("STOR a.txt")).code, 150)
    assert.equal((await raw.readReply()).code, 425)
    assert.deepEqual(await receive(raw, "RETR a.txt"), { codes: [150, 226], data: "old" })
    assert.equal((await raw.command("EPSV")).code, 229)
    assert.equal((await raw.command("STOR new.txt")).code, 150)
    assert.equal((await raw.readReply()).code, 425)
    assert.equal((await raw.command("SIZE new.txt")).code, 550)
  } finally {
    raw.close()
    await server.close()
  }
})

Deno.test("memory: APPE, REST+STOR (resume) and REST+RETR work as on a disk", () =>
  withMemory(async (raw) => {
    await store(raw, "STOR a.txt", encoder.encode("hello"))
    assert.deepEqual(codes(await store(raw, "APPE a.txt", encoder.encode(" world"))), [150, 226])
    assert.deepEqual(await receive(raw, "RETR a.txt"), { codes: [150, 226], data: "hello world" })
    assert.equal((await raw.command("REST 6")).code, 350)
    assert.deepEqual(codes(await store(raw, "STOR a.txt", encoder.encode("W"))), [150, 226])
    assert.deepEqual(await receive(raw, "RETR a.txt"), { codes: [150, 226], data: "hello World" })
    assert.equal((await raw.command("REST 6")).code, 350)
    assert.deepEqual(await receive(raw, "RETR a.txt"), { codes: [150, 226], data: "World" })
    assert.equal((await raw.command("REST 99")).code, 350)
    assert.deepEqual(codes(await store(raw, "STOR a.txt", encoder.encode("x"))), [554])
  }))

Deno.test("memory: STOU never replaces, directories rename with their contents, RMD only when empty", () =>
  withMemory(async (raw) => {
    const stou = await store(raw, "STOU report", encoder.encode("unique"))
    assert.deepEqual(codes(stou), [150, 226])
    const name = stou[0].text.replace("FILE: ", "")
    assert.deepEqual(await receive(raw, `RETR ${name}`), { codes: [150, 226], data: "unique" })
    assert.equal((await raw.command("MKD a")).code, 257)
    assert.equal((await raw.command("MKD a/b")).code, 257)
    await store(raw, "STOR a/b/f.txt", encoder.encode("f"))
    assert.equal((await raw.command("RNFR a")).code, 350)
    assert.equal((await raw.command("RNTO a/b/c")).code, 553, "not into itself")
    assert.equal((await raw.command("RNFR a")).code, 350)
    assert.equal((await raw.command("RNTO z")).code, 250)
    assert.deepEqual(await receive(raw, "RETR z/b/f.txt"), { codes: [150, 226], data: "f" })
    assert.equal((await raw.command("RMD z/b")).code, 550)
    assert.equal((await raw.command("DELE z/b/f.txt")).code, 250)
    assert.equal((await raw.command("RMD z/b")).code, 250)
    assert.equal((await raw.command("CWD a")).code, 550)
  }))

Deno.test("memory: a directory of 1000 entries lists whole, in batches", () =>
  withMemory(async (raw) => {
    assert.equal((await raw.command("MKD many")).code, 257)
    for (let i = 0; i < 1000; i++) assert.equal((await raw.command(`MKD many/d${i}`)).code, 257)
    const names = (await receive(raw, "NLST many")).data.split("\r\n").filter((l) => l !== "")
    assert.equal(names.length, 1000)
    assert.equal(new Set(names).size, 1000)
  }))

Deno.test("memory: with atomicUploads, STOR writes the target itself (its uploads appear only whole), no temporary file", async () => {
  const memory = makeMemoryFilesystem()
  const opened: string[] = []
  const server = await startServer({
    filesystem: {
      ...memory,
      openWrite: (path, options) => {
        opened.push(path.virtual)
        return memory.openWrite(path, options)
      },
    },
    root: "memory:/",
    localHomes: false,
    inMemory: true,
    atomicUploads: true,
  })
  const raw = await loggedIn(server)
  try {
    assert.deepEqual(codes(await store(raw, "STOR a.txt", encoder.encode("whole"))), [150, 226])
    assert.deepEqual(opened, ["/a.txt"])
    assert.deepEqual(await receive(raw, "RETR a.txt"), { codes: [150, 226], data: "whole" })
  } finally {
    raw.close()
    await server.close()
  }
})
