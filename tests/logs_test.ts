/**
 * Logs for operators: the JSON format, the log file and the xferlog reopened at SIGHUP, the
 * xferlog format field by field, and the shipped fail2ban filter run by `fail2ban-regex` (Debian
 * `fail2ban`) against the log of real failed logins.
 */
import "../src/_no_async_hooks.ts"
import assert from "node:assert/strict"
import * as Logger from "effect/Logger"
import * as References from "effect/References"
import { EVENT_ANNOTATION, SESSION_ANNOTATION, SESSION_FIELDS_ANNOTATION } from "../src/log.ts"
import {
  curl,
  eventually,
  installed,
  loggedIn,
  RawClient,
  readAll,
  sparseFile,
  spawnCli,
  startServer,
  type TestServer,
  writeAllAndClose,
} from "./helpers.ts"

/** What an application's own logger saw of one line: its level, its text and its annotations. */
interface Seen {
  readonly level: string
  readonly text: string
  readonly annotations: Readonly<Record<string, unknown>>
}

const FILTER = new URL("../contrib/fail2ban/filter.d/ftpd.conf", import.meta.url).pathname
// deno-lint-ignore no-control-regex -- a raw control character in a log line is what must not be
const RAW_CONTROL = /[\x00-\x1f\x7f-\x9f]/

Deno.test("JSON log: one object per line with level, time, session, client, user, event and fields; every control character escaped", async () => {
  const server = await startServer({ logFormat: "json" })
  try {
    await Deno.writeTextFile(`${server.root}/a.txt`, "hello")
    const evil = "ev\u0085il\u001b[31m\u009b2J"
    const guesser = await RawClient.connect(server.port)
    await guesser.command(`USER ${evil}`)
    assert.equal((await guesser.command("PASS nope")).code, 530)
    guesser.close()
    const client = await loggedIn(server)
    const data = await client.passive()
    assert.equal((await client.command("RETR a.txt")).code, 150)
    await readAll(data)
    assert.equal((await client.readReply()).code, 226)
    client.close()
    await eventually(() =>
      server.logs.some((line) => line.includes('"event":"session_closed"') && line.includes('"user"'))
    )
    const records = server.logs.map((line) => {
      assert.doesNotMatch(line, RAW_CONTROL, line)
      return JSON.parse(line) as Record<string, unknown>
    })
    for (const record of records) {
      assert.deepEqual(Object.keys(record).slice(0, 7), [
        "level",
        "time",
        "session",
        "client",
        "user",
        "event",
        "message",
      ])
      assert.match(record.time as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    }
    const failed = records.find((r) => r.event === "login_failed")!
    assert.equal(failed.level, "info")
    assert.match(failed.client as string, /^127\.0\.0\.1:\d+$/)
    assert.match(failed.session as string, /^[0-9a-f]{8}$/)
    // The name as the client sent it, its control characters written as escapes.
    const escaped = "ev\\x85il\\x1b[31m\\x9b2J"
    assert.equal(failed.user, escaped)
    assert.equal(failed.login, escaped)
    assert.equal(failed.message, `USER '${escaped}' failed login.`)
    const transfer = records.find((r) => r.event === "transfer")!
    assert.equal(transfer.user, "user")
    assert.deepEqual(
      { command: transfer.command, path: transfer.path, bytes: transfer.bytes, result: transfer.result },
      { command: "RETR", path: "/a.txt", bytes: 5, result: "ok" },
    )
    assert.equal(typeof transfer.seconds, "number")
    const sessions = new Set(records.filter((r) => r.user === "user").map((r) => r.session))
    assert.equal(sessions.size, 1, "one id for every line of a session")
    const banner = records.find((r) => String(r.message).startsWith(">>> starting FTP server"))!
    assert.deepEqual([banner.session, banner.client, banner.user, banner.event], [null, null, null, "message"])
  } finally {
    await server.close()
  }
})

/** The fields of an xferlog line: the time, then the 13 fields after it. */
const xferFields = (line: string) => {
  const match = /^(\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}) (.*)$/.exec(line)
  assert.ok(match !== null, `an xferlog time: ${line}`)
  const [seconds, host, size, file, type, action, direction, mode, user, service, method, id, status] = match[2]
    .split(" ")
  assert.equal(match[2].split(" ").length, 13, line)
  return { time: match[1], seconds, host, size, file, type, action, direction, mode, user, service, method, id, status }
}

