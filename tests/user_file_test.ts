/**
 * Users from a file of hashed passwords (`UserFileAuthorizer`): every hash family, as the usual
 * tools make them; disabled and expired users; address rules; per-user limits; per-directory
 * overrides; the cost of an unknown user; password checks that never hold up other sessions.
 * Sessions run over the in-memory network unless a real socket is the point.
 */
import { Effect, Exit, Scope } from "effect"
import assert from "node:assert/strict"
import { argon2id } from "hash-wasm"
import { hashPassword } from "../src/auth/passwords.ts"
import { UserFileAuthorizer } from "../src/auth/user_file.ts"
import { AuthorizerError } from "../src/errors.ts"
import { FtpLogger } from "../src/log.ts"
import { RawClient, startServer, type TestServer, timed } from "./helpers.ts"

const decoder = new TextDecoder()

/** The standard output of a tool, or `null` (and a warning naming its package) when it is missing. */
const tool = (command: string, args: string[], pkg: string): string | null => {
  try {
    const out = new Deno.Command(command, { args, stdout: "piped", stderr: "piped" }).outputSync()
    if (out.code !== 0) throw new Error(decoder.decode(out.stderr))
    return decoder.decode(out.stdout).trim()
  } catch (error) {
    console.warn(`SKIPPED a hash made by ${command} (${pkg}): ${(error as Error).message}`)
    return null
  }
}

const PHC_SCRIPT = (kind: string) =>
  [
    "import base64, hashlib, sys",
    "pw, salt = sys.argv[1].encode(), b'0123456789abcdef'",
    "b = lambda x: base64.b64encode(x).decode().rstrip('=')",
    kind === "scrypt"
      ? "print('$scrypt$ln=14,r=8,p=1$' + b(salt) + '$' + b(hashlib.scrypt(pw, salt=salt, n=2**14, r=8, p=1, dklen=32)))"
      : "print('$pbkdf2-sha256$i=100000,l=32$' + b(salt) + '$' + b(hashlib.pbkdf2_hmac('sha256', pw, salt, 100000)))",
  ].join("\n")

/** Hashes of `password` made by the tools people use, by who made them. */
const madeByTools = async (password: string): Promise<Record<string, string>> => {
  const made: Record<string, string | null> = {
    "ftpd (argon2id)": await hashPassword(password),
    "htpasswd -B (bcrypt $2y$)": tool("htpasswd", ["-nbB", "u", password], "apache2-utils")?.split(":")[1] ?? null,
    "openssl passwd -5 (SHA-256 crypt)": tool("openssl", ["passwd", "-5", password], "openssl"),
    "openssl passwd -6 (SHA-512 crypt)": tool("openssl", ["passwd", "-6", password], "openssl"),
    "mkpasswd -m sha-512 -R 10000": tool("mkpasswd", ["-m", "sha-512", "-R", "10000", password], "whois"),
    "mkpasswd (yescrypt)": tool("mkpasswd", ["-m", "yescrypt", password], "whois"),
    "python hashlib.scrypt (PHC)": tool("python3", ["-c", PHC_SCRIPT("scrypt"), password], "python3"),
    "python hashlib.pbkdf2_hmac (PHC)": tool("python3", ["-c", PHC_SCRIPT("pbkdf2"), password], "python3"),
  }
  return Object.fromEntries(Object.entries(made).filter((entry): entry is [string, string] => entry[1] !== null))
}

interface Fixture {
  readonly dir: string
  readonly home: string
  readonly file: string
}

/** A temporary directory with `home/` and the user file `text(home)`; removed afterwards. */
const withFile = async (text: (home: string) => string, f: (fixture: Fixture) => Promise<void>) => {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-users-" }))
  try {
    const home = `${dir}/home`
    await Deno.mkdir(home)
    const file = `${dir}/users.toml`
    await Deno.writeTextFile(file, text(home))
    await f({ dir, home, file })
  } finally {
    await Deno.remove(dir, { recursive: true })
  }
}

