/**
 * S3 failures seen through FTP: a service that stops in the middle of a transfer, and one that
 * answers 503 SlowDown (through a proxy in front of s3rver that injects it). Each fails the
 * transfer or command with 451 after the retries, the session goes on, and it works again once
 * the service is back.
 */
import assert from "node:assert/strict"
import { closeQuietly, loggedIn, randomBytes, receive, sha256, startServer, writeAllAndClose } from "./helpers.ts"
import { hasNode, startS3rver } from "./s3/s3rver.ts"

const MiB = 1 << 20
const encoder = new TextEncoder()

Deno.test({
  name: "an S3 service that stops mid-RETR and mid-STOR: 451, the session goes on, and works once it is back",
  ignore: !(await hasNode()),
  fn: async () => {
    const s3 = await startS3rver()
    const server = await startServer({
      filesystem: s3.filesystem({ partSize: 5 * MiB, retries: 2 }),
      root: `s3://${s3.bucket}`,
      localHomes: false,
    })
    const raw = await loggedIn(server)
    try {
      const data = randomBytes(48 * MiB)
      const up = await raw.passiveData()
      assert.equal((await raw.command("STOR big.bin")).code, 150)
      await writeAllAndClose(up, data)
      assert.equal((await raw.readReply()).code, 226)

      // RETR: the client takes a first chunk, then the service goes away.
      const down = await raw.passiveData()
      assert.equal((await raw.command("RETR big.bin")).code, 150)
      const buffer = new Uint8Array(MiB)
      assert.ok((await down.read(buffer)) !== null)
      await s3.stop()
      let received = 0
      for (;;) {
        const n = await down.read(buffer).catch(() => null)
        if (n === null) break
        received += n
      }
      closeQuietly(down)
      const retr = await raw.readReply()
      assert.deepEqual(
        [retr.code, retr.text],
        [451, "Transfer aborted: Storage unavailable: the connection to S3 broke while reading."],
      )
      assert.ok(received < data.length, "the transfer was cut")
      assert.equal((await raw.command("NOOP")).code, 200)

      // STOR: the first part goes through, the next ones find no service.
      await s3.start()
      const cut = await raw.passiveData()
      assert.equal((await raw.command("STOR cut.bin")).code, 150)
      await cut.write(randomBytes(6 * MiB))
      await s3.stop()
      await writeAllAndClose(cut, randomBytes(12 * MiB)).catch(() => undefined)
      closeQuietly(cut)
      const stor = await raw.readReply()
      assert.equal(stor.code, 451, stor.text)
      assert.match(stor.text, /unavailable/i)
      assert.equal((await raw.command("NOOP")).code, 200)
      assert.equal((await raw.command("SIZE big.bin")).code, 451, "HEAD fails too, with 451")

      // Back: the same session works again, and the cut upload left no object.
      await s3.start()
      const again = await raw.passiveData()
      assert.equal((await raw.command("RETR big.bin")).code, 150)
      const chunks: Uint8Array[] = []
      for (;;) {
        const n = await again.read(buffer)
        if (n === null) break
        chunks.push(buffer.slice(0, n))
      }
      closeQuietly(again)
      assert.equal((await raw.readReply()).code, 226)
      const whole = new Uint8Array(data.length)
      let offset = 0
      for (const chunk of chunks) {
        whole.set(chunk, offset)
        offset += chunk.length
      }
      assert.equal(await sha256(whole), await sha256(data))
      assert.equal((await raw.command("SIZE cut.bin")).code, 550)
    } finally {
      raw.close()
      await server.close()
      await s3.close()
    }
  },
})

/** A proxy in front of `target` that answers the next `slowDown` requests with 503 SlowDown. */
const faultyProxy = (target: string) => {
  const state = { slowDown: 0, refused: 0 }
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => undefined }, async (request) => {
    if (state.slowDown > 0) {
      state.slowDown--
      state.refused++
      await request.body?.cancel()
      return new Response(
        '<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>',
        { status: 503, headers: { "content-type": "application/xml" } },
      )
    }
    const url = new URL(request.url)
    const headers = new Headers(request.headers)
    headers.delete("host")
    const response = await fetch(`${target}${url.pathname}${url.search}`, {
      method: request.method,
      headers,
      body: request.body,
    })
    return new Response(response.body, { status: response.status, headers: response.headers })
  })
  return { state, endpoint: `http://127.0.0.1:${server.addr.port}`, close: () => server.shutdown() }
}

Deno.test({
  name: "503 SlowDown is retried with backoff; one that lasts fails the command with 451 and the session goes on",
  ignore: !(await hasNode()),
  fn: async () => {
    const s3 = await startS3rver()
    const proxy = faultyProxy(s3.endpoint)
    const server = await startServer({
      filesystem: s3.filesystem({ endpoint: proxy.endpoint, retries: 3 }),
      root: `s3://${s3.bucket}`,
      localHomes: false,
      inMemory: true,
    })
    const raw = await loggedIn(server)
    try {
      const up = await raw.passiveData()
      assert.equal((await raw.command("STOR a.txt")).code, 150)
      await writeAllAndClose(up, encoder.encode("hello"))
      assert.equal((await raw.readReply()).code, 226)

      proxy.state.slowDown = 3
      assert.deepEqual(await receive(raw, "RETR a.txt"), { codes: [150, 226], data: "hello" })
      assert.equal(proxy.state.refused, 3, "three 503s, then the fourth try went through")

      proxy.state.slowDown = 100
      const size = await raw.command("SIZE a.txt")
      assert.equal(size.code, 451)
      assert.match(size.text, /HTTP 503/, "a HEAD answer has no body to name the code")
      assert.equal(proxy.state.refused, 3 + 4, "the first try and 3 retries")
      proxy.state.slowDown = 100
      assert.deepEqual((await receive(raw, "RETR a.txt")).codes, [451])
      proxy.state.slowDown = 0
      assert.equal((await raw.command("SIZE a.txt")).text, "5")
    } finally {
      raw.close()
      await server.close()
      await proxy.close()
      await s3.close()
    }
  },
})
