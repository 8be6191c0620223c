/**
 * The control channel, command by command: every reply code (and the texts clients rely on) for
 * the commands of pyftpdlib's FTPHandler. The server runs on an in-memory network: each session,
 * its data connections included, runs with no socket at all.
 */
import assert from "node:assert/strict"
import {
  makeCertificate,
  RawClient,
  readAll,
  type Reply,
  startServer,
  type TestServer,
  type TestServerOptions,
} from "./helpers.ts"

/** A server and a client (logged in as "user" unless `login` is false), both closed after `f`. */
const withClient = async (
  f: (raw: RawClient, server: TestServer) => Promise<void>,
  options: TestServerOptions & { login?: boolean } = {},
): Promise<void> => {
  const server = await startServer({ ...options, inMemory: true })
  let raw: RawClient | undefined
  try {
    raw = await RawClient.connectTo(server)
    if (options.login ?? true) await raw.login()
    await f(raw, server)
  } finally {
    raw?.close()
    await server.close()
  }
}

/** Run a listing command over EPSV: its replies and the text received on the data connection. */
const listing = async (raw: RawClient, command: string): Promise<{ replies: Reply[]; data: string }> => {
  const conn = await raw.passiveData()
  try {
    const first = await raw.command(command)
    if (first.code !== 150) return { replies: [first], data: "" }
    const data = new TextDecoder().decode(await readAll(conn))
    return { replies: [first, await raw.readReply()], data }
  } finally {
    try {
      conn.close()
    } catch {
      // Closed when its stream ended.
    }
  }
}

const codes = (replies: ReadonlyArray<Reply>) => replies.map((r) => r.code)
const exists = async (path: string) => await Deno.lstat(path).then(() => true, () => false)

// --- login ---------------------------------------------------------------------------------------

Deno.test("the greeting is 220 with the banner", () =>
  withClient(async (raw) => {
    assert.equal(raw.greeting.code, 220)
    assert.equal(raw.greeting.text, "Hello tests.")
    assert.equal((await raw.command("NOOP")).code, 200)
  }, { login: false, banner: "Hello tests." }))

Deno.test("USER replies 331 and PASS with the right password replies 230", () =>
  withClient(async (raw) => {
    assert.deepEqual(await raw.command("USER user"), {
      code: 331,
      text: "Username ok, send password.",
      lines: ["331 Username ok, send password."],
    })
    const pass = await raw.command("PASS pass")
    assert.equal(pass.code, 230)
    assert.equal(pass.text, "Login successful.")
    assert.equal((await raw.command("PWD")).code, 257)
  }, { login: false }))

Deno.test("a password with spaces inside is taken whole", () =>
  withClient(async (raw) => {
    await raw.command("USER spaced")
    assert.equal((await raw.command("PASS correct horse  battery")).code, 230)
  }, { login: false, users: (a, root) => a.addUser("spaced", "correct horse  battery", root) }))

Deno.test("PASS without USER replies 503", () =>
  withClient(async (raw) => {
    assert.equal((await raw.command("PASS pass")).code, 503)
    assert.equal((await raw.command("PWD")).code, 530)
  }, { login: false }))

Deno.test("PASS after login replies 503 and keeps the session logged in", () =>
  withClient(async (raw) => {
    assert.equal((await raw.command("PASS pass")).code, 503)
    assert.equal((await raw.command("PWD")).code, 257)
  }))

Deno.test("a wrong password replies 530 only after authFailedTimeout, and the session stays usable", () =>
  withClient(async (raw) => {
    assert.equal((await raw.command("USER user")).code, 331)
    const started = performance.now()
    const reply = await raw.command("PASS wrong")
    const elapsed = performance.now() - started
    assert.equal(reply.code, 530)
    assert.equal(reply.text, "Authentication failed.")
    assert.ok(elapsed >= 290, `530 came after ${elapsed.toFixed(0)} ms, expected >= 300 ms`)
    assert.equal((await raw.command("PWD")).code, 530)
    assert.equal((await raw.command("NOOP")).code, 200)
    await raw.login()
  }, { login: false, authFailedTimeout: 0.3 }))

Deno.test("an unknown user gets the same 331 and 530 as a wrong password", () =>
  withClient(async (raw) => {
    assert.equal((await raw.command("USER nobody")).text, "Username ok, send password.")
    assert.deepEqual(await raw.command("PASS pass"), {
      code: 530,
      text: "Authentication failed.",
      lines: ["530 Authentication failed."],
    })
  }, { login: false }))

Deno.test("reaching maxLoginAttempts replies 530 and closes the connection", () =>
  withClient(async (raw) => {
    await raw.command("USER user")
    assert.equal((await raw.command("PASS bad1")).code, 530)
    await raw.command("USER user")
    const last = await raw.command("PASS bad2")
    assert.equal(last.code, 530)
    assert.match(last.text, /Too many failed logins/)
    assert.ok(await raw.closedByServer(), "server should close the control connection")
  }, { login: false, maxLoginAttempts: 2 }))