/** A server over the in-memory network with the user file's authorizer. */
const withServer = async (
  text: (home: string) => string,
  f: (server: TestServer, fixture: Fixture) => Promise<void>,
  options: { readonly maxSessionsPerUser?: number; readonly userWriteLimit?: number } = {},
) =>
  await withFile(text, async (fixture) => {
    const server = await startServer({
      inMemory: true,
      root: fixture.home,
      authorizerLayer: UserFileAuthorizer.layer({ path: fixture.file }),
      ...options,
    })
    try {
      await f(server, fixture)
    } finally {
      await server.close()
    }
  })

const login = async (client: RawClient, user: string, password: string) => {
  assert.equal((await client.command(`USER ${user}`)).code, 331)
  return await client.command(`PASS ${password}`)
}

const toml = (value: string) => JSON.stringify(value)

const userTable = (name: string, hash: string, home: string, extra = "") =>
  `[users.${toml(name)}]\npassword = ${toml(hash)}\nhome = ${toml(home)}\n${extra}\n`

Deno.test("every hash family logs in with its password and is refused a wrong one", async () => {
  const hashes = await madeByTools("correct horse")
  const names = Object.keys(hashes)
  await withServer(
    (home) => names.map((made, i) => userTable(`u${i}`, hashes[made], home)).join("\n"),
    async (server) => {
      for (const [i, made] of names.entries()) {
        const client = await RawClient.connectTo(server)
        try {
          assert.equal((await login(client, `u${i}`, "correct horse")).code, 230, made)
          assert.equal((await client.command("REIN")).code, 220)
          const wrong = await login(client, `u${i}`, "correct horsf")
          assert.deepEqual([wrong.code, wrong.text], [530, "Authentication failed."], made)
        } finally {
          client.close()
        }
      }
    },
  )
})

/** The message of the error the file gets when the authorizer loads it. */
const loadError = async (text: (home: string) => string): Promise<string> => {
  let message = ""
  await withFile(text, async ({ file }) => {
    const error = await Effect.runPromise(
      Effect.flip(Effect.scoped(UserFileAuthorizer.make({ path: file }))).pipe(
        Effect.provide(FtpLogger.layer({ write: () => {} })),
      ),
    )
    assert.ok(error instanceof AuthorizerError)
    message = error.message
  })
  return message
}

Deno.test("a file with a plain-text password, an unreadable hash or a bad field is refused, naming the line and field", async () => {
  const bcrypt = "$2y$05$pWGrKe.urD/eFotwtrs5Be/XnE9wwvcmPXA8u5Uv8iIPt8wfejxGm"
  const cases: Array<[string, (home: string) => string, RegExp]> = [
    ["plain text", (home) => userTable("bob", "secret", home), /line 2: users\.bob\.password: a plain-text password/],
    [
      "htpasswd's default MD5",
      (home) => `# comment\n${userTable("bob", "$apr1$abc$defghijklmnopqrstuvwx", home)}`,
      /line 3: users\.bob\.password: not a hash ftpd reads/,
    ],
    [
      "truncated bcrypt",
      (home) => userTable("bob", bcrypt.slice(0, 40), home),
      /line 2: users\.bob\.password: not a hash/,
    ],
    ["TOML syntax", () => "[users.bob]\npassword = \n", /line 2: /],
    [
      "unknown key",
      (home) => userTable("bob", bcrypt, home, "pasword = 'x'"),
      /line 4: users\.bob\.pasword: unknown key/,
    ],
    [
      "permission letter",
      (home) => userTable("bob", bcrypt, home, 'perm = "elrz"'),
      /line 4: users\.bob\.perm: unknown permission letter 'z'/,
    ],
    [
      "address rule",
      (home) => userTable("bob", bcrypt, home, 'allow = ["192.0.2.0/33"]'),
      /line 4: users\.bob\.allow: '192\.0\.2\.0\/33': the prefix length must be 0 to 32/,
    ],
    [
      "limit",
      (home) => userTable("bob", bcrypt, home, 'write_limit = "fast"'),
      /line 4: users\.bob\.write_limit: must be bytes per second/,
    ],
    [
      "sessions",
      (home) => userTable("bob", bcrypt, home, "max_sessions = -1"),
      /users\.bob\.max_sessions: must be an integer/,
    ],
    ["relative home", () => userTable("bob", bcrypt, "srv/ftp"), /line 3: users\.bob\.home: must be an absolute path/],
    ["missing home", (home) => userTable("bob", bcrypt, `${home}/nowhere`), /users\.bob\.home: no such directory/],
    [
      "expiry",
      (home) => userTable("bob", bcrypt, home, 'expires = "soon"'),
      /line 4: users\.bob\.expires: must be a date/,
    ],
    ["anonymous password", (home) => `[anonymous]\nhome = ${toml(home)}\npassword = "x"\n`, /anonymous\.password/],
    ["unknown table", () => "[user.bob]\n", /line 1: user: unknown key/],
  ]
  for (const [what, text, expected] of cases) assert.match(await loadError(text), expected, what)
})

