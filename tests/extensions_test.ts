/**
 * HOST (RFC 7151), AVBL, CLNT, SITE UTIME and OPTS UTF8, over the in-memory network.
 */
import assert from "node:assert/strict"
import { Effect } from "effect"
import type { HookSession } from "../src/hooks.ts"
import { loggedIn, RawClient, startServer, type TestServer, type TestServerOptions } from "./helpers.ts"

const withServer = async (
  options: TestServerOptions,
  f: (server: TestServer, raw: RawClient) => Promise<void>,
  login = true,
): Promise<void> => {
  const server = await startServer({ ...options, inMemory: true })
  try {
    const raw = login ? await loggedIn(server) : await RawClient.connectTo(server)
    try {
      await f(server, raw)
    } finally {
      raw.close()
    }
  } finally {
    await server.close()
  }
}

// --- HOST ----------------------------------------------------------------------------------------

Deno.test("HOST before USER replies 220, and the authorizer and the hooks get the host, lower-cased", async () => {
  const logins: Array<string | null> = []
  const hosts: Array<string | null> = []
  const record = (session: HookSession) => Effect.sync(() => void hosts.push(session.host))
  await withServer({
    users: (a, root) => a.addUser("user", "pass", root),
    authorizer: (users) => ({
      authenticate: (user, password, context) => {
        logins.push(context?.host ?? null)
        return users.authenticate(user, password)
      },
      hasPerm: (user, perm, path) => users.hasPerm(user, perm, path),
    }),
    hooks: { onLogin: record, onLogout: record },
  }, async (_server, raw) => {
    assert.deepEqual(await raw.command("HOST FTP.Example.COM"), {
      code: 220,
      text: "Host ftp.example.com accepted.",
      lines: ["220 Host ftp.example.com accepted."],
    })
    await raw.login()
    assert.equal((await raw.command("QUIT")).code, 221)
  }, false)
  assert.deepEqual(logins, ["ftp.example.com"])
  for (let i = 0; i < 50 && hosts.length < 2; i++) await new Promise((resolve) => setTimeout(resolve, 10))
  assert.deepEqual(hosts, ["ftp.example.com", "ftp.example.com"])
})

Deno.test("HOST takes a domain name or an IPv4 or bracketed IPv6 literal; anything else is 501", () =>
  withServer({}, async (_server, raw) => {
    for (const host of ["localhost", "a-b.example.org.", "192.0.2.1", "[2001:db8::1]", "[::ffff:192.0.2.1]"]) {
      assert.equal((await raw.command(`HOST ${host}`)).code, 220, host)
    }
    const bad = ["bad_name", "-lead.example", "a..b", "[zz::1]", "[::1", "2001:db8::1", "a b", "x".repeat(64)]
    for (const host of bad) assert.equal((await raw.command(`HOST ${host}`)).code, 501, host)
    assert.equal((await raw.command("HOST")).code, 501)
    await raw.login()
  }, false))

Deno.test("HOST after USER or after login replies 503; REIN allows it again", () =>
  withServer({}, async (_server, raw) => {
    assert.equal((await raw.command("USER user")).code, 331)
    assert.equal((await raw.command("HOST example.com")).code, 503)
    assert.equal((await raw.command("PASS pass")).code, 230)
    const after = await raw.command("HOST example.com")
    assert.deepEqual([after.code, after.text], [503, "HOST not allowed after login: use REIN first."])
    assert.equal((await raw.command("PWD")).code, 257, "the session goes on")
    assert.equal((await raw.command("REIN")).code, 220)
    assert.equal((await raw.command("HOST example.com")).code, 220)
  }, false))

Deno.test("HOST of a host the authorizer does not serve replies 504, and the session may name another", () =>
  withServer({
    authorizer: (users) => ({
      authenticate: (user, password) => users.authenticate(user, password),
      hasPerm: (user, perm, path) => users.hasPerm(user, perm, path),
      servesHost: (host) => Effect.succeed(host === "served.example"),
    }),
  }, async (_server, raw) => {
    const refused = await raw.command("HOST other.example")
    assert.deepEqual([refused.code, refused.text], [504, "Unknown host."])
    assert.equal((await raw.command("HOST served.example")).code, 220)
    await raw.login()
  }, false))

// --- AVBL ----------------------------------------------------------------------------------------