Deno.test("a second USER logs the first user out", () =>
  withClient(async (raw) => {
    assert.equal((await raw.command("USER anonymous")).code, 331)
    assert.equal((await raw.command("PWD")).code, 530)
    assert.equal((await raw.command("PASS whatever")).code, 230)
    const stat = await raw.command("STAT")
    assert.ok(stat.lines.some((l) => l.includes("Logged in as: anonymous")), stat.lines.join("|"))
  }))

Deno.test("anonymous logs in with any password, even an empty one", async () => {
  const server = await startServer({ inMemory: true })
  try {
    for (const password of ["guest@example.com", "x", ""]) {
      const raw = await RawClient.connectTo(server)
      try {
        assert.equal((await raw.command("USER anonymous")).code, 331)
        assert.equal((await raw.command(`PASS ${password}`.trim())).code, 230)
      } finally {
        raw.close()
      }
    }
  } finally {
    await server.close()
  }
})

Deno.test("QUIT replies 221 and the server closes the connection", () =>
  withClient(async (raw) => {
    assert.deepEqual(await raw.command("QUIT"), { code: 221, text: "Goodbye.", lines: ["221 Goodbye."] })
    assert.ok(await raw.closedByServer())
  }))

Deno.test("QUIT before login replies 221 too", () =>
  withClient(async (raw) => {
    assert.equal((await raw.command("QUIT")).code, 221)
    assert.ok(await raw.closedByServer())
  }, { login: false }))

Deno.test("REIN replies 220 and logs the user out; a new login works", () =>
  withClient(async (raw) => {
    await raw.command("MKD sub")
    await raw.command("CWD sub")
    assert.equal((await raw.command("REIN")).code, 220)
    assert.equal((await raw.command("PWD")).code, 530)
    await raw.login()
    assert.equal((await raw.command("PWD")).text, '"/" is the current directory.')
  }))

Deno.test("ACCT replies 502", () =>
  withClient(async (raw) => {
    assert.equal((await raw.command("ACCT acme")).code, 502)
  }))

// --- information ---------------------------------------------------------------------------------

Deno.test("SYST replies 215 UNIX Type: L8, before login too", () =>
  withClient(async (raw) => {
    assert.deepEqual(await raw.command("SYST"), { code: 215, text: "UNIX Type: L8", lines: ["215 UNIX Type: L8"] })
  }, { login: false }))

Deno.test("NOOP replies 200, before login too", () =>
  withClient(async (raw) => {
    assert.equal((await raw.command("NOOP")).code, 200)
  }, { login: false }))

const ISSUE_COMMANDS = ("USER PASS QUIT REIN ACCT SYST NOOP HELP FEAT OPTS STAT SITE PWD CWD CDUP MKD RMD DELE RNFR " +
  "RNTO SIZE MDTM MFMT TYPE MODE STRU ALLO REST PASV EPSV PORT EPRT RETR STOR APPE STOU ABOR LIST NLST MLSD MLST " +
  "XCUP XCWD XMKD XPWD XRMD").split(" ")

Deno.test("HELP replies 214 with every command of the command set", () =>
  withClient(async (raw) => {
    const reply = await raw.command("HELP")
    assert.equal(reply.code, 214)
    assert.ok(reply.lines.length > 3)
    const listed = new Set(reply.lines.slice(1, -1).flatMap((line) => line.trim().split(/\s+/)))
    for (const name of ISSUE_COMMANDS) assert.ok(listed.has(name), `HELP does not list ${name}`)
  }, { login: false }))

Deno.test("HELP <command> replies 214 with its syntax, any case", () =>
  withClient(async (raw) => {
    assert.deepEqual(await raw.command("HELP cwd"), {
      code: 214,
      text: "Syntax: CWD [<SP> dir-name] (change working directory).",
      lines: ["214 Syntax: CWD [<SP> dir-name] (change working directory)."],
    })
    assert.match((await raw.command("HELP MLSD")).text, /^Syntax: MLSD/)
  }))

const TLS_COMMANDS = ["AUTH", "PBSZ", "PROT", "CCC"]
const helpListing = async (raw: RawClient): Promise<Set<string>> =>
  new Set((await raw.command("HELP")).lines.slice(1, -1).flatMap((line) => line.trim().split(/\s+/)))

Deno.test("without TLS, HELP lists no FTPS command and HELP AUTH replies 501; AUTH itself still gets 502", () =>
  withClient(async (raw) => {
    const listed = await helpListing(raw)
    for (const name of TLS_COMMANDS) assert.ok(!listed.has(name), `HELP lists ${name} without TLS`)
    assert.ok(listed.has("FEAT") && listed.has("USER"))
    for (const name of TLS_COMMANDS) assert.equal((await raw.command(`HELP ${name}`)).code, 501, name)
    assert.equal((await raw.command("AUTH TLS")).code, 502)
  }, { login: false }))

