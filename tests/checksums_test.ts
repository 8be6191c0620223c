/**
 * Checksums: HASH (draft-bryan-ftpext-hash-02) and XCRC, XMD5, XSHA1, XSHA256, XSHA512, over the
 * in-memory network. Every sum is compared with an independent implementation: coreutils'
 * `md5sum`, `sha1sum`, `sha256sum`, `sha512sum`, and Python's `zlib.crc32`.
 */
import assert from "node:assert/strict"
import {
  loggedIn,
  RawClient,
  sparseFile,
  startServer,
  type TestServer,
  type TestServerOptions,
  within,
} from "./helpers.ts"

const decoder = new TextDecoder()

/** The sum of `path` (bytes `[start, end)`) by coreutils, or Python's zlib for CRC32. */
const reference = async (algorithm: string, path: string, start = 0, end?: number): Promise<string> => {
  const bytes = await Deno.readFile(path)
  const part = bytes.subarray(start, end)
  if (algorithm === "CRC32") {
    const out = await new Deno.Command("python3", {
      args: ["-c", "import sys, zlib; print('%08x' % zlib.crc32(sys.stdin.buffer.read()))"],
      stdin: "piped",
      stdout: "piped",
    }).spawn()
    const writer = out.stdin.getWriter()
    await writer.write(part)
    await writer.close()
    return decoder.decode((await out.output()).stdout).trim()
  }
  const tool = { MD5: "md5sum", "SHA-1": "sha1sum", "SHA-256": "sha256sum", "SHA-512": "sha512sum" }[algorithm]!
  const child = new Deno.Command(tool, { stdin: "piped", stdout: "piped" }).spawn()
  const writer = child.stdin.getWriter()
  await writer.write(part)
  await writer.close()
  return decoder.decode((await child.output()).stdout).split(" ")[0]
}

const withServer = async (
  options: TestServerOptions,
  f: (server: TestServer, raw: RawClient) => Promise<void>,
): Promise<void> => {
  const server = await startServer({ ...options, inMemory: true })
  try {
    const raw = await loggedIn(server)
    try {
      await f(server, raw)
    } finally {
      raw.close()
    }
  } finally {
    await server.close()
  }
}

/** 300,000 random bytes (not a multiple of any buffer size) in `name`; its path. */
const randomFile = async (server: TestServer, name = "data.bin"): Promise<string> => {
  const bytes = new Uint8Array(300_000)
  for (let i = 0; i < bytes.length; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536))
  const path = `${server.root}/${name}`
  await Deno.writeFile(path, bytes)
  return path
}

Deno.test("HASH replies 213 with the SHA-256 of the whole file, its range and the path as given", () =>
  withServer({}, async (server, raw) => {
    const path = await randomFile(server)
    const reply = await raw.command("HASH data.bin")
    assert.equal(reply.code, 213)
    assert.equal(reply.text, `SHA-256 0-300000 ${await reference("SHA-256", path)} data.bin`)
    // WinSCP quotes a path with a space.
    await Deno.copyFile(path, `${server.root}/a b.bin`)
    const quoted = await raw.command('HASH "a b.bin"')
    assert.equal(quoted.text, `SHA-256 0-300000 ${await reference("SHA-256", path)} a b.bin`)
    await Deno.writeFile(`${server.root}/empty`, new Uint8Array(0))
    assert.equal(
      (await raw.command("HASH /empty")).text,
      `SHA-256 0-0 ${await reference("SHA-256", `${server.root}/empty`)} /empty`,
    )
  }))

Deno.test("OPTS HASH tells the algorithm in use, changes it, and FEAT stars the one chosen", () =>
  withServer({}, async (server, raw) => {
    const path = await randomFile(server)
    assert.deepEqual([(await raw.command("OPTS HASH")).code, (await raw.command("OPTS HASH")).text], [200, "SHA-256"])
    assert.ok((await raw.command("FEAT")).lines.includes(" HASH SHA-256*;SHA-512;SHA-1;MD5;CRC32"))
    for (const algorithm of ["SHA-512", "SHA-1", "MD5", "CRC32", "SHA-256"]) {
      const chosen = await raw.command(`OPTS HASH ${algorithm.toLowerCase()}`)
      assert.deepEqual([chosen.code, chosen.text], [200, algorithm])
      const hash = await raw.command("HASH data.bin")
      assert.equal(hash.text, `${algorithm} 0-300000 ${await reference(algorithm, path)} data.bin`)
    }
    await raw.command("OPTS HASH MD5")
    assert.ok((await raw.command("FEAT")).lines.includes(" HASH SHA-256;SHA-512;SHA-1;MD5*;CRC32"))
    const unknown = await raw.command("OPTS HASH SHA-3")
    assert.deepEqual([unknown.code, unknown.text], [501, "Unknown algorithm, current selection not changed."])
    assert.equal((await raw.command("OPTS HASH")).text, "MD5")
  }))