Deno.test("a disabled or expired user gets 530 with the right password, and the log says why; a later expiry logs in", async () => {
  const hash = await hashPassword("pw")
  const tomorrow = new Date(Date.now() + 86_400_000).toISOString().slice(0, 10)
  await withServer(
    (home) =>
      userTable("off", hash, home, "enabled = false") +
      userTable("old", hash, home, "expires = 2020-01-01") +
      userTable("later", hash, home, `expires = ${tomorrow}`),
    async (server) => {
      const client = await RawClient.connectTo(server)
      try {
        assert.deepEqual(
          [(await login(client, "off", "pw")).code, (await login(client, "old", "pw")).code],
          [530, 530],
        )
        assert.equal((await login(client, "later", "pw")).code, 230)
      } finally {
        client.close()
      }
      assert.ok(server.logs.some((line) => line.includes("USER 'off' failed login: account disabled.")))
      assert.ok(server.logs.some((line) => /USER 'old' failed login: account expired on 2020-01-01/.test(line)))
    },
  )
})

Deno.test("allowed client addresses: a listed address or range logs in, any other gets 530 (IPv4, IPv6, IPv4-mapped)", async () => {
  const hash = await hashPassword("pw")
  await withServer(
    (home) =>
      userTable("v4", hash, home, 'allow = ["192.0.2.0/24", "198.51.100.7"]') +
      userTable("v6", hash, home, 'allow = ["2001:db8::/32"]'),
    async (server) => {
      const attempt = async (from: string, user: string) => {
        const client = await RawClient.connectToFrom(server, from)
        try {
          return (await login(client, user, "pw")).code
        } finally {
          client.close()
        }
      }
      assert.equal(await attempt("192.0.2.200", "v4"), 230)
      assert.equal(await attempt("198.51.100.7", "v4"), 230)
      assert.equal(await attempt("::ffff:192.0.2.5", "v4"), 230)
      assert.equal(await attempt("198.51.100.8", "v4"), 530)
      assert.equal(await attempt("2001:db8::1", "v4"), 530)
      assert.equal(await attempt("2001:db8:ffff::9", "v6"), 230)
      assert.equal(await attempt("2001:db9::1", "v6"), 530)
      assert.equal(await attempt("192.0.2.200", "v6"), 530)
      assert.ok(server.logs.some((line) => line.includes("USER 'v4' failed login: address 198.51.100.8 not allowed.")))
    },
  )
})