Deno.test("with TLS configured, HELP lists AUTH, PBSZ, PROT and CCC, with their syntax", async () => {
  const cert = await makeCertificate()
  try {
    await withClient(async (raw) => {
      const listed = await helpListing(raw)
      for (const name of TLS_COMMANDS) assert.ok(listed.has(name), `HELP does not list ${name} with TLS`)
      assert.match((await raw.command("HELP auth")).text, /^Syntax: AUTH/)
    }, { login: false, tls: { cert: cert.cert, key: cert.key } })
  } finally {
    await cert.remove()
  }
})

Deno.test("HELP of an unknown command replies 501", () =>
  withClient(async (raw) => {
    assert.equal((await raw.command("HELP FROBNICATE")).code, 501)
  }))

Deno.test("FEAT replies 211 with exactly the supported features, each line starting with a space", () =>
  withClient(async (raw) => {
    assert.deepEqual((await raw.command("FEAT")).lines, [
      "211-Features supported:",
      " AVBL",
      " CLNT",
      " EPRT",
      " EPSV",
      " HASH SHA-256*;SHA-512;SHA-1;MD5;CRC32",
      " XCRC",
      " XMD5",
      " XSHA1",
      " XSHA256",
      " XSHA512",
      " HOST",
      " MDTM",
      " MFMT",
      " MLST type*;perm*;size*;modify*;unique*;unix.mode;unix.uid;unix.gid;unix.owner;unix.group;",
      " REST STREAM",
      " SIZE",
      " TVFS",
      " UTF8",
      "211 End FEAT.",
    ])
  }, { login: false }))

Deno.test("OPTS UTF8 ON replies 200", () =>
  withClient(async (raw) => {
    assert.equal((await raw.command("OPTS UTF8 ON")).code, 200)
    assert.equal((await raw.command("OPTS utf8 on")).code, 200)
  }, { login: false }))

Deno.test("OPTS UTF8 OFF replies 504 (paths are always UTF-8) and unknown OPTS reply 501", () =>
  withClient(async (raw) => {
    assert.equal((await raw.command("OPTS UTF8 OFF")).code, 504)
    assert.equal((await raw.command("OPTS FOO BAR")).code, 501)
  }))

Deno.test("OPTS MLST selects the facts that FEAT stars and MLSD and MLST report", () =>
  withClient(async (raw, server) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "abc")
    assert.deepEqual(await raw.command("OPTS MLST type;Size;nonsense;"), {
      code: 200,
      text: "MLST OPTS type;size;",
      lines: ["200 MLST OPTS type;size;"],
    })
    const feat = await raw.command("FEAT")
    assert.ok(
      feat.lines.includes(" MLST type*;perm;size*;modify;unique;unix.mode;unix.uid;unix.gid;unix.owner;unix.group;"),
    )
    const { data } = await listing(raw, "MLSD")
    assert.equal(data, "type=file;size=3; a.txt\r\n")
    assert.equal((await raw.command("MLST a.txt")).lines[1], " type=file;size=3; /a.txt")
  }))

Deno.test("OPTS MLST in one session leaves the facts of the other sessions as they were", () =>
  withClient(async (raw, server) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "abc")
    assert.equal((await raw.command("OPTS MLST type;")).text, "MLST OPTS type;")
    const other = await RawClient.connectTo(server)
    try {
      await other.login()
      const facts = (await other.command("MLST a.txt")).lines[1]
      assert.match(facts, /^ type=file;size=3;modify=\d{14};perm=[a-z]+;unique=/)
      assert.equal((await raw.command("MLST a.txt")).lines[1], " type=file; /a.txt")
    } finally {
      other.close()
    }
  }))

Deno.test("STAT without argument before login replies 211 with the login state", () =>
  withClient(async (raw) => {
    const reply = await raw.command("STAT")
    assert.equal(reply.code, 211)
    assert.equal(reply.lines[0], "211-FTP server status:")
    assert.ok(reply.lines.includes(" Waiting for username."), reply.lines.join("|"))
    assert.equal(reply.lines.at(-1), "211 End of status.")
  }, { login: false }))

Deno.test("STAT without argument after login replies 211 naming the user and the settings", () =>
  withClient(async (raw) => {
    await raw.command("TYPE I")
    const reply = await raw.command("STAT")
    assert.equal(reply.code, 211)
    assert.ok(reply.lines.includes(" Logged in as: user"), reply.lines.join("|"))
    assert.ok(reply.lines.some((l) => l.includes("TYPE: Binary")), reply.lines.join("|"))
  }))

Deno.test("STAT <path> lists the directory on the control channel with 213", () =>
  withClient(async (raw, server) => {
    await Deno.mkdir(`${server.root}/sub`)
    await Deno.writeTextFile(`${server.root}/sub/a.txt`, "abc")
    await Deno.mkdir(`${server.root}/sub/inner`)
    const reply = await raw.command("STAT sub")
    assert.equal(reply.code, 213)
    assert.equal(reply.lines[0], '213-Status of "/sub":')
    assert.equal(reply.lines.at(-1), "213 End of status.")
    const body = reply.lines.slice(1, -1).sort()
    assert.equal(body.length, 2)
    assert.match(body[0], /^ -rw-r--r-- +1 \S+ +\S+ +3 \w{3} [ \d]\d ( \d{4}|\d\d:\d\d) a\.txt$/)
    assert.match(body[1], /^ drwx[-r][-w][-x][-r][-w][-x] +\d+ .* inner$/)
  }))

