/**
 * ABOR sent in the same packet as the transfer command it aborts (a client that pipelines): the
 * transfer still ends as any aborted transfer does. In-memory network.
 */
import assert from "node:assert/strict"
import { loggedIn, openFds, sparseFile, startServer } from "./helpers.ts"

Deno.test("RETR and ABOR in one packet: 150, 426, 226, and the transfer is over (STAT, descriptors)", async () => {
  const server = await startServer({ inMemory: true })
  const raw = await loggedIn(server)
  try {
    await sparseFile(`${server.root}/big`, 1 << 30)
    const before = openFds()
    for (let i = 0; i < 20; i++) {
      const conn = await raw.passiveData()
      await raw.send(new TextEncoder().encode("RETR big\r\nABOR\r\n"))
      assert.deepEqual([(await raw.readReply()).code, (await raw.readReply()).code, (await raw.readReply()).code], [
        150,
        426,
        226,
      ])
      conn.close()
      const stat = await raw.command("STAT")
      assert.ok(stat.lines.includes(" Data connection closed."), stat.lines.join("|"))
    }
    // Each file opened by a RETR is closed again.
    assert.ok(openFds() <= before + 2, `${openFds()} descriptors open, ${before} before`)
  } finally {
    raw.close()
    await server.close()
  }
})