/** The free bytes of the filesystem holding `path`, as `df` reports them. */
const dfAvailable = async (path: string): Promise<number> => {
  const out = await new Deno.Command("df", { args: ["-B1", "--output=avail", path], stdout: "piped" }).output()
  return Number(new TextDecoder().decode(out.stdout).trim().split("\n")[1])
}

for (const jail of ["descriptor", "path"] as const) {
  Deno.test(`AVBL replies 213 with the free bytes of the directory's filesystem (${jail} jail)`, () =>
    withServer({ jail }, async (server, raw) => {
      await Deno.mkdir(`${server.root}/sub`)
      for (const command of ["AVBL", "AVBL sub", "AVBL /sub"]) {
        const reply = await raw.command(command)
        assert.equal(reply.code, 213, command)
        assert.match(reply.text, /^\d+$/)
        // Other processes write meanwhile: within 64 MiB of what df says.
        const df = await dfAvailable(server.root)
        assert.ok(Math.abs(Number(reply.text) - df) < 64 << 20, `${reply.text} vs df ${df}`)
      }
    }))
}

Deno.test("AVBL of a file, a missing directory or a path outside the home replies 550", () =>
  withServer({}, async (server, raw) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "a")
    await Deno.symlink("/tmp", `${server.root}/out`)
    for (const command of ["AVBL a.txt", "AVBL missing", "AVBL out"]) {
      assert.equal((await raw.command(command)).code, 550, command)
    }
    assert.equal((await raw.command("AVBL")).code, 213)
  }))

Deno.test("AVBL needs the store permission ('w') on the directory: a read-only user gets 550", () =>
  withServer({ users: (a, root) => a.addUser("user", "pass", root, { perm: "elr" }) }, async (_server, raw) => {
    assert.deepEqual(await raw.command("AVBL"), {
      code: 550,
      text: "Not enough privileges.",
      lines: ["550 Not enough privileges."],
    })
  }))

Deno.test("AVBL where the filesystem can't tell replies 550, and FEAT leaves it out", async () => {
  const { LocalFilesystem } = await import("../src/fs/local.ts")
  const { available: _, ...blind } = LocalFilesystem.make()
  await withServer({ filesystem: blind }, async (_server, raw) => {
    const reply = await raw.command("AVBL")
    assert.deepEqual([reply.code, reply.text], [550, "Can't tell the free space of this storage."])
    assert.equal((await raw.command("FEAT")).lines.includes(" AVBL"), false)
  })
})

Deno.test("AVBL before login replies 530", () =>
  withServer({}, async (_server, raw) => {
    assert.equal((await raw.command("AVBL")).code, 530)
  }, false))

// --- CLNT ----------------------------------------------------------------------------------------

Deno.test("CLNT replies 200 before and after login and logs the client's name, escaped", () =>
  withServer({}, async (server, raw) => {
    assert.equal((await raw.command("CLNT FileZilla 3.66")).code, 200)
    await raw.login()
    assert.deepEqual(await raw.command("CLNT curl\x1b[31m"), { code: 200, text: "Noted.", lines: ["200 Noted."] })
    assert.equal((await raw.command("CLNT")).code, 501)
    assert.ok(server.logs.some((line) => line.endsWith("Client: FileZilla 3.66")), server.logs.join("\n"))
    assert.ok(server.logs.some((line) => line.endsWith("Client: curl\\x1b[31m")), server.logs.join("\n"))
  }, false))

// --- SITE UTIME ----------------------------------------------------------------------------------

const mtimeOf = async (path: string) => (await Deno.stat(path)).mtime?.toISOString()

Deno.test("SITE UTIME sets the modification time in its two-argument and both five-argument forms", () =>
  withServer({}, async (server, raw) => {
    await Deno.writeTextFile(`${server.root}/a b.txt`, "a")
    await Deno.mkdir(`${server.root}/dir`)
    const set = async (arg: string, path: string, iso: string) => {
      const reply = await raw.command(`SITE UTIME ${arg}`)
      assert.deepEqual([reply.code, reply.text], [200, "SITE UTIME command successful."], arg)
      assert.equal(await mtimeOf(`${server.root}/${path}`), iso, arg)
    }
    await set("20200102030405 a b.txt", "a b.txt", "2020-01-02T03:04:05.000Z")
    await set("202101020304 a b.txt", "a b.txt", "2021-01-02T03:04:00.000Z")
    await set("a b.txt 20220101000000 20220203040506 20220101000000 UTC", "a b.txt", "2022-02-03T04:05:06.000Z")
    await set("20230101000000 20230304050607 20230101000000 UTC /a b.txt", "a b.txt", "2023-03-04T05:06:07.000Z")
    await set("19991231235959 dir", "dir", "1999-12-31T23:59:59.000Z")
  }))