Deno.test("STAT <file> shows that file's LIST line", () =>
  withClient(async (raw, server) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "abcd")
    const reply = await raw.command("STAT a.txt")
    assert.equal(reply.code, 213)
    assert.equal(reply.lines.length, 3)
    assert.match(reply.lines[1], / 4 \w{3} .* a\.txt$/)
  }))

Deno.test("STAT with a wildcard refuses globbing with 550", () =>
  withClient(async (raw, server) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "abc")
    assert.equal((await raw.command("STAT *")).code, 550)
    assert.equal((await raw.command("STAT *.txt")).code, 550)
  }))

Deno.test("STAT <path> before login replies 530", () =>
  withClient(async (raw) => {
    assert.equal((await raw.command("STAT /")).code, 530)
  }, { login: false }))

// --- directories and files -----------------------------------------------------------------------

Deno.test("PWD replies 257 with the quoted current directory", () =>
  withClient(async (raw) => {
    assert.deepEqual(await raw.command("PWD"), {
      code: 257,
      text: '"/" is the current directory.',
      lines: ['257 "/" is the current directory.'],
    })
  }))

Deno.test("CWD into a directory replies 250 and PWD follows it", () =>
  withClient(async (raw, server) => {
    await Deno.mkdir(`${server.root}/a/b`, { recursive: true })
    assert.equal((await raw.command("CWD a")).code, 250)
    assert.equal((await raw.command("CWD b")).code, 250)
    assert.equal((await raw.command("PWD")).text, '"/a/b" is the current directory.')
    assert.equal((await raw.command("CWD /a")).code, 250)
    assert.equal((await raw.command("PWD")).text, '"/a" is the current directory.')
  }))

Deno.test("CWD to a missing directory or to a file replies 550 and stays put", () =>
  withClient(async (raw, server) => {
    await Deno.writeTextFile(`${server.root}/f.txt`, "x")
    assert.equal((await raw.command("CWD missing")).code, 550)
    assert.equal((await raw.command("CWD f.txt")).code, 550)
    assert.equal((await raw.command("PWD")).text, '"/" is the current directory.')
  }))

Deno.test("CDUP replies 250 and goes to the parent; at the root it stays at /", () =>
  withClient(async (raw, server) => {
    await Deno.mkdir(`${server.root}/a/b`, { recursive: true })
    await raw.command("CWD a/b")
    assert.equal((await raw.command("CDUP")).code, 250)
    assert.equal((await raw.command("PWD")).text, '"/a" is the current directory.')
    await raw.command("CDUP")
    assert.equal((await raw.command("CDUP")).code, 250)
    assert.equal((await raw.command("PWD")).text, '"/" is the current directory.')
  }))

Deno.test("MKD replies 257 with the quoted path and creates the directory", () =>
  withClient(async (raw, server) => {
    assert.deepEqual(await raw.command("MKD new"), {
      code: 257,
      text: '"/new" directory created.',
      lines: ['257 "/new" directory created.'],
    })
    assert.ok((await Deno.stat(`${server.root}/new`)).isDirectory)
  }))

Deno.test("MKD of an existing name replies 550", () =>
  withClient(async (raw, server) => {
    await Deno.mkdir(`${server.root}/d`)
    assert.equal((await raw.command("MKD d")).code, 550)
  }))

Deno.test('MKD and PWD double a " in the 257 path', () =>
  withClient(async (raw, server) => {
    assert.equal((await raw.command('MKD a"b')).text, '"/a""b" directory created.')
    assert.ok(await exists(`${server.root}/a"b`))
    assert.equal((await raw.command('CWD a"b')).code, 250)
    assert.equal((await raw.command("PWD")).text, '"/a""b" is the current directory.')
  }))

Deno.test("MKD of a UTF-8 name creates it under that name, and LIST and NLST show it", () =>
  withClient(async (raw, server) => {
    const name = "ñandú 日本"
    assert.equal((await raw.command(`MKD ${name}`)).text, `"/${name}" directory created.`)
    assert.ok((await Deno.stat(`${server.root}/${name}`)).isDirectory)
    const list = await listing(raw, "LIST")
    assert.deepEqual(codes(list.replies), [150, 226])
    assert.match(list.data, new RegExp(`^d.* ${name}\\r\\n$`))
    assert.equal((await listing(raw, "NLST")).data, `${name}\r\n`)
    assert.equal((await raw.command(`CWD ${name}`)).code, 250)
    assert.equal((await raw.command("PWD")).text, `"/${name}" is the current directory.`)
  }))

Deno.test("RMD replies 250 and removes an empty directory", () =>
  withClient(async (raw, server) => {
    await Deno.mkdir(`${server.root}/d`)
    assert.equal((await raw.command("RMD d")).code, 250)
    assert.equal(await exists(`${server.root}/d`), false)
  }))

