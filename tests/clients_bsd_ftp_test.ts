/**
 * The BSD `ftp` command as Debian ships it twice: inetutils-ftp (GNU) and tnftp (NetBSD's, the
 * `ftp` alternative on many systems). Each is driven through its standard input, as a user types
 * it: login, `ls`, `get`, `put`, `mkdir`, `rename`, `delete`, and Ctrl-C during a large `get`.
 *
 * On SIGINT during a `get` both clients send `IAC IP IAC` with the last IAC as TCP urgent data,
 * then `DM ABOR`; they then wait (up to 10 s) for the control or the data connection, read the
 * data connection to its end, and read two replies. A server that does not see ABOR at once keeps
 * sending the file, so the client hangs until the whole file has gone by.
 */
import assert from "node:assert/strict"
import { fileHash, installed, LARGE, randomFile, runClient, withTempDir } from "./clients.ts"
import { sparseFile, startServer, type TestServer } from "./helpers.ts"

const CLIENTS = [
  { binary: "inetutils-ftp", debianPackage: "inetutils-ftp" },
  { binary: "tnftp", debianPackage: "tnftp" },
] as const

const withServer = async (options: Parameters<typeof startServer>[0], f: (server: TestServer) => Promise<void>) => {
  const server = await startServer(options)
  try {
    await f(server)
  } finally {
    await server.close()
  }
}

for (const { binary, debianPackage } of CLIENTS) {
  const ignore = !installed(binary, debianPackage)

  Deno.test({
    name: `${binary}: login, ls, get and put (both data modes), mkdir, rename and delete, byte for byte`,
    ignore,
    fn: () =>
      withServer({ debug: true }, (server) =>
        withTempDir(async (local) => {
          const remoteHash = await randomFile(`${server.root}/remote.bin`, LARGE)
          const uploadHash = await randomFile(`${local}/upload.bin`, LARGE)
          await Deno.writeTextFile(`${server.root}/doomed.txt`, "delete me\n")
          const script = [
            "user user pass",
            "binary",
            "ls",
            `get remote.bin ${local}/got-1.bin`,
            "passive", // toggles the data connection mode: inetutils starts active (PORT), tnftp passive (EPSV)
            `get remote.bin ${local}/got-2.bin`,
            `put ${local}/upload.bin uploaded.bin`,
            "mkdir newdir",
            "rename uploaded.bin moved.bin",
            "delete doomed.txt",
            "quit",
          ].join("\n") + "\n"
          const run = await runClient(binary, ["-n", "-v", "127.0.0.1", String(server.port)], { input: script })
          const output = run.stdout + run.stderr
          assert.equal(run.code, 0, output)
          assert.match(output, /^230 /m, output)
          assert.match(output, /remote\.bin\r?\n/, "ls lists the files")
          assert.match(output, /doomed\.txt/, "ls lists the files")
          assert.equal(await fileHash(`${local}/got-1.bin`), remoteHash)
          assert.equal(await fileHash(`${local}/got-2.bin`), remoteHash)
          assert.equal(await fileHash(`${server.root}/moved.bin`), uploadHash)
          assert.ok((await Deno.stat(`${server.root}/newdir`)).isDirectory)
          await assert.rejects(Deno.stat(`${server.root}/uploaded.bin`), Deno.errors.NotFound)
          await assert.rejects(Deno.stat(`${server.root}/doomed.txt`), Deno.errors.NotFound)
          assert.doesNotMatch(output, /^5\d\d /m, "no command was refused")
          const commands = server.logs.map((line) => / <- (\w+)/.exec(line)?.[1])
          assert.ok(commands.includes("PORT") || commands.includes("EPRT"), "an active transfer")
          assert.ok(commands.includes("PASV") || commands.includes("EPSV"), "a passive transfer")
        })),
  })

  Deno.test({
    name: `${binary}: Ctrl-C during a large get gets 426 and 226 within 1 s, and the session goes on`,
    ignore,
    fn: () =>
      // A slow download (1 MiB/s) that is sure to be running when the signal comes, at no CPU cost.
      withServer({ writeLimit: 1 << 20 }, (server) =>
        withTempDir(async (local) => {
          await sparseFile(`${server.root}/huge.bin`, 1 << 30)
          await Deno.writeTextFile(`${server.root}/after.txt`, "the session goes on\n")
          const client = interactive(binary, ["-n", "-v", "127.0.0.1", String(server.port)])
          try {
            client.send("user user pass\nbinary\n")
            await client.waitFor(/^200 Type set/m)
            client.send(`get huge.bin ${local}/huge.bin\n`)
            await client.waitFor(/^150 /m)
            await client.waitFor(() => Deno.stat(`${local}/huge.bin`).then((s) => s.size > 0, () => false))
            const signalled = performance.now()
            client.signal("SIGINT")
            const aborted = await client.waitFor(/^426 [^]*^226 /m)
            const elapsed = aborted - signalled
            assert.ok(elapsed < 1000, `426/226 came ${elapsed.toFixed(0)} ms after SIGINT`)
            assert.match(client.output(), /^426 Transfer aborted via ABOR\.\r?\n[^]*^226 ABOR command successful\./m)
            client.send(`get after.txt ${local}/after.txt\npwd\n`)
            // inetutils-ftp prints the 257 reply, tnftp its own line.
            await client.waitFor(/^(257 "\/"|Remote directory: \/$)/m)
            assert.equal(await Deno.readTextFile(`${local}/after.txt`), "the session goes on\n")
            client.send("quit\n")
            await client.waitFor(/^221 /m)
            assert.equal(await client.exit(), 0)
            assert.doesNotMatch(client.output(), /^500 /m, client.output())
          } finally {
            await client.kill()
          }
        })),
  })
}

/** A client whose output is read as it comes: commands are typed into it one batch at a time. */
const interactive = (program: string, args: ReadonlyArray<string>) => {
  const child = new Deno.Command(program, {
    args: [...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn()
  const writer = child.stdin.getWriter()
  let output = ""
  let changed = () => {}
  const read = async (stream: ReadableStream<Uint8Array>) => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      output += text
      changed()
    }
  }
  const reading = Promise.all([read(child.stdout), read(child.stderr)])
  return {
    output: () => output,
    send: (text: string) => void writer.write(new TextEncoder().encode(text)).catch(() => undefined),
    signal: (signal: Deno.Signal) => child.kill(signal),
    /** When `what` (output matching it, or a condition) first held, by `performance.now()`; fails after 10 s. */
    waitFor: async (what: RegExp | (() => Promise<boolean>), timeoutMs = 10_000): Promise<number> => {
      const deadline = performance.now() + timeoutMs
      for (;;) {
        if (what instanceof RegExp ? what.test(output) : await what()) return performance.now()
        if (performance.now() > deadline) throw new Error(`no ${what} within ${timeoutMs} ms:\n${output}`)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 10)
          changed = () => {
            clearTimeout(timer)
            resolve()
          }
        })
      }
    },
    exit: async () => {
      await writer.close().catch(() => undefined)
      return (await child.status).code
    },
    kill: async () => {
      try {
        child.kill("SIGKILL")
      } catch {
        // Exited already.
      }
      await writer.close().catch(() => undefined)
      await Promise.all([child.status, reading])
    },
  }
}