Deno.test("REST before HASH hashes from that offset to the end, once; REST past the end replies 554", () =>
  withServer({}, async (server, raw) => {
    const path = await randomFile(server)
    assert.equal((await raw.command("REST 1000")).code, 350)
    const from = await raw.command("HASH data.bin")
    assert.equal(from.text, `SHA-256 1000-300000 ${await reference("SHA-256", path, 1000)} data.bin`)
    // REST applies to the next command only.
    assert.match((await raw.command("HASH data.bin")).text, /^SHA-256 0-300000 /)
    await raw.command("REST 300001")
    assert.equal((await raw.command("HASH data.bin")).code, 554)
  }))

Deno.test("XCRC, XMD5, XSHA1, XSHA256 and XSHA512 reply 250 with the sum of the file or of [start, end)", () =>
  withServer({}, async (server, raw) => {
    const path = await randomFile(server, "two words 12.bin")
    const commands = [["XCRC", "CRC32"], ["XMD5", "MD5"], ["XSHA1", "SHA-1"], ["XSHA256", "SHA-256"], [
      "XSHA512",
      "SHA-512",
    ]]
    for (const [command, algorithm] of commands) {
      assert.deepEqual(await raw.command(`${command} "two words 12.bin"`), {
        code: 250,
        text: await reference(algorithm, path),
        lines: [`250 ${await reference(algorithm, path)}`],
      })
      assert.equal((await raw.command(`${command} "two words 12.bin" 100`)).text, await reference(algorithm, path, 100))
      assert.equal(
        (await raw.command(`${command} "/two words 12.bin" 100 70000`)).text,
        await reference(algorithm, path, 100, 70000),
      )
    }
    // Unquoted, trailing numbers are offsets.
    await Deno.copyFile(path, `${server.root}/plain name.bin`)
    assert.equal((await raw.command("XMD5 plain name.bin 5 10")).text, await reference("MD5", path, 5, 10))
    assert.equal((await raw.command("XMD5 plain name.bin")).text, await reference("MD5", path))
  }))

Deno.test("the checksum commands refuse bad arguments (501), missing files (550), directories (HASH 553, the others 550)", () =>
  withServer({}, async (server, raw) => {
    await randomFile(server)
    await Deno.mkdir(`${server.root}/dir`)
    const cases: Array<[string, number]> = [
      ["HASH", 501],
      ["XMD5", 501],
      ['XMD5 "data.bin', 501],
      ['XMD5 "data.bin" x', 501],
      ['XMD5 "data.bin" 1 2 3', 501],
      ["XMD5 data.bin 10 5", 501],
      ["XMD5 data.bin 0 300001", 501],
      ["XMD5 data.bin 300001", 501],
      ["HASH missing.bin", 550],
      ["XSHA1 missing.bin", 550],
      ["HASH dir", 553],
      ["XCRC dir", 550],
      ["HASH ../../etc/passwd", 550],
    ]
    for (const [command, code] of cases) assert.equal((await raw.command(command)).code, code, command)
    assert.equal((await raw.command("XMD5 data.bin 300000")).text, "d41d8cd98f00b204e9800998ecf8427e")
    assert.equal((await raw.command("NOOP")).code, 200)
  }))

Deno.test("the checksum commands need the read permission: a user without 'r' gets 550", () =>
  withServer({
    users: (a, root) => a.addUser("user", "pass", root, { perm: "el" }),
  }, async (server, raw) => {
    await randomFile(server)
    for (const command of ["HASH data.bin", "XCRC data.bin", "XMD5 data.bin", "XSHA1 data.bin", "XSHA256 data.bin"]) {
      const reply = await raw.command(command)
      assert.deepEqual([reply.code, reply.text], [550, "Not enough privileges."], command)
    }
  }))

Deno.test("the checksum commands need a login", async () => {
  const server = await startServer({ inMemory: true })
  const raw = await RawClient.connectTo(server)
  try {
    for (const command of ["HASH a", "XCRC a", "XMD5 a", "XSHA1 a", "XSHA256 a", "XSHA512 a"]) {
      assert.equal((await raw.command(command)).code, 530, command)
    }
  } finally {
    raw.close()
    await server.close()
  }
})