Deno.test("RMD of a non-empty directory, a file, a missing path or / replies 550 and removes nothing", () =>
  withClient(async (raw, server) => {
    await Deno.mkdir(`${server.root}/d`)
    await Deno.writeTextFile(`${server.root}/d/f`, "x")
    await Deno.writeTextFile(`${server.root}/f.txt`, "x")
    assert.equal((await raw.command("RMD d")).code, 550)
    assert.equal((await raw.command("RMD f.txt")).code, 550)
    assert.equal((await raw.command("RMD missing")).code, 550)
    assert.equal((await raw.command("RMD /")).code, 550)
    assert.ok(await exists(`${server.root}/d/f`))
    assert.ok(await exists(`${server.root}/f.txt`))
  }))

Deno.test("DELE replies 250 and removes the file", () =>
  withClient(async (raw, server) => {
    await Deno.writeTextFile(`${server.root}/f.txt`, "x")
    assert.equal((await raw.command("DELE f.txt")).code, 250)
    assert.equal(await exists(`${server.root}/f.txt`), false)
  }))

Deno.test("DELE of a directory or a missing file replies 550", () =>
  withClient(async (raw, server) => {
    await Deno.mkdir(`${server.root}/d`)
    assert.equal((await raw.command("DELE d")).code, 550)
    assert.equal((await raw.command("DELE missing")).code, 550)
    assert.ok(await exists(`${server.root}/d`))
  }))

Deno.test("RNFR replies 350 and RNTO 250, moving the file", () =>
  withClient(async (raw, server) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "content")
    await Deno.mkdir(`${server.root}/d`)
    assert.equal((await raw.command("RNFR a.txt")).code, 350)
    assert.equal((await raw.command("RNTO d/b.txt")).code, 250)
    assert.equal(await exists(`${server.root}/a.txt`), false)
    assert.equal(await Deno.readTextFile(`${server.root}/d/b.txt`), "content")
  }))

Deno.test("RNTO without RNFR replies 503 and renames nothing", () =>
  withClient(async (raw, server) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "x")
    assert.equal((await raw.command("RNTO b.txt")).code, 503)
    assert.equal(await exists(`${server.root}/b.txt`), false)
  }))

Deno.test("RNFR of a missing file replies 550 and a following RNTO 503", () =>
  withClient(async (raw) => {
    assert.equal((await raw.command("RNFR missing")).code, 550)
    assert.equal((await raw.command("RNTO other")).code, 503)
  }))

Deno.test("RNTO after a completed rename replies 503: RNFR is used once", () =>
  withClient(async (raw, server) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "x")
    await raw.command("RNFR a.txt")
    assert.equal((await raw.command("RNTO b.txt")).code, 250)
    assert.equal((await raw.command("RNTO c.txt")).code, 503)
    assert.ok(await exists(`${server.root}/b.txt`))
  }))

Deno.test("SIZE is refused with 550 in ASCII mode and replies 213 with the byte count in binary", () =>
  withClient(async (raw, server) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "one\ntwo\n")
    const ascii = await raw.command("SIZE a.txt")
    assert.equal(ascii.code, 550)
    assert.equal(ascii.text, "SIZE not allowed in ASCII mode.")
    await raw.command("TYPE I")
    assert.deepEqual(await raw.command("SIZE a.txt"), { code: 213, text: "8", lines: ["213 8"] })
  }))

Deno.test("SIZE of a directory or a missing file replies 550", () =>
  withClient(async (raw, server) => {
    await Deno.mkdir(`${server.root}/d`)
    await raw.command("TYPE I")
    assert.equal((await raw.command("SIZE d")).code, 550)
    assert.equal((await raw.command("SIZE missing")).code, 550)
  }))

Deno.test("MDTM replies 213 with the file's UTC modification time", () =>
  withClient(async (raw, server) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "x")
    await Deno.utime(`${server.root}/a.txt`, new Date(), new Date(Date.UTC(2020, 0, 2, 3, 4, 5)))
    assert.deepEqual(await raw.command("MDTM a.txt"), {
      code: 213,
      text: "20200102030405",
      lines: ["213 20200102030405"],
    })
    assert.equal((await raw.command("MDTM missing")).code, 550)
  }))

Deno.test("MFMT replies 213 and sets the file's modification time", () =>
  withClient(async (raw, server) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "x")
    assert.deepEqual(await raw.command("MFMT 20210304050607 a.txt"), {
      code: 213,
      text: "Modify=20210304050607; /a.txt.",
      lines: ["213 Modify=20210304050607; /a.txt."],
    })
    assert.equal((await Deno.stat(`${server.root}/a.txt`)).mtime?.toISOString(), "2021-03-04T05:06:07.000Z")
    assert.equal((await raw.command("MDTM a.txt")).text, "20210304050607")
  }))

Deno.test("MFMT with a bad time replies 501 and leaves the time alone", () =>
  withClient(async (raw, server) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "x")
    const before = (await Deno.stat(`${server.root}/a.txt`)).mtime?.getTime()
    for (const bad of ["MFMT 2021 a.txt", "MFMT 20211332000000 a.txt", "MFMT yesterday a.txt", "MFMT 20210304050607"]) {
      assert.equal((await raw.command(bad)).code, 501, bad)
    }
    assert.equal((await Deno.stat(`${server.root}/a.txt`)).mtime?.getTime(), before)
  }))