Deno.test("a user's max_sessions takes the place of the server's limit, in both directions", async () => {
  const hash = await hashPassword("pw")
  await withServer(
    (home) => userTable("one", hash, home, "max_sessions = 1") + userTable("many", hash, home, "max_sessions = 0"),
    async (server) => {
      const clients: RawClient[] = []
      try {
        for (let i = 0; i < 3; i++) clients.push(await RawClient.connectTo(server))
        assert.equal((await login(clients[0], "one", "pw")).code, 230)
        const refused = await login(clients[1], "one", "pw")
        assert.deepEqual([refused.code, refused.text], [530, "Too many sessions for this user."])
        // The server allows 1 per user; "many" has no limit of its own.
        assert.equal((await login(clients[1], "many", "pw")).code, 230)
        assert.equal((await login(clients[2], "many", "pw")).code, 230)
      } finally {
        clients.forEach((client) => client.close())
      }
    },
    { maxSessionsPerUser: 1 },
  )
})

Deno.test("a user's write_limit takes the place of the server's per-user download limit", async () => {
  const hash = await hashPassword("pw")
  await withServer(
    (home) => userTable("slow", hash, home, "write_limit = 65536") + userTable("fast", hash, home, "write_limit = 0"),
    async (server, { home }) => {
      await Deno.writeFile(`${home}/f.bin`, new Uint8Array(192 * 1024))
      const download = async (user: string) => {
        const client = await RawClient.connectTo(server)
        try {
          assert.equal((await login(client, user, "pw")).code, 230)
          assert.equal((await client.command("TYPE I")).code, 200)
          const data = await client.passiveData()
          const started = performance.now()
          await client.send("RETR f.bin")
          let bytes = 0
          const buffer = new Uint8Array(65536)
          for (let n = await data.read(buffer); n !== null; n = await data.read(buffer)) bytes += n
          assert.equal(bytes, 192 * 1024)
          assert.equal((await client.readReply()).code, 150)
          assert.equal((await client.readReply()).code, 226)
          return (performance.now() - started) / 1000
        } finally {
          client.close()
        }
      }
      // 192 KiB at 64 KiB/s with a 6.4 KiB burst: at least 2.5 s; the server's own 1 KiB/s would take minutes.
      const slow = await download("slow")
      assert.ok(slow >= 2.5 && slow < 10, `slow user: ${slow} s`)
      assert.ok((await download("fast")) < 2, "a user with write_limit = 0 is not throttled")
    },
    { userWriteLimit: 1024 },
  )
})

Deno.test("per-directory overrides: a writable /incoming in a read-only home, recursive or not", async () => {
  const hash = await hashPassword("pw")
  await withFile(
    (home) =>
      userTable(
        "bob",
        hash,
        home,
        'overrides = [{ dir = "/incoming", perm = "elrw", recursive = true }, { dir = "/drop", perm = "elw" }]',
      ),
    async ({ home, file }) => {
      await Deno.mkdir(`${home}/incoming/sub`, { recursive: true })
      await Deno.mkdir(`${home}/drop/sub`, { recursive: true })
      const server = await startServer({
        inMemory: true,
        root: home,
        authorizerLayer: UserFileAuthorizer.layer({ path: file }),
      })
      const client = await RawClient.connectTo(server)
      try {
        assert.equal((await login(client, "bob", "pw")).code, 230)
        const stor = async (path: string) => {
          const data = await client.passiveData()
          await client.send(`STOR ${path}`)
          const first = await client.readReply()
          if (first.code !== 150) {
            data.close()
            return first.code
          }
          await data.write(new TextEncoder().encode("x"))
          data.close()
          return (await client.readReply()).code
        }
        assert.equal(await stor("/a.txt"), 550)
        assert.equal(await stor("/incoming/a.txt"), 226)
        assert.equal(await stor("/incoming/sub/a.txt"), 226)
        assert.equal(await stor("/drop/a.txt"), 226)
        assert.equal(await stor("/drop/sub/a.txt"), 550)
        assert.equal((await client.command("RETR /drop/a.txt")).code, 550)
      } finally {
        client.close()
        await server.close()
      }
    },
  )
})

