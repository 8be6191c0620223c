/**
 * `ftpd users` (managing a user file) and `ftpd --users FILE` (serving it), as a person runs them:
 * the real command in a child process, its exit code and its one line of error; the password typed
 * at a terminal (a pseudo-terminal made by `script`); concurrent runs; SIGHUP reloads.
 */
import assert from "node:assert/strict"
import { parseUsers } from "../src/cli.ts"
import { verifyPassword } from "../src/auth/passwords.ts"
import { eventually, RawClient } from "./helpers.ts"

const CLI = new URL("../src/cli.ts", import.meta.url).pathname
const decoder = new TextDecoder()

interface Ran {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Run `ftpd ...args` with every permission (or `permissions`), `input` on standard input. */
const ftpd = async (args: string[], input = "", permissions = ["-A"]): Promise<Ran> => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...permissions, CLI, ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn()
  const writer = child.stdin.getWriter()
  await writer.write(new TextEncoder().encode(input))
  await writer.close()
  const out = await child.output()
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) }
}

const withDir = async (f: (dir: string, home: string) => Promise<void>) => {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-users-cli-" }))
  try {
    await Deno.mkdir(`${dir}/home`)
    await f(dir, `${dir}/home`)
  } finally {
    await Deno.remove(dir, { recursive: true })
  }
}

/** The users of a file and their hashes, read as TOML by hand-free means: the server's own reader. */
const hashesOf = async (file: string): Promise<Map<string, string>> => {
  const { parse } = await import("smol-toml")
  const users = (parse(await Deno.readTextFile(file)).users ?? {}) as Record<string, { password: string }>
  return new Map(Object.entries(users).map(([name, user]) => [name, user.password]))
}

/** One error line, exit 2. */
const assertUsageError = (ran: Ran, pattern: RegExp) => {
  assert.equal(ran.code, 2, ran.stderr)
  const lines = ran.stderr.trim().split("\n").filter((line) => !line.startsWith("Try 'ftpd"))
  assert.equal(lines.length, 1, ran.stderr)
  assert.match(lines[0], /^ftpd: error: /)
  assert.match(lines[0], pattern)
}

Deno.test("users add reads the password from standard input, hashes it with argon2id and writes the file with mode 0600", async () => {
  await withDir(async (dir, home) => {
    const file = `${dir}/users.toml`
    const ran = await ftpd(["users", "add", "alice", "--file", file, "--home", home, "--perm", "elradfmw"], "s3cret\n")
    assert.equal(ran.code, 0, ran.stderr)
    assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600)
    const hash = (await hashesOf(file)).get("alice")!
    assert.match(hash, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/)
    assert.ok(await verifyPassword("s3cret", hash))
    assert.ok(!(await verifyPassword("s3cret\n", hash)))
    const list = await ftpd(["users", "list", "--file", file])
    assert.equal(list.code, 0)
    assert.match(list.stdout, new RegExp(`alice\\s+${home}\\s+elradfmw\\s+enabled`))
    assert.ok(!list.stdout.includes("$argon2id$"), "list never prints hashes")
  })
})