Deno.test("MFMT of a missing file replies 550", () =>
  withClient(async (raw) => {
    assert.equal((await raw.command("MFMT 20210304050607 missing")).code, 550)
  }))

// --- settings ------------------------------------------------------------------------------------

Deno.test("TYPE A, A N, I and L 8 reply 200 and switch between ASCII and binary", () =>
  withClient(async (raw, server) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "x")
    const expect = [["TYPE I", false], ["TYPE A", true], ["TYPE L 8", false], ["TYPE A N", true], ["type i", false]]
    for (const [command, ascii] of expect) {
      assert.equal((await raw.command(command as string)).code, 200, command as string)
      assert.equal((await raw.command("SIZE a.txt")).code, ascii ? 550 : 213, `SIZE after ${command}`)
    }
  }))

Deno.test("TYPE with an unsupported type replies 504", () =>
  withClient(async (raw) => {
    for (const bad of ["TYPE E", "TYPE X", "TYPE L 7", "TYPE A T"]) {
      assert.equal((await raw.command(bad)).code, 504, bad)
    }
  }))

Deno.test("MODE S replies 200, MODE B 504 and MODE Z 501", () =>
  withClient(async (raw) => {
    assert.equal((await raw.command("MODE S")).code, 200)
    assert.equal((await raw.command("MODE B")).code, 504)
    assert.equal((await raw.command("MODE Z")).code, 501)
  }))

Deno.test("STRU F replies 200, STRU P 504 and STRU X 501", () =>
  withClient(async (raw) => {
    assert.equal((await raw.command("STRU F")).code, 200)
    assert.equal((await raw.command("STRU P")).code, 504)
    assert.equal((await raw.command("STRU X")).code, 501)
  }))

Deno.test("ALLO replies 202", () =>
  withClient(async (raw) => {
    assert.equal((await raw.command("ALLO 1024")).code, 202)
  }))

Deno.test("REST replies 350 in binary mode, 501 for a bad offset and 501 in ASCII mode", () =>
  withClient(async (raw) => {
    assert.equal((await raw.command("REST 10")).code, 501)
    await raw.command("TYPE I")
    assert.equal((await raw.command("REST abc")).code, 501)
    assert.equal((await raw.command("REST -5")).code, 501)
    assert.deepEqual(await raw.command("REST 10"), {
      code: 350,
      text: "Restarting at position 10.",
      lines: ["350 Restarting at position 10."],
    })
  }))

// --- SITE ----------------------------------------------------------------------------------------

Deno.test("SITE CHMOD replies 200 and changes the file's mode", () =>
  withClient(async (raw, server) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "x")
    await Deno.chmod(`${server.root}/a.txt`, 0o644)
    assert.equal((await raw.command("SITE CHMOD 600 a.txt")).code, 200)
    assert.equal((await Deno.stat(`${server.root}/a.txt`)).mode! & 0o777, 0o600)
  }))

Deno.test("SITE CHMOD with a bad format replies 501 and changes nothing", () =>
  withClient(async (raw, server) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "x")
    await Deno.chmod(`${server.root}/a.txt`, 0o644)
    for (const bad of ["SITE CHMOD 999 a.txt", "SITE CHMOD a.txt", "SITE CHMOD rwx a.txt", "SITE CHMOD 755"]) {
      assert.equal((await raw.command(bad)).code, 501, bad)
    }
    assert.equal((await Deno.stat(`${server.root}/a.txt`)).mode! & 0o777, 0o644)
  }))

Deno.test("SITE CHMOD of a missing file replies 550", () =>
  withClient(async (raw) => {
    assert.equal((await raw.command("SITE CHMOD 755 missing")).code, 550)
  }))

Deno.test("SITE HELP replies 214 listing CHMOD and HELP, and SITE HELP CHMOD its syntax", () =>
  withClient(async (raw) => {
    const all = await raw.command("SITE HELP")
    assert.equal(all.code, 214)
    assert.ok(all.lines.includes(" CHMOD") && all.lines.includes(" HELP"), all.lines.join("|"))
    const one = await raw.command("SITE HELP chmod")
    assert.equal(one.code, 214)
    assert.match(one.text, /^Syntax: SITE CHMOD/)
    assert.equal((await raw.command("SITE HELP NOPE")).code, 501)
  }))

Deno.test("an unknown SITE command replies 500", () =>
  withClient(async (raw) => {
    assert.equal((await raw.command("SITE FROBNICATE x")).code, 500)
  }))

Deno.test("SITE CHMOD before login replies 530, SITE HELP works", () =>
  withClient(async (raw, server) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "x")
    await Deno.chmod(`${server.root}/a.txt`, 0o644)
    assert.equal((await raw.command("SITE CHMOD 600 a.txt")).code, 530)
    assert.equal((await Deno.stat(`${server.root}/a.txt`)).mode! & 0o777, 0o644)
    assert.equal((await raw.command("SITE HELP")).code, 214)
  }, { login: false }))

