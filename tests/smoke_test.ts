import { Client } from "basic-ftp"
import { Readable, Writable } from "node:stream"
import assert from "node:assert/strict"
import { curl, RawClient, startServer } from "./helpers.ts"

Deno.test("basic-ftp logs in, uploads, lists and downloads", async () => {
  const server = await startServer()
  const client = new Client(10_000)
  try {
    await client.access({ host: "127.0.0.1", port: server.port, user: "user", password: "pass" })
    await client.uploadFrom(Readable.from([new TextEncoder().encode("hello ftp")]), "hello.txt")
    const list = await client.list()
    assert.deepEqual(list.map((f) => f.name), ["hello.txt"])
    const chunks: Uint8Array[] = []
    await client.downloadTo(new Writable({ write: (c, _e, cb) => (chunks.push(c), cb()) }), "hello.txt")
    assert.equal(new TextDecoder().decode(Buffer.concat(chunks)), "hello ftp")
  } finally {
    client.close()
    await server.close()
  }
})

Deno.test("curl downloads what the raw client sees in PWD's directory", async () => {
  const server = await startServer()
  try {
    await Deno.writeTextFile(`${server.root}/a.txt`, "abc")
    const out = await curl(`ftp://user:pass@127.0.0.1:${server.port}/a.txt`)
    assert.equal(new TextDecoder().decode(out.stdout), "abc")
    const raw = await RawClient.connect(server.port)
    assert.equal(raw.greeting.code, 220)
    await raw.login()
    assert.equal((await raw.command("PWD")).text, '"/" is the current directory.')
    assert.equal((await raw.command("QUIT")).code, 221)
    raw.close()
  } finally {
    await server.close()
  }
})