Deno.test("users add at a terminal asks for the password twice without echoing it; a mismatch exits 2", async () => {
  await withDir(async (dir, home) => {
    const file = `${dir}/users.toml`
    const typed = async (first: string, second: string) => {
      const child = new Deno.Command("script", {
        args: ["-qec", `${Deno.execPath()} run -A ${CLI} users add tty --file ${file} --home ${home}`, "/dev/null"],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn()
      const writer = child.stdin.getWriter()
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader()
      let screen = ""
      const waitFor = async (text: string) => {
        while (!screen.includes(text)) {
          const { value, done } = await reader.read()
          if (done) throw new Error(`the command ended before '${text}': ${screen}`)
          screen += value
        }
      }
      await waitFor("Password: ")
      await writer.write(new TextEncoder().encode(`${first}\r`))
      await waitFor("Password again: ")
      await writer.write(new TextEncoder().encode(`${second}\r`))
      const status = await child.status
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) screen += chunk.value
      await writer.close().catch(() => undefined)
      await child.stderr.cancel()
      return { code: status.code, screen }
    }
    const mismatch = await typed("one-secret", "other-secret")
    assert.equal(mismatch.code, 2)
    assert.match(mismatch.screen, /ftpd: error: the passwords do not match/)
    const ok = await typed("tty-secret", "tty-secret")
    assert.equal(ok.code, 0, ok.screen)
    assert.ok(!ok.screen.includes("tty-secret") && !mismatch.screen.includes("secret\r"), ok.screen)
    assert.ok(await verifyPassword("tty-secret", (await hashesOf(file)).get("tty")!))
  })
})

Deno.test("users add --hash takes a hash from htpasswd; passwd changes only the password line, keeping comments; del removes the user", async () => {
  const htpasswd = new Deno.Command("htpasswd", { args: ["-nbB", "x", "pw"] }).outputSync()
  const bcrypt = decoder.decode(htpasswd.stdout).trim().split(":")[1]
  await withDir(async (dir, home) => {
    const file = `${dir}/users.toml`
    await Deno.writeTextFile(file, `# our users\n[users.admin]   # keep me\npassword = "${bcrypt}"\nhome = "${home}"\n`)
    assert.equal((await ftpd(["users", "add", "bob", "--file", file, "--home", home, "--hash", bcrypt])).code, 0)
    assert.equal((await hashesOf(file)).get("bob"), bcrypt)
    const passwd = await ftpd(["users", "passwd", "admin", "--file", file], "new-secret\n")
    assert.equal(passwd.code, 0, passwd.stderr)
    const text = await Deno.readTextFile(file)
    assert.ok(text.startsWith('# our users\n[users.admin]   # keep me\npassword = "$argon2id$'), text)
    assert.ok(await verifyPassword("new-secret", (await hashesOf(file)).get("admin")!))
    assert.equal((await ftpd(["users", "del", "bob", "--file", file])).code, 0)
    assert.deepEqual([...(await hashesOf(file)).keys()], ["admin"])
    assert.ok((await Deno.readTextFile(file)).includes("# keep me"))
  })
})

Deno.test("every bad use of ftpd users is one error line and exit 2, and leaves the file as it was", async () => {
  await withDir(async (dir, home) => {
    const file = `${dir}/users.toml`
    assert.equal((await ftpd(["users", "add", "alice", "--file", file, "--home", home], "pw\n")).code, 0)
    const before = await Deno.readTextFile(file)
    const cases: Array<[string[], string, RegExp]> = [
      [["users"], "", /expected a command/],
      [["users", "rename", "a"], "", /unknown command 'rename'/],
      [["users", "add", "--file", file, "--home", home], "pw\n", /expected a user name/],
      [["users", "add", "bob", "--home", home], "pw\n", /requires --file/],
      [["users", "add", "bob", "--file", file], "pw\n", /requires --home/],
      [["users", "add", "bob", "--file", file, "--home", `${dir}/nowhere`], "pw\n", /--home: no such directory/],
      [
        ["users", "add", "bob", "--file", file, "--home", home, "--perm", "elrq"],
        "pw\n",
        /unknown permission letter 'q'/,
      ],
      [
        ["users", "add", "bob", "--file", file, "--home", home, "--hash", "secret"],
        "",
        /--hash: a plain-text password/,
      ],
      [["users", "add", "bob", "--file", file, "--home", home, "--hash", "$1$abc$def"], "", /--hash: not a hash/],
      [["users", "add", "bob", "--file", file, "--home", home], "\n", /the password is empty/],
      [["users", "add", "alice", "--file", file, "--home", home], "pw\n", /user 'alice' already exists/],
      [["users", "add", "anonymous", "--file", file, "--home", home], "pw\n", /\[anonymous\] table/],
      [["users", "add", "bad name", "--file", file, "--home", home], "pw\n", /no spaces/],
      [["users", "add", "bob", "extra", "--file", file, "--home", home], "pw\n", /unexpected argument 'extra'/],
      [["users", "add", "bob", "--file", file, "--home", home, "--colour"], "pw\n", /unknown option '--colour'/],
      [["users", "passwd", "zed", "--file", file], "pw\n", /no such user 'zed'/],
      [["users", "passwd", "alice", "--file", file, "--home", home], "pw\n", /--home is not used here/],
      [["users", "del", "zed", "--file", file], "", /no such user 'zed'/],
      [["users", "list", "--file", `${dir}/missing.toml`], "", /no such file/],
      [["users", "list", "alice", "--file", file], "", /unexpected argument 'alice'/],
    ]
    for (const [args, input, pattern] of cases) {
      assertUsageError(await ftpd(args, input), pattern)
      assert.equal(await Deno.readTextFile(file), before, args.join(" "))
    }
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      ["home", "users.toml"],
      "no temporary file left",
    )
  })
})