Deno.test("An application's own logger gets every session line with the session's and the event's annotations", async () => {
  const seen: Seen[] = []
  const collector = Logger.make(({ logLevel, message, fiber }) => {
    const text = (Array.isArray(message) ? message : [message]).join(" ")
    seen.push({ level: logLevel, text, annotations: fiber.getRef(References.CurrentLogAnnotations) })
  })
  const server = await startServer({
    inMemory: true,
    layer: Logger.layer([collector], { mergeWithExisting: true }),
  })
  try {
    const raw = await RawClient.connectTo(server)
    await raw.login()
    await raw.command("QUIT")
    raw.close()
    await eventually(() => seen.some((line) => line.text === "FTP session closed (disconnect)."))
    const login = seen.find((line) => line.text === "USER 'user' logged in.")
    assert.ok(login !== undefined, JSON.stringify(seen.map((line) => line.text)))
    assert.equal(login.level, "Info")
    assert.match(String(login.annotations[SESSION_ANNOTATION]), /^127\.0\.0\.1:\d+-\[user\]$/)
    const fields = login.annotations[SESSION_FIELDS_ANNOTATION] as { id: string; user: string }
    assert.equal(fields.user, "user")
    assert.deepEqual(login.annotations[EVENT_ANNOTATION], { event: "login", login: "user" })
    const opened = seen.find((line) => line.text === "FTP session opened (connect)")
    assert.deepEqual(opened?.annotations[EVENT_ANNOTATION], { event: "session_opened" })
    assert.equal((opened?.annotations[SESSION_FIELDS_ANNOTATION] as { id: string }).id, fields.id)
    const closed = seen.find((line) => line.text === "FTP session closed (disconnect).")
    assert.deepEqual(closed?.annotations[EVENT_ANNOTATION], { event: "session_closed" })
  } finally {
    await server.close()
  }
})

Deno.test("xferlog: one line per file transfer, completed or cut, field by field as xferlog(5) has them", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-xferlog-" }))
  const xferlog = `${dir}/xferlog`
  const server = await startServer({ xferlog })
  try {
    await Deno.writeTextFile(`${server.root}/my file.txt`, "one\ntwo\n")
    await sparseFile(`${server.root}/big.bin`, 1 << 30)
    const before = new Date()
    const client = await loggedIn(server)
    let data = await client.passive()
    assert.equal((await client.command("RETR my file.txt")).code, 150)
    assert.equal((await readAll(data)).length, 8)
    assert.equal((await client.readReply()).code, 226)
    assert.equal((await client.command("TYPE A")).code, 200)
    data = await client.passive()
    assert.equal((await client.command("STOR up.txt")).code, 150)
    await writeAllAndClose(data, new TextEncoder().encode("a\r\nb\r\n"))
    assert.equal((await client.readReply()).code, 226)
    assert.equal((await client.command("TYPE I")).code, 200)
    data = await client.passive()
    assert.equal((await client.command("RETR big.bin")).code, 150)
    await data.read(new Uint8Array(65536))
    await client.send("ABOR")
    assert.equal((await client.readReply()).code, 426)
    assert.equal((await client.readReply()).code, 226)
    data.close()
    data = await client.passive()
    assert.equal((await client.command("LIST")).code, 150)
    await readAll(data)
    assert.equal((await client.readReply()).code, 226)
    client.close()
    const anonymous = await loggedIn(server, { user: "anonymous", password: "guest@example.com" })
    data = await anonymous.passive()
    assert.equal((await anonymous.command("RETR up.txt")).code, 150)
    await readAll(data)
    assert.equal((await anonymous.readReply()).code, 226)
    anonymous.close()

    let lines: string[] = []
    await eventually(
      async () => {
        lines = (await Deno.readTextFile(xferlog)).split("\n").filter((line) => line !== "")
        return lines.length === 4
      },
      5000,
      "four xferlog lines (the listing is not one)",
    )
    const [retr, stor, cut, anon] = lines.map(xferFields)
    // ctime's form, in local time, within the test's run.
    const stamp = new Date(retr.time)
    assert.ok(stamp.getTime() >= Math.floor(before.getTime() / 1000) * 1000 - 1000 && stamp <= new Date(), retr.time)
    assert.deepEqual(retr, {
      ...retr,
      seconds: "1",
      host: "127.0.0.1",
      size: "8",
      file: `${server.root}/my_file.txt`,
      type: "b",
      action: "_",
      direction: "o",
      mode: "r",
      user: "user",
      service: "ftp",
      method: "0",
      id: "*",
      status: "c",
    })
    assert.deepEqual([stor.size, stor.file, stor.type, stor.direction, stor.status], [
      "4",
      `${server.root}/up.txt`,
      "a",
      "i",
      "c",
    ])
    assert.deepEqual([cut.file, cut.direction, cut.status], [`${server.root}/big.bin`, "o", "i"])
    // Only the bytes the connection took are counted: a cut download may have moved none.
    assert.match(cut.size, /^\d+$/)
    assert.deepEqual([anon.mode, anon.user, anon.direction, anon.status], ["a", "anonymous", "o", "c"])
  } finally {
    await server.close()
    await Deno.remove(dir, { recursive: true })
  }
})