Deno.test("hashCommands: false leaves HASH and the X commands out of FEAT and answers them 502", () =>
  withServer({ hashCommands: false }, async (server, raw) => {
    await randomFile(server)
    const feat = (await raw.command("FEAT")).lines
    assert.equal(feat.some((line) => /HASH|XCRC|XMD5|XSHA/.test(line)), false, feat.join("|"))
    for (const command of ["HASH data.bin", "XCRC data.bin", "XMD5 data.bin", "XSHA1 data.bin", "XSHA512 data.bin"]) {
      assert.equal((await raw.command(command)).code, 502, command)
    }
    assert.equal((await raw.command("OPTS HASH MD5")).code, 501)
  }))

/** Send `command`, then wait until STAT reports a checksum running. */
const startLongHash = async (raw: RawClient, command: string) => {
  await raw.send(command)
  for (let i = 0; i < 100; i++) {
    const stat = await raw.command("STAT")
    if (stat.lines.some((line) => line.includes("Computing"))) return stat
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  throw new Error("the checksum never showed in STAT")
}

Deno.test("ABOR during a long HASH replies 426 then 226 at once, and the session goes on", () =>
  withServer({}, async (server, raw) => {
    await sparseFile(`${server.root}/big`, 64 * 1024 ** 3)
    const stat = await startLongHash(raw, "HASH big")
    assert.ok(stat.lines.some((line) => /^ Computing SHA-256 of \/big: \d+ bytes in [\d.]+ seconds\.$/.test(line)))
    assert.equal((await raw.command("NOOP")).code, 200)
    const started = Date.now()
    await raw.send("ABOR")
    const aborted = await raw.readReply()
    assert.deepEqual([aborted.code, aborted.text], [426, "HASH aborted via ABOR."])
    assert.deepEqual([(await raw.readReply()).code], [226])
    assert.ok(Date.now() - started < 5000, `ABOR took ${Date.now() - started} ms`)
    await randomFile(server)
    assert.equal((await raw.command("XMD5 data.bin")).code, 250)
    assert.equal((await raw.command("PWD")).code, 257)
  }))

Deno.test("a command other than ABOR, STAT, NOOP and QUIT waits for the running checksum, keeping replies in order", () =>
  withServer({}, async (server, raw) => {
    const path = await randomFile(server)
    await raw.send("XSHA512 data.bin")
    await raw.send("PWD")
    assert.deepEqual(await raw.readReply(), {
      code: 250,
      text: await reference("SHA-512", path),
      lines: [`250 ${await reference("SHA-512", path)}`],
    })
    assert.equal((await raw.readReply()).code, 257)
  }))

Deno.test("maxHashes: a checksum over the server's cap gets 450, and a retry once one ends succeeds", async () => {
  const server = await startServer({ inMemory: true, maxHashes: 1 })
  const first = await loggedIn(server)
  const second = await loggedIn(server)
  try {
    await sparseFile(`${server.root}/big`, 64 * 1024 ** 3)
    await Deno.writeTextFile(`${server.root}/small`, "small")
    await startLongHash(first, "XSHA256 big")
    const refused = await second.command("XMD5 small")
    assert.deepEqual([refused.code, refused.text], [450, "Too many checksums are being computed: try again later."])
    await first.send("ABOR")
    assert.equal((await first.readReply()).code, 426)
    assert.equal((await first.readReply()).code, 226)
    assert.equal((await second.command("XMD5 small")).text, await reference("MD5", `${server.root}/small`))
    // A session that ends during its checksum gives its slot back too.
    await startLongHash(first, "HASH big")
    first.close()
    let retried = 450
    for (let i = 0; i < 100 && retried === 450; i++) {
      retried = (await second.command("XMD5 small")).code
      if (retried === 450) await new Promise((resolve) => setTimeout(resolve, 20))
    }
    assert.equal(retried, 250)
  } finally {
    first.close()
    second.close()
    await server.close()
  }
})

Deno.test("a checksum counts against the user's download bandwidth limit, like a RETR", () =>
  withServer({ userWriteLimit: 512 * 1024 }, async (server, raw) => {
    const bytes = new Uint8Array(768 * 1024)
    await Deno.writeFile(`${server.root}/limited`, bytes)
    const started = performance.now()
    const reply = await within(raw.command("XCRC limited"), 20_000)
    const elapsed = performance.now() - started
    assert.equal(reply?.text, await reference("CRC32", `${server.root}/limited`))
    // 768 KiB at 512 KiB/s, of which one bucket (a tenth of a second) is a free burst: >= 1.4 s.
    assert.ok(elapsed >= 1300, `took ${elapsed.toFixed(0)} ms`)
  }))