Deno.test("a user file with a mistake is not written to by ftpd users: the error names its line and field", async () => {
  await withDir(async (dir, home) => {
    const file = `${dir}/users.toml`
    await Deno.writeTextFile(file, `[users.bob]\npassword = "plain"\nhome = "${home}"\n`)
    assertUsageError(
      await ftpd(["users", "add", "carol", "--file", file, "--home", home], "pw\n"),
      /line 2: users\.bob\.password: a plain-text password/,
    )
    // ... but the password of that very user can be set right.
    assert.equal((await ftpd(["users", "passwd", "bob", "--file", file], "pw\n")).code, 0)
    assert.ok(await verifyPassword("pw", (await hashesOf(file)).get("bob")!))
  })
})

Deno.test("concurrent ftpd users add runs lose no update", async () => {
  await withDir(async (dir, home) => {
    const file = `${dir}/users.toml`
    const runs = await Promise.all(
      Array.from({ length: 8 }, (_, i) => ftpd(["users", "add", `u${i}`, "--file", file, "--home", home], `pw${i}\n`)),
    )
    for (const ran of runs) assert.equal(ran.code, 0, ran.stderr)
    const hashes = await hashesOf(file)
    assert.deepEqual([...hashes.keys()].sort(), Array.from({ length: 8 }, (_, i) => `u${i}`))
    for (let i = 0; i < 8; i++) assert.ok(await verifyPassword(`pw${i}`, hashes.get(`u${i}`)!))
  })
})

Deno.test("parseUsers: the commands and their options", () => {
  assert.deepEqual(parseUsers(["add", "a", "--file", "/f", "--home", "/h"]), {
    verb: "add",
    name: "a",
    file: "/f",
    home: "/h",
    perm: "elr",
  })
  assert.deepEqual(parseUsers(["passwd", "a", "--file", "/f"]), { verb: "passwd", name: "a", file: "/f" })
  assert.deepEqual(parseUsers(["del", "a", "--file", "/f"]), { verb: "del", name: "a", file: "/f" })
  assert.deepEqual(parseUsers(["list", "--file", "/f"]), { verb: "list", file: "/f" })
  assert.deepEqual(parseUsers(["--help"]), { verb: "help" })
})

// ftpd --users FILE

Deno.test("--users with -u, -d or -w, and --unix-* flags without --unix-users, exit 2 with one line", async () => {
  const cases: Array<[string[], RegExp]> = [
    [["--users", "u.toml", "-u", "bob", "-P", "pw"], /-u\/--username: not allowed with --users/],
    [["--users", "u.toml", "-d", "/srv"], /-d\/--directory: not allowed with --users/],
    [["--users", "u.toml", "-w"], /-w\/--write: not allowed with --users/],
    [["--users", ""], /--users: must not be empty/],
    [["--unix-jail"], /--unix-jail: requires --unix-users/],
    [["--unix-users", "--users", "u.toml"], /--users: not allowed with --unix-users/],
    [["--unix-users", "-u", "bob", "-P", "x"], /-u\/--username: not allowed with --unix-users/],
    [
      ["--unix-users", "--unix-allowed-users", "a", "--unix-rejected-users", "b"],
      /not allowed with --unix-allowed-users/,
    ],
    [["--unix-users", "--unix-allowed-users", "a,,b"], /--unix-allowed-users: expected user names/],
    [["--unix-users", "--jail", "path"], /--unix-users needs the descriptor jail/],
    [["--unix-users", "--unix-anonymous-user", ""], /--unix-anonymous-user: must not be empty/],
    [["--users-watch"], /--users-watch: requires --users/],
  ]
  for (const [args, pattern] of cases) assertUsageError(await ftpd(args), pattern)
})