Deno.test("SITE UTIME with bad arguments replies 501, on a missing file 550", () =>
  withServer({}, async (server, raw) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "a")
    const before = await mtimeOf(`${server.root}/a.txt`)
    for (const arg of ["", "20200101000000", "a.txt", "2020010100 a.txt", "20201301000000 a.txt", "yesterday a.txt"]) {
      assert.equal((await raw.command(`SITE UTIME ${arg}`.trim())).code, 501, arg)
    }
    assert.equal((await raw.command("SITE UTIME 20200101000000 missing.txt")).code, 550)
    assert.equal(await mtimeOf(`${server.root}/a.txt`), before)
    assert.match((await raw.command("SITE HELP UTIME")).text, /^Syntax: SITE UTIME/)
  }))

Deno.test("SITE UTIME needs the 'T' permission (550), and a filesystem that keeps times (502)", async () => {
  await withServer(
    { users: (a, root) => a.addUser("user", "pass", root, { perm: "elradfmw" }) },
    async (server, raw) => {
      await Deno.writeTextFile(`${server.root}/a.txt`, "a")
      const before = await mtimeOf(`${server.root}/a.txt`)
      assert.equal((await raw.command("SITE UTIME 20200101000000 a.txt")).code, 550)
      assert.equal(await mtimeOf(`${server.root}/a.txt`), before)
    },
  )
  const { LocalFilesystem } = await import("../src/fs/local.ts")
  const timeless = { ...LocalFilesystem.make(), capabilities: { setMtime: false } }
  await withServer({ filesystem: timeless }, async (server, raw) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "a")
    assert.equal((await raw.command("SITE UTIME 20200101000000 a.txt")).code, 502)
  })
})

Deno.test("SITE UTIME before login replies 530", () =>
  withServer({}, async (_server, raw) => {
    assert.equal((await raw.command("SITE UTIME 20200101000000 a.txt")).code, 530)
  }, false))

// --- OPTS UTF8 -----------------------------------------------------------------------------------

Deno.test("OPTS UTF8 ON is 200 (always UTF-8), OFF is 504 (not available), anything else 501", () =>
  withServer({}, async (_server, raw) => {
    assert.deepEqual(await raw.command("OPTS UTF8 ON"), {
      code: 200,
      text: "Always in UTF8 mode.",
      lines: ["200 Always in UTF8 mode."],
    })
    assert.equal((await raw.command("OPTS UTF8")).code, 200)
    const off = await raw.command("OPTS UTF8 OFF")
    assert.deepEqual([off.code, off.text], [504, "UTF8 can't be turned off: paths are always UTF-8."])
    assert.equal((await raw.command("OPTS UTF-8 off")).code, 504)
    assert.equal((await raw.command("OPTS UTF8 MAYBE")).code, 501)
    assert.equal((await raw.command("FEAT")).lines.some((line) => /^ LANG/.test(line)), false, "no LANG")
  }, false))

// --- ABOR ----------------------------------------------------------------------------------------

Deno.test("ABOR sent right behind HOST, CLNT, AVBL or SITE UTIME: each is answered whole, then ABOR 225", () =>
  withServer({}, async (server, raw) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "a")
    await raw.send(new TextEncoder().encode("HOST example.com\r\nABOR\r\n"))
    assert.deepEqual([(await raw.readReply()).code, (await raw.readReply()).code], [220, 530], "ABOR needs a login")
    await raw.login()
    for (const [command, code] of [["CLNT x", 200], ["AVBL", 213], ["SITE UTIME 20200101000000 a.txt", 200]] as const) {
      await raw.send(new TextEncoder().encode(`${command}\r\nABOR\r\n`))
      assert.deepEqual([(await raw.readReply()).code, (await raw.readReply()).code], [code, 225], command)
    }
    assert.equal((await Deno.stat(`${server.root}/a.txt`)).mtime?.toISOString(), "2020-01-01T00:00:00.000Z")
  }, false))