// --- aliases, login rule, argument rules, unknown commands ---------------------------------------

Deno.test("the RFC 1123 aliases XMKD XCWD XPWD XCUP XRMD act like MKD CWD PWD CDUP RMD", () =>
  withClient(async (raw, server) => {
    assert.equal((await raw.command("XMKD d")).text, '"/d" directory created.')
    assert.equal((await raw.command("XCWD d")).code, 250)
    assert.deepEqual(await raw.command("XPWD"), {
      code: 257,
      text: '"/d" is the current directory.',
      lines: ['257 "/d" is the current directory.'],
    })
    assert.equal((await raw.command("XCUP")).code, 250)
    assert.equal((await raw.command("XPWD")).text, '"/" is the current directory.')
    assert.equal((await raw.command("XRMD d")).code, 250)
    assert.equal(await exists(`${server.root}/d`), false)
  }))

Deno.test("commands that need a login reply 530 before it and change nothing", () =>
  withClient(async (raw, server) => {
    await Deno.writeTextFile(`${server.root}/f`, "x")
    const commands = [
      "PWD",
      "CWD /",
      "CDUP",
      "MKD x",
      "RMD x",
      "DELE f",
      "RNFR f",
      "RNTO x",
      "SIZE f",
      "MDTM f",
      "MFMT 20200101000000 f",
      "TYPE I",
      "MODE S",
      "STRU F",
      "ALLO 1",
      "REST 0",
      "PASV",
      "EPSV",
      "PORT 127,0,0,1,4,1",
      "EPRT |1|127.0.0.1|1025|",
      "RETR f",
      "STOR x",
      "APPE x",
      "STOU",
      "ABOR",
      "LIST",
      "NLST",
      "MLSD",
      "MLST f",
      "REIN",
      "XPWD",
      "XCWD /",
      "XCUP",
      "XMKD x",
      "XRMD x",
    ]
    for (const command of commands) assert.equal((await raw.command(command)).code, 530, command)
    assert.deepEqual([...Deno.readDirSync(server.root)].map((e) => e.name), ["f"])
    const ok = ["SYST", "NOOP", "HELP", "FEAT", "STAT", "OPTS UTF8 ON", "ACCT x"]
    for (const command of ok) assert.notEqual((await raw.command(command)).code, 530, command)
  }, { login: false }))

Deno.test("an unknown command replies 500 naming it", () =>
  withClient(async (raw) => {
    assert.deepEqual(await raw.command("FROB nicate"), {
      code: 500,
      text: 'Command "FROB" not understood.',
      lines: ['500 Command "FROB" not understood.'],
    })
    assert.equal((await raw.command("NOOP")).code, 200)
  }))

Deno.test("a missing or unexpected argument replies 501", () =>
  withClient(async (raw) => {
    const missing = [
      "MKD",
      "RMD",
      "DELE",
      "RNFR",
      "RNTO",
      "SIZE",
      "MDTM",
      "MFMT",
      "TYPE",
      "MODE",
      "STRU",
      "ALLO",
      "REST",
    ]
    const extra = ["PWD x", "CDUP x", "SYST x", "NOOP x", "FEAT x", "QUIT x", "REIN x", "PASV x", "ABOR x", "XPWD x"]
    for (const command of [...missing, "RETR", "STOR", "APPE", "OPTS", "SITE", "PORT", "EPRT", ...extra]) {
      assert.equal((await raw.command(command)).code, 501, command)
    }
    assert.equal((await raw.command("NOOP")).code, 200)
  }))

Deno.test("USER without a name replies 501", () =>
  withClient(async (raw) => {
    assert.equal((await raw.command("USER")).code, 501)
  }, { login: false }))

Deno.test("command verbs are case-insensitive", () =>
  withClient(async (raw) => {
    assert.equal((await raw.command("pwd")).code, 257)
    assert.equal((await raw.command("Syst")).code, 215)
  }))

// --- listings ------------------------------------------------------------------------------------

const LIST_LINE = /^([-dl])[-rwxsStT]{9} +\d+ \S+ +\S+ +(\d+) (\w{3}) [ \d]\d ( \d{4}|\d\d:\d\d) (.+)$/

/** A root with a 3-byte file `a.txt` and an empty directory `sub`. */
const seed = async (root: string) => {
  await Deno.writeTextFile(`${root}/a.txt`, "abc")
  await Deno.mkdir(`${root}/sub`)
}

Deno.test("LIST sends ls -l lines over the data connection, 150 then 226", () =>
  withClient(async (raw, server) => {
    await seed(server.root)
    const { replies, data } = await listing(raw, "LIST")
    assert.deepEqual(codes(replies), [150, 226])
    assert.ok(data.endsWith("\r\n"))
    const lines = data.split("\r\n").slice(0, -1).sort()
    assert.equal(lines.length, 2)
    const [file, dir] = lines.map((l) => LIST_LINE.exec(l))
    assert.ok(file !== null && dir !== null, lines.join("|"))
    assert.deepEqual([file[1], file[2], file[5]], ["-", "3", "a.txt"])
    assert.deepEqual([dir[1], dir[5]], ["d", "sub"])
  }))