Deno.test("--users without read access to the file, or to a home, exits 2 naming the grant", async () => {
  await withDir(async (dir, home) => {
    const file = `${dir}/users.toml`
    assert.equal((await ftpd(["users", "add", "w", "--file", file, "--home", home, "--perm", "elrw"], "pw\n")).code, 0)
    const net = "--allow-net"
    const none = await ftpd(["--users", file, "-p", "0"], "", [net])
    assert.equal(none.code, 2)
    assert.match(none.stderr, new RegExp(`missing permission: read access to ${file} \\(add --allow-read=${file}\\)`))
    const fileOnly = await ftpd(["--users", file, "-p", "0"], "", [net, `--allow-read=${file}`])
    assert.equal(fileOnly.code, 2)
    assert.match(fileOnly.stderr, new RegExp(`read access to ${home}, home of w \\(add --allow-read=${home}\\)`))
    assert.match(fileOnly.stderr, new RegExp(`write access to ${home}, home of w \\(add --allow-write=${home}\\)`))
  })
})

Deno.test("--users with a file that can't be used exits 2 with one line naming the line and field", async () => {
  await withDir(async (dir, home) => {
    const file = `${dir}/users.toml`
    await Deno.writeTextFile(file, `[users.bob]\nhome = "${home}"\npassword = "hunter2"\n`)
    const ran = await ftpd(["--users", file, "-i", "127.0.0.1", "-p", "0"])
    assert.equal(ran.code, 2)
    assert.match(ran.stderr, /^ftpd: error: user file .*: line 3: users\.bob\.password: a plain-text password/m)
  })
})

/** `ftpd --users FILE` running on a free port until `f` is done. */
const withUsersServer = async (file: string, f: (port: number, output: () => string, pid: number) => Promise<void>) => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, "--users", file, "-i", "127.0.0.1", "-p", "0", "--auth-failed-timeout", "0"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn()
  let output = ""
  const collect = (stream: ReadableStream<Uint8Array>) =>
    stream.pipeThrough(new TextDecoderStream()).pipeTo(new WritableStream({ write: (text) => void (output += text) }))
  const drained = Promise.all([collect(child.stdout), collect(child.stderr)])
  try {
    await eventually(() => /starting FTP server on 127\.0\.0\.1:\d+/.test(output), 30_000, "the server to start")
    const port = Number(/starting FTP server on 127\.0\.0\.1:(\d+)/.exec(output)![1])
    await f(port, () => output, child.pid)
  } finally {
    child.kill("SIGINT")
    await child.status
    await drained
  }
}

const loginCode = async (port: number, user: string, password: string) => {
  const client = await RawClient.connect(port)
  try {
    await client.command(`USER ${user}`)
    return (await client.command(`PASS ${password}`)).code
  } finally {
    client.close()
  }
}

Deno.test("SIGHUP reloads the user file; a bad file is refused with one log line naming the field, and the old users stay", async () => {
  await withDir(async (dir, home) => {
    const file = `${dir}/users.toml`
    assert.equal((await ftpd(["users", "add", "alice", "--file", file, "--home", home], "pw-a\n")).code, 0)
    await withUsersServer(file, async (port, output, pid) => {
      assert.equal(await loginCode(port, "alice", "pw-a"), 230)
      // Edited by hand (no watch event must be relied on: SIGHUP is the signal).
      const good = await Deno.readTextFile(file)
      assert.equal((await ftpd(["users", "add", "bob", "--file", file, "--home", home], "pw-b\n")).code, 0)
      Deno.kill(pid, "SIGHUP")
      await eventually(() => output().includes("reloaded: 2 users"), 10_000, "the reload")
      assert.equal(await loginCode(port, "bob", "pw-b"), 230)
      // A bad file: the old users stay.
      await Deno.writeTextFile(file, `${good}\n[users.carol]\npassword = "plain"\nhome = "${home}"\n`)
      Deno.kill(pid, "SIGHUP")
      await eventually(() => /refused, the previous users stay in force/.test(output()), 10_000, "the refusal")
      const refusals = output().split("\n").filter((line) => line.includes("refused, the previous users stay"))
      assert.ok(refusals.every((line) => /line \d+: users\.carol\.password: a plain-text password/.test(line)))
      assert.equal(await loginCode(port, "bob", "pw-b"), 230)
      assert.equal(await loginCode(port, "alice", "pw-a"), 230)
      assert.equal(await loginCode(port, "carol", "plain"), 530)
    })
  })
})