Deno.test("ftpd --log-file and --xferlog: after logrotate moves them, SIGHUP reopens both at their paths", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-logfile-" }))
  const share = `${dir}/share`
  await Deno.mkdir(share)
  await Deno.writeTextFile(`${share}/a.txt`, "hello")
  const log = `${dir}/ftpd.log`
  const xferlog = `${dir}/xferlog`
  const cli = await spawnCli(
    ["--allow-net=127.0.0.1", `--allow-read=${dir}`, `--allow-write=${dir}`],
    ["-i", "127.0.0.1", "-p", "0", "-d", share, "--log-file", log, "--xferlog", xferlog],
    {},
    log,
  )
  try {
    const download = async () =>
      assert.equal((await curl("-o", "/dev/null", `ftp://127.0.0.1:${cli.port}/a.txt`)).code, 0)
    await download()
    await eventually(async () => (await Deno.readTextFile(xferlog)).includes("a.txt"), 5000, "the first xferlog line")
    await Deno.rename(log, `${log}.1`)
    await Deno.rename(xferlog, `${xferlog}.1`)
    cli.process.kill("SIGHUP")
    await eventually(async () => (await Deno.stat(log).catch(() => null)) !== null, 5000, "a new log file")
    await eventually(async () => (await Deno.stat(xferlog).catch(() => null)) !== null, 5000, "a new xferlog")
    await download()
    await eventually(async () => (await Deno.readTextFile(xferlog)).includes("a.txt"), 5000, "the second xferlog line")
    const [old, fresh] = [await Deno.readTextFile(`${log}.1`), await Deno.readTextFile(log)]
    assert.match(old, />>> starting FTP server/)
    assert.equal((old.match(/RETR \/a\.txt completed=1/g) ?? []).length, 1)
    await eventually(async () => /RETR \/a\.txt completed=1/.test(await Deno.readTextFile(log)))
    assert.doesNotMatch(fresh, /starting FTP server/)
    assert.equal((await Deno.readTextFile(`${xferlog}.1`)).trim().split("\n").length, 1)
    assert.equal((await Deno.readTextFile(xferlog)).trim().split("\n").length, 1)
    assert.equal(cli.stderr(), "", "nothing on standard error")
  } finally {
    await cli.stop()
    await Deno.remove(dir, { recursive: true })
  }
})

/** Run `fail2ban-regex` with the shipped filter on `lines`; the lines it matched, by their hosts. */
const fail2banMatches = async (lines: ReadonlyArray<string>): Promise<{ matched: string[]; summary: string }> => {
  const file = await Deno.makeTempFile({ prefix: "ftpd-f2b-", suffix: ".log" })
  try {
    await Deno.writeTextFile(file, lines.join("\n") + "\n")
    const out = await new Deno.Command("fail2ban-regex", {
      args: ["--print-all-matched", "--raw", file, FILTER],
      stdout: "piped",
      stderr: "piped",
    }).output()
    const text = new TextDecoder().decode(out.stdout)
    assert.equal(out.code, 0, text + new TextDecoder().decode(out.stderr))
    const section = (text.split("|- Matched line(s):")[1] ?? "").split("\n`-")[0]
    const matched = section.split("\n").filter((line) => line.startsWith("|  ")).map((line) => line.slice(3))
    return { matched, summary: /Lines: .*/.exec(text)?.[0] ?? text }
  } finally {
    await Deno.remove(file)
  }
}

/** A server whose logins fail and succeed as fail2ban must tell apart, in `format`. */
const loginAttempts = async (format: "pyftpdlib" | "json"): Promise<TestServer> => {
  const server = await startServer({
    logFormat: format,
    banAfterFailures: 2,
    users: (a, root) => a.addUser("user", "pass", root).addUser("x' failed login.", "pass", root),
  })
  ;(await loggedIn(server)).close()
  ;(await loggedIn(server, { user: "x' failed login." })).close()
  const guesser = await RawClient.connect(server.port)
  await guesser.command("USER root")
  assert.equal((await guesser.command("PASS toor")).code, 530)
  await guesser.command("USER admin")
  assert.equal((await guesser.command("PASS admin")).code, 421)
  guesser.close()
  await eventually(() => server.logs.some((line) => line.includes("banned")))
  return server
}

for (const format of ["pyftpdlib", "json"] as const) {
  Deno.test(`fail2ban-regex: the shipped filter matches real failed logins and bans in the ${format} log, and no successful login`, async () => {
    if (!(await installed("fail2ban-regex", "fail2ban"))) return
    const server = await loginAttempts(format)
    try {
      const { matched, summary } = await fail2banMatches(server.logs)
      assert.equal(matched.length, 3, `${summary}\n${server.logs.join("\n")}`)
      assert.equal(
        matched.filter((line) => /USER '(root|admin)' failed login\./.test(line)).length,
        2,
        matched.join("\n"),
      )
      assert.equal(matched.filter((line) => /127\.0\.0\.1 banned: too many failed logins/.test(line)).length, 1)
      assert.ok(matched.every((line) => !line.includes("logged in")), matched.join("\n"))
    } finally {
      await server.close()
    }
  })
}