Deno.test("LIST -la lists the current directory, and LIST -la <dir> that directory", () =>
  withClient(async (raw, server) => {
    await seed(server.root)
    await Deno.writeTextFile(`${server.root}/sub/inner.txt`, "x")
    const here = await listing(raw, "LIST -la")
    assert.deepEqual(codes(here.replies), [150, 226])
    assert.deepEqual(here.data.split("\r\n").slice(0, -1).map((l) => LIST_LINE.exec(l)?.[5]).sort(), ["a.txt", "sub"])
    const sub = await listing(raw, "LIST -la sub")
    assert.match(sub.data, /^-.* inner\.txt\r\n$/)
  }))

Deno.test("LIST of a file lists that one file", () =>
  withClient(async (raw, server) => {
    await seed(server.root)
    const { replies, data } = await listing(raw, "LIST a.txt")
    assert.deepEqual(codes(replies), [150, 226])
    assert.equal(LIST_LINE.exec(data.trimEnd())?.[5], "a.txt")
  }))

Deno.test("LIST of a missing path replies 550", () =>
  withClient(async (raw) => {
    assert.deepEqual(codes((await listing(raw, "LIST missing")).replies), [550])
  }))

Deno.test("LIST without PASV or PORT first replies 425 at once", () =>
  withClient(async (raw) => {
    assert.equal((await raw.command("LIST")).code, 425)
  }))

Deno.test("NLST sends bare names, and NLST of a file sends that file's name", () =>
  withClient(async (raw, server) => {
    await seed(server.root)
    const dir = await listing(raw, "NLST")
    assert.deepEqual(codes(dir.replies), [150, 226])
    assert.deepEqual(dir.data.split("\r\n").sort(), ["", "a.txt", "sub"])
    const file = await listing(raw, "NLST a.txt")
    assert.deepEqual(codes(file.replies), [150, 226])
    assert.equal(file.data, "a.txt\r\n")
  }))

const MLSX_FILE = /^type=file;size=3;modify=\d{14};perm=([a-z]*);unique=[0-9a-f]+g[0-9a-f]+; a\.txt$/
/** The MLSD line of `name`. */
const entry = (lines: ReadonlyArray<string>, name: string): string => lines.find((l) => l.endsWith(` ${name}`)) ?? ""
const MLSX_DIR = /^type=dir;modify=\d{14};perm=([a-z]*);unique=[0-9a-f]+g[0-9a-f]+; sub$/

Deno.test("MLSD sends one fact line per entry with RFC 3659 perm letters only", () =>
  withClient(async (raw, server) => {
    await seed(server.root)
    const { replies, data } = await listing(raw, "MLSD")
    assert.deepEqual(codes(replies), [150, 226])
    const lines = data.split("\r\n").slice(0, -1)
    assert.equal(lines.length, 2)
    const file = MLSX_FILE.exec(entry(lines, "a.txt"))
    const dir = MLSX_DIR.exec(entry(lines, "sub"))
    assert.ok(file !== null && dir !== null, lines.join("|"))
    assert.equal(file[1], "adfrw")
    assert.equal(dir[1], "cdeflmp")
  }))

Deno.test("MLSD perm facts follow the user's permissions: read-only anonymous gets r and el", async () => {
  const server = await startServer({ inMemory: true })
  const raw = await RawClient.connectTo(server)
  try {
    await seed(server.root)
    await raw.login("anonymous", "guest")
    const lines = (await listing(raw, "MLSD")).data.split("\r\n")
    assert.equal(MLSX_FILE.exec(entry(lines, "a.txt"))?.[1], "r")
    assert.equal(MLSX_DIR.exec(entry(lines, "sub"))?.[1], "el")
    const mlst = await raw.command("MLST a.txt")
    assert.match(mlst.lines[1], /;perm=r;/)
  } finally {
    raw.close()
    await server.close()
  }
})

Deno.test("MLSD of a file replies 501", () =>
  withClient(async (raw, server) => {
    await seed(server.root)
    assert.deepEqual(codes((await listing(raw, "MLSD a.txt")).replies), [501])
  }))

Deno.test("MLST replies 250 with one fact line that starts with a space", () =>
  withClient(async (raw, server) => {
    await seed(server.root)
    const file = await raw.command("MLST a.txt")
    assert.equal(file.code, 250)
    assert.equal(file.lines.length, 3)
    assert.equal(file.lines[0], '250-Listing "/a.txt":')
    assert.match(file.lines[1], /^ type=file;size=3;modify=\d{14};perm=adfrw;unique=[0-9a-f]+g[0-9a-f]+; \/a\.txt$/)
    assert.equal(file.lines[2], "250 End MLST.")
    const dir = await raw.command("MLST sub")
    assert.match(dir.lines[1], /^ type=dir;modify=\d{14};perm=([adfrwcelmp]*);unique=\S+; \/sub$/)
    assert.equal((await raw.command("MLST missing")).code, 550)
  }))
