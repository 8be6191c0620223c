/**
 * The active-mode connect timeout: PORT to a client port whose listen queue is full (the kernel
 * drops the SYNs, as a firewall would) ends with 425 once the data timeout passes.
 */
import assert from "node:assert/strict"
import { RawClient, startServer } from "./helpers.ts"

/** A Python listener with a full accept queue: further connects to it hang instead of failing. */
const fullListener = async () => {
  const script = [
    "import socket, sys, time",
    "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(0)",
    "port = s.getsockname()[1]",
    // Fill the accept queue (backlog 0 holds one connection on Linux); never accept.
    "fill = []",
    "for _ in range(4):",
    "    c = socket.socket(); c.setblocking(False)",
    "    try: c.connect(('127.0.0.1', port))",
    "    except BlockingIOError: pass",
    "    fill.append(c)",
    "time.sleep(0.3)",
    "print(port, flush=True)",
    "time.sleep(15)",
  ].join("\n")
  const child = new Deno.Command("/usr/bin/python3", { args: ["-c", script], stdout: "piped", stderr: "null" }).spawn()
  const reader = child.stdout.getReader()
  const { value } = await reader.read()
  reader.releaseLock()
  const port = Number(new TextDecoder().decode(value).trim())
  return {
    port,
    close: async () => {
      child.kill("SIGKILL")
      await child.status
      await child.stdout.cancel().catch(() => undefined)
    },
  }
}

Deno.test("PORT to a client that never answers the connect replies 425 after the data timeout", async () => {
  const listener = await fullListener()
  const server = await startServer({ dataTimeout: 1 })
  const client = await RawClient.connect(server.port)
  try {
    await client.login()
    const started = performance.now()
    const reply = await client.command(`PORT 127,0,0,1,${listener.port >> 8},${listener.port & 255}`)
    const seconds = (performance.now() - started) / 1000
    assert.equal(reply.code, 425)
    assert.ok(seconds >= 0.9 && seconds < 5, `425 after ${seconds.toFixed(2)} s`)
    assert.ok(
      server.logs.some((line) =>
        line.includes(`Active data connection to 127.0.0.1:${listener.port} timed out after 1 s`)
      ),
      server.logs.join("\n"),
    )
    // The session goes on.
    assert.equal((await client.command("NOOP")).code, 200)
  } finally {
    client.close()
    await server.close()
    await listener.close()
  }
})