Deno.test("the anonymous entry logs in with any password; without one, anonymous gets 530", async () => {
  const hash = await hashPassword("pw")
  await withServer(
    (home) => `[anonymous]\nhome = ${toml(home)}\nmsg_login = "Welcome, guest."\n`,
    async (server) => {
      const client = await RawClient.connectTo(server)
      try {
        const reply = await login(client, "anonymous", "guest@example.com")
        assert.deepEqual([reply.code, reply.text], [230, "Welcome, guest."])
        assert.equal((await client.command("STOR x")).code, 550)
      } finally {
        client.close()
      }
    },
  )
  await withServer((home) => userTable("bob", hash, home), async (server) => {
    const client = await RawClient.connectTo(server)
    try {
      assert.deepEqual(await login(client, "anonymous", "x").then((r) => [r.code, r.text]), [
        530,
        "Anonymous access not allowed.",
      ])
    } finally {
      client.close()
    }
  })
})

Deno.test("an unknown user costs the same time as a wrong password (medians within 20% over 50 tries each)", async () => {
  const hash = await hashPassword("pw")
  await withFile((home) => userTable("bob", hash, home) + userTable("carol", hash, home), async ({ file }) => {
    await Effect.runPromise(
      Effect.scoped(Effect.gen(function* () {
        const auth = yield* UserFileAuthorizer.make({ path: file, workers: 1 })
        const time = (user: string) =>
          Effect.gen(function* () {
            const started = performance.now()
            const result = yield* Effect.result(auth.authenticate(user, "wrong"))
            assert.equal(result._tag, "Failure")
            return performance.now() - started
          })
        const known: number[] = []
        const unknown: number[] = []
        // Interleaved, so that a change of load on the machine touches both alike.
        for (let i = 0; i < 50; i++) {
          known.push(yield* time("bob"))
          unknown.push(yield* time(`nobody${i}`))
        }
        const median = (values: number[]) => values.sort((a, b) => a - b)[values.length >> 1]
        const ratio = median(unknown) / median(known)
        assert.ok(ratio > 0.8 && ratio < 1.2, `unknown ${median(unknown)} ms, wrong password ${median(known)} ms`)
      })).pipe(Effect.provide(FtpLogger.layer({ write: () => {} }))),
    )
  })
})

Deno.test("password checks run off the event loop: another session's NOOP is answered at once while 6 slow logins verify", async () => {
  // About 0.3 s of argon2id each: run on the event loop, one of them would hold a NOOP that long.
  const slow = await argon2id({
    password: "pw",
    salt: crypto.getRandomValues(new Uint8Array(16)),
    parallelism: 1,
    iterations: 12,
    memorySize: 19456,
    hashLength: 32,
    outputType: "encoded",
  })
  await withServer((home) => userTable("bob", slow, home), async (server) => {
    const watcher = await RawClient.connectTo(server)
    const guests = await Promise.all(Array.from({ length: 6 }, () => RawClient.connectTo(server)))
    try {
      for (const guest of guests) assert.equal((await guest.command("USER bob")).code, 331)
      const started = performance.now()
      const logins = Promise.all(guests.map((guest) => guest.command("PASS pw")))
      let done = false
      logins.finally(() => (done = true))
      // Each round: a NOOP and a 10 ms pause. A round that took long means the event loop was held.
      const rounds: number[] = []
      let last = performance.now()
      while (!done) {
        assert.equal((await watcher.command("NOOP")).code, 200)
        await new Promise((resolve) => setTimeout(resolve, 10))
        const now = performance.now()
        rounds.push(now - last)
        last = now
      }
      assert.ok((await logins).every((reply) => reply.code === 230))
      const took = performance.now() - started
      assert.ok(took > 600, `the logins took ${took} ms: too fast to tell`)
      assert.ok(rounds.length >= 10, `only ${rounds.length} NOOP rounds in ${took} ms`)
      assert.ok(Math.max(...rounds) < 160, `NOOP rounds (ms): ${rounds.map(Math.round).join(" ")}`)
    } finally {
      watcher.close()
      guests.forEach((guest) => guest.close())
    }
  })
})

Deno.test("a watched file is reloaded when it changes: a new user logs in, a removed one no longer does", async () => {
  const hash = await hashPassword("pw")
  await withFile((home) => userTable("bob", hash, home), async ({ home, file }) => {
    const server = await startServer({
      inMemory: true,
      root: home,
      authorizerLayer: UserFileAuthorizer.layer({ path: file, watch: true }),
    })
    try {
      const tries = async (user: string) => {
        const client = await RawClient.connectTo(server)
        try {
          return (await login(client, user, "pw")).code
        } finally {
          client.close()
        }
      }
      assert.equal(await tries("carol"), 530)
      // As an editor or `ftpd users` does: a new file renamed over the old one.
      await Deno.writeTextFile(`${file}.new`, userTable("carol", hash, home))
      await Deno.rename(`${file}.new`, file)
      await timed(
        (async () => {
          while (!server.logs.some((line) => line.includes("reloaded: 1 users"))) {
            await new Promise((r) => setTimeout(r, 50))
          }
        })(),
        5000,
        "the reload",
      )
      assert.equal(await tries("carol"), 230)
      assert.equal(await tries("bob"), 530)
      // A second change is seen too (the watch follows the new file).
      await Deno.writeTextFile(file, userTable("bob", hash, home) + userTable("carol", hash, home))
      await timed(
        (async () => {
          while (!server.logs.some((line) => line.includes("reloaded: 2 users"))) {
            await new Promise((r) => setTimeout(r, 50))
          }
        })(),
        5000,
        "the second reload",
      )
      assert.equal(await tries("bob"), 230)
    } finally {
      await server.close()
    }
  })
})

Deno.test("the user file's authorizer stops its password workers when its scope closes", async () => {
  const hash = await hashPassword("pw")
  await withFile((home) => userTable("bob", hash, home), async ({ file }) => {
    const scope = Effect.runSync(Scope.make())
    const auth = await Effect.runPromise(
      UserFileAuthorizer.make({ path: file, workers: 2 }).pipe(
        Scope.provide(scope),
        Effect.provide(FtpLogger.layer({ write: () => {} })),
      ),
    )
    assert.equal((await Effect.runPromise(auth.authenticate("bob", "pw"))).user, "bob")
    await Effect.runPromise(Scope.close(scope, Exit.void))
    // A worker left running would keep this test's process alive and fail Deno's leak check.
  })
})

Deno.test("the README's example user file loads as written (with its homes made and a real hash)", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url))
  const example = /### The user file[\s\S]*?```toml\n([\s\S]*?)```/.exec(readme)![1]
  const hash = await hashPassword("pw")
  await withFile(
    (home) =>
      example.replaceAll("/srv/ftp/alice", home).replaceAll("/srv/ftp/pub", home).replace(
        /"\$argon2id\$v=19\$m=19456,t=2,p=1\$\.\.\."/,
        JSON.stringify(hash),
      ).replace("2027-01-01", "2999-01-01"),
    async ({ file }) => {
      await Effect.runPromise(
        Effect.scoped(Effect.gen(function* () {
          const auth = yield* UserFileAuthorizer.make({ path: file, workers: 1 })
          assert.deepEqual(auth.users(), ["alice", "anonymous"])
          const account = yield* auth.authenticate("alice", "pw", { remoteAddress: "192.0.2.9", host: null })
          assert.equal(account.msgLogin, "Welcome, Alice.")
          assert.deepEqual(account.limits, { maxSessions: 2, readLimit: 1 << 20, writeLimit: 512 << 10 })
        })).pipe(Effect.provide(FtpLogger.layer({ write: () => {} }))),
      )
    },
  )
})

Deno.test("the password workers import the versions deno.json pins", async () => {
  const { LIBRARY_SPECIFIERS } = await import("../src/auth/_password_work.ts")
  const imports = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url))).imports
  assert.equal(LIBRARY_SPECIFIERS.wasm, imports["hash-wasm"])
  assert.equal(LIBRARY_SPECIFIERS.unixcrypt, imports["unixcrypt"])
})
