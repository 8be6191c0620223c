/**
 * Attacks, played as an attacker would: a jail escape by renaming a directory under another
 * session's pending RNFR, races between renames (by FTP clients, or a local process flipping a
 * directory and a symlink) and every operation, native-TLS data sockets left open by silent and
 * foreign clients, control characters in logs and names, and huge directories holding up the
 * event loop. Each jail mode is held to what the README promises of it.
 */
import assert from "node:assert/strict"
import net from "node:net"
import type { JailMode } from "../src/fs/local.ts"
import {
  closeQuietly,
  eventually,
  installed,
  loggedIn,
  makeCertificate,
  RawClient,
  readAll,
  receive,
  type Reply,
  sleep,
  sparseFile,
  startServer,
  type TestServer,
  timed,
  withChildServer,
  withLoggedIn,
  writeAllAndClose,
} from "./helpers.ts"

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const JAILS: ReadonlyArray<JailMode> = ["descriptor", "path"]

/** STOR/APPE/STOU of `data` over EPSV: the reply codes. */
const store = async (raw: RawClient, command: string, data = "pwned"): Promise<number[]> => {
  const conn = await raw.passive()
  try {
    const first: Reply = await raw.command(command)
    if (first.code !== 150) return [first.code]
    await writeAllAndClose(conn, encoder.encode(data))
    return [150, (await raw.readReply()).code]
  } finally {
    closeQuietly(conn)
  }
}

/**
 * A tree for the rename attacks, removed afterwards: `base/home` is the users' home;
 * `base/secret.txt` ("OUTSIDE") and `base/del.txt` lie outside it. Inside: the innocent
 * administrator's link `docs/v1/up -> ../..` (which, from `docs/v1`, is the home itself) and a real
 * directory `c/up` holding `secret.txt` ("inside") and `del.txt`.
 */
interface RenameTree {
  readonly base: string
  readonly home: string
}

const withRenameTree = async (jail: JailMode, f: (tree: RenameTree, server: TestServer) => Promise<void>) => {
  const base = await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-attack-" }))
  const home = `${base}/home`
  try {
    await Deno.mkdir(`${home}/docs/v1`, { recursive: true })
    await Deno.mkdir(`${home}/c/up`, { recursive: true })
    await Deno.symlink("../..", `${home}/docs/v1/up`)
    await Deno.writeTextFile(`${home}/c/up/secret.txt`, "inside")
    await Deno.writeTextFile(`${home}/c/up/del.txt`, "inside")
    await Deno.writeTextFile(`${base}/secret.txt`, "OUTSIDE")
    await Deno.writeTextFile(`${base}/del.txt`, "OUTSIDE")
    const server = await startServer({ root: home, jail })
    try {
      await f({ base, home }, server)
    } finally {
      await server.close()
    }
  } finally {
    await Deno.remove(base, { recursive: true })
  }
}

/** Every entry directly in `dir` but `skip`, with mode, mtime and content: what must never change. */
const stateOf = async (dir: string, skip: ReadonlyArray<string>): Promise<string> => {
  const entries: string[] = []
  for await (const entry of Deno.readDir(dir)) {
    if (skip.includes(entry.name)) continue
    const info = await Deno.lstat(`${dir}/${entry.name}`)
    const content = info.isFile ? await Deno.readTextFile(`${dir}/${entry.name}`) : ""
    entries.push(`${entry.name} ${info.mode?.toString(8)} ${info.mtime?.getTime()} ${content}`)
  }
  return entries.sort().join("\n")
}

for (const jail of JAILS) {
  Deno.test(`${jail} jail: RNTO after another session swapped a directory under the RNFR path moves nothing from outside`, () =>
    withRenameTree(jail, async ({ base, home }, server) => {
      const outside = await stateOf(base, ["home"])
      const a = await loggedIn(server)
      const b = await loggedIn(server)
      try {
        assert.equal((await a.command("RNFR /c/up/secret.txt")).code, 350)
        // B moves /c away and puts the directory holding the link in its place: /c/up now leads to base.
        for (const [from, to] of [["/c", "/c-old"], ["/docs/v1", "/c"]]) {
          assert.equal((await b.command(`RNFR ${from}`)).code, 350)
          assert.equal((await b.command(`RNTO ${to}`)).code, 250)
        }
        assert.equal((await a.command("RNTO /loot.txt")).code, 550)
        assert.deepEqual((await receive(a, "RETR /loot.txt")).codes, [550])
        assert.deepEqual((await receive(a, "RETR /c/up/secret.txt")).codes, [550], "the link now leads outside")
        assert.equal(await stateOf(base, ["home"]), outside)
        assert.equal(await Deno.readTextFile(`${home}/c-old/up/secret.txt`), "inside")
      } finally {
        a.close()
        b.close()
      }
    }))

  Deno.test(`${jail} jail: one session swapping directories and links by RNFR/RNTO while another works never gets it outside`, () =>
    withRenameTree(jail, async ({ base }, server) => {
      const outside = await stateOf(base, ["home"])
      const attacker = await loggedIn(server)
      const swapper = await loggedIn(server)
      const until = Date.now() + 3000
      const swapping = (async () => {
        // /c is, in turn, the real directory and the one whose `up` link leads to base.
        const moves = [["/c", "/c_real"], ["/docs/v1", "/c"], ["/c", "/docs/v1"], ["/c_real", "/c"]]
        while (Date.now() < until) {
          for (const [from, to] of moves) {
            await swapper.command(`RNFR ${from}`)
            await swapper.command(`RNTO ${to}`)
          }
        }
      })()
      // Awaited below; until then a failure of the attacker's loop must not leave it unhandled.
      swapping.catch(() => undefined)
      let attempts = 0
      let inside = 0
      try {
        while (Date.now() < until) {
          attempts++
          const got = await receive(attacker, "RETR /c/up/secret.txt")
          assert.notEqual(got.data, "OUTSIDE", "RETR read a file outside the home")
          if (got.data === "inside") inside++
          await store(attacker, "STOR /c/up/new.txt")
          await attacker.command("SITE CHMOD 777 /c/up/secret.txt")
          await attacker.command("MFMT 20000101000000 /c/up/secret.txt")
          await attacker.command("DELE /c/up/del.txt")
          await attacker.command("MKD /c/up/newdir")
          await attacker.command("RMD /c/up/newdir")
        }
        await swapping
      } finally {
        attacker.close()
        swapper.close()
      }
      assert.ok(attempts > 20 && inside > 0, `${attempts} attempts, ${inside} read the inside file`)
      assert.equal(await stateOf(base, ["home"]), outside, "something outside the home changed")
    }))
}

/**
 * The child process that swaps `home/sw` between a real directory and a symlink to `outside`,
 * staying in each state for a random few hundred microseconds, so that operations meet both
 * states and every transition between them.
 */
const SWAPPER = `
const [home] = Deno.args
const spin = () => { const end = performance.now() + Math.random() * 0.4; while (performance.now() < end); }
for (;;) {
  for (const [from, to] of [["swdir", "sw"], ["sw", "swdir"], ["swlink", "sw"], ["sw", "swlink"]]) {
    try { Deno.renameSync(home + "/" + from, home + "/" + to) } catch { /* the other name is in the way: go on */ }
    spin()
  }
}
`

Deno.test("descriptor jail: a local process flipping a directory and a symlink to outside never gets an operation outside", async () => {
  const base = await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-race-" }))
  const home = `${base}/home`
  const outsideDir = `${base}/outside`
  let swapper: Deno.ChildProcess | undefined
  try {
    await Deno.mkdir(`${home}/swdir`, { recursive: true })
    await Deno.mkdir(outsideDir)
    for (const dir of [`${home}/swdir`, outsideDir]) {
      for (const name of ["secret.txt", "del.txt", "mv.txt"]) {
        await Deno.writeTextFile(`${dir}/${name}`, dir === outsideDir ? "OUTSIDE" : "inside")
      }
    }
    await Deno.symlink(outsideDir, `${home}/swlink`)
    const outside = await stateOf(outsideDir, [])
    await Deno.writeTextFile(`${base}/swapper.ts`, SWAPPER)
    swapper = new Deno.Command(Deno.execPath(), {
      args: ["run", `--allow-read=${base}`, `--allow-write=${base}`, `${base}/swapper.ts`, home],
      stdout: "null",
      stderr: "null",
    }).spawn()
    const server = await startServer({ root: home, jail: "descriptor" })
    const raw = await loggedIn(server)
    let attempts = 0
    let inside = 0
    try {
      const until = Date.now() + 3000
      while (Date.now() < until) {
        attempts++
        const got = await receive(raw, "RETR /sw/secret.txt")
        assert.ok(!got.data.includes("OUTSIDE"), "RETR read a file outside the home")
        // APPE below adds to the inside file.
        if (got.data.startsWith("inside")) inside++
        await store(raw, "STOR /sw/new.txt")
        await store(raw, "APPE /sw/secret.txt", "+")
        await raw.command("SITE CHMOD 777 /sw/secret.txt")
        await raw.command("MFMT 20000101000000 /sw/secret.txt")
        await raw.command("DELE /sw/del.txt")
        await raw.command("MKD /sw/newdir")
        await raw.command("RMD /sw/newdir")
        if ((await raw.command("RNFR /sw/mv.txt")).code === 350) await raw.command("RNTO /loot.txt")
        if ((await raw.command("RNFR /loot.txt")).code === 350) await raw.command("RNTO /sw/mv.txt")
      }
    } finally {
      raw.close()
      await server.close()
    }
    assert.ok(attempts > 20 && inside > 0, `${attempts} attempts, ${inside} read the inside file`)
    swapper.kill("SIGKILL")
    await swapper.status
    swapper = undefined
    assert.equal(await stateOf(outsideDir, []), outside, "something outside the home changed")
    const loot = await Deno.readTextFile(`${home}/loot.txt`).catch(() => "")
    assert.ok(!loot.includes("OUTSIDE"), "RNTO moved a file from outside into the home")
  } finally {
    if (swapper !== undefined) {
      swapper.kill("SIGKILL")
      await swapper.status
    }
    await Deno.remove(base, { recursive: true })
  }
})

// --- native-TLS data sockets ---------------------------------------------------------------------

/** A control connection that has done AUTH TLS, PBSZ, PROT P and logged in. */
const ftpsLoggedIn = async (port: number, ca: string): Promise<RawClient> => {
  const raw = await RawClient.connect(port)
  const expect = async (line: string, code: number) => {
    const reply = await raw.command(line)
    assert.equal(reply.code, code, `${line}: ${reply.lines.join("|")}`)
  }
  await expect("AUTH TLS", 234)
  raw.conn = await Deno.startTls(raw.conn as Deno.TcpConn, { hostname: "localhost", caCerts: [ca] })
  await expect("PBSZ 0", 200)
  await expect("PROT P", 200)
  await raw.login()
  await expect("TYPE I", 200)
  return raw
}

/** A TCP connection from `localAddress` that says nothing. */
const silentFrom = (port: number, localAddress: string): Promise<net.Socket> =>
  new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port, localAddress })
    socket.once("connect", () => resolve(socket))
    socket.once("error", reject)
  })

Deno.test("1,000 PROT P RETR+ABOR cycles and 100 silent foreign connections leave the server's descriptors at their baseline", async () => {
  const cert = await makeCertificate()
  const silent: Deno.Conn[] = []
  const foreign: net.Socket[] = []
  try {
    await withChildServer({ tls: { cert: cert.cert, key: cert.key } }, async (server) => {
      await Deno.writeFile(`${server.root}/big.bin`, new Uint8Array(4 << 20))
      const raw = await ftpsLoggedIn(server.port, cert.cert)
      try {
        assert.match(await Deno.readTextFile(`/proc/${server.pid}/cmdline`), /run/)
        // One cycle first, so that whatever the runtime opens once is in the baseline.
        const cycle = async () => {
          const port = await raw.epsvPort()
          // The attacker's data connection: connected, then silent (no TLS handshake), and never closed.
          silent.push(await Deno.connect({ hostname: "127.0.0.1", port }))
          assert.equal((await raw.command("RETR big.bin")).code, 150)
          await raw.send("ABOR")
          const codes = [(await raw.readReply()).code]
          if (codes[0] !== 225) codes.push((await raw.readReply()).code)
          assert.ok([[426, 226], [225]].some((c) => c.join() === codes.join()), codes.join())
        }
        await cycle()
        await sleep(200)
        const baseline = server.fds()
        for (let i = 0; i < 1000; i++) await cycle()

        // Connections from another address to a user's PROT P port, with no login at all.
        const port = await raw.epsvPort()
        assert.equal((await raw.command("RETR big.bin")).code, 150)
        for (let i = 0; i < 100; i++) foreign.push(await silentFrom(port, "127.0.0.2"))
        await raw.send("ABOR")
        await raw.readReply()
        await raw.readReply()
        assert.equal((await raw.command("NOOP")).code, 200)
        await eventually(() => server.fds() <= baseline, 10_000, `the server's descriptors back to ${baseline}`)
        assert.equal((await raw.command("NOOP")).code, 200, "the session goes on")
      } finally {
        raw.close()
      }
    })
  } finally {
    for (const conn of silent) closeQuietly(conn)
    for (const socket of foreign) socket.destroy()
    await cert.remove()
  }
})

// --- logs and names ------------------------------------------------------------------------------

// deno-lint-ignore no-control-regex -- finding control characters is the point
const RAW_CONTROL = /[\x00-\x1f\x7f-\x9f]/

Deno.test("no log line carries a raw control character from a client, in user names, paths or commands", async () => {
  const server = await startServer({ debug: true })
  try {
    const forged = "evil\r[I 2026-12-03 06:00:00] 127.0.0.1:1-[admin] USER 'admin' logged in."
    const escapes = "\x1b]0;pwned\x07\x1b[2J\u009b31m\u0000\b"
    const raw = await RawClient.connect(server.port)
    try {
      for (const name of [forged, escapes]) {
        assert.equal((await raw.command(`USER ${name}`)).code, 331)
        assert.equal((await raw.command("PASS wrong")).code, 530)
      }
    } finally {
      raw.close()
    }
    const user = await loggedIn(server)
    try {
      for (
        const command of ["DELE \x1b[31mred", "CWD \r\x1b", "RNFR \x07bell", "SITE CHMOD 600 \x1b[2J", "MKD a\u0085b"]
      ) {
        await user.command(command)
      }
    } finally {
      user.close()
    }
    await eventually(() => server.logs.some((line) => line.includes("FTP session closed")), 2000)
    assert.ok(server.logs.some((line) => line.includes("USER 'evil\\r[I 2026-12-03")), server.logs.join("\n"))
    assert.ok(server.logs.some((line) => line.includes("\\x1b]0;pwned\\x07")), server.logs.join("\n"))
    for (const line of server.logs) {
      assert.ok(!RAW_CONTROL.test(line), `raw control character in ${JSON.stringify(line)}`)
    }
  } finally {
    await server.close()
  }
})

Deno.test("names with control characters are refused at creation (MKD, STOR, APPE, STOU, RNTO: 553) and nothing is created", () =>
  withLoggedIn({}, async (server, raw) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "a")
    const before = [...Deno.readDirSync(server.root)].map((e) => e.name).sort()
    for (const name of ["\x1b[31mred", "a\rb", "tab\there", "nul\u0000", "c1\u009b", "del\u007f"]) {
      assert.equal((await raw.command(`MKD ${name}`)).code, 553, `MKD ${JSON.stringify(name)}`)
      assert.deepEqual(await store(raw, `STOR ${name}`), [553], `STOR ${JSON.stringify(name)}`)
      assert.deepEqual(await store(raw, `APPE ${name}`), [553], `APPE ${JSON.stringify(name)}`)
      assert.deepEqual(await store(raw, `STOU ${name}`), [553], `STOU ${JSON.stringify(name)}`)
      assert.equal((await raw.command("RNFR a.txt")).code, 350)
      assert.equal((await raw.command(`RNTO ${name}`)).code, 553, `RNTO ${JSON.stringify(name)}`)
    }
    assert.deepEqual([...Deno.readDirSync(server.root)].map((e) => e.name).sort(), before)
    assert.equal((await raw.command("NOOP")).code, 200)
  }))

Deno.test("LIST, NLST, MLSD and STAT show control characters in a name made by a local process as ?", () =>
  withLoggedIn({}, async (server, raw) => {
    await Deno.writeTextFile(`${server.root}/evil\x1b[31mname\rx`, "")
    for (const command of ["LIST", "NLST", "MLSD"]) {
      const { codes, data } = await receive(raw, command)
      assert.deepEqual(codes, [150, 226])
      assert.ok(data.includes("evil?[31mname?x"), `${command}: ${JSON.stringify(data)}`)
      assert.ok(!RAW_CONTROL.test(data.replaceAll("\r\n", "")), `${command}: ${JSON.stringify(data)}`)
    }
    const stat = await raw.command("STAT /")
    assert.ok(stat.lines.some((line) => line.endsWith("evil?[31mname?x")), stat.lines.join("|"))
  }))

// --- huge directories ----------------------------------------------------------------------------

/** A directory of `count` empty files, made by `touch` (much faster than one call per file here). */
const hugeDirectory = async (dir: string, count: number) => {
  await Deno.mkdir(dir, { recursive: true })
  const script = `seq 1 ${count} | sed 's/^/entry-with-a-name-of-some-length-/' | xargs touch`
  const out = await new Deno.Command("sh", { args: ["-c", script], cwd: dir }).output()
  assert.ok(out.success, decoder.decode(out.stderr))
}

/**
 * Python's ftplib reads the 200,000-line replies in processes of their own, so that the NOOP
 * prober in this process measures the server and not this event loop parsing them. `STAT` prints
 * the reply's line count; `LIST` prints the listing's line count and the final reply code.
 */
const HUGE_READER = `
import ftplib, sys
ftp = ftplib.FTP()
ftp.connect("127.0.0.1", int(sys.argv[1]), timeout=120)
ftp.login("user", "pass")
if sys.argv[2] == "STAT":
    print(len(ftp.sendcmd("STAT /big").split("\\n")))
else:
    lines = []
    reply = ftp.retrlines("LIST /big", lines.append)
    print(len(lines), reply[:3])
ftp.quit()
`

const readHuge = async (port: number, what: "STAT" | "LIST"): Promise<string> => {
  const out = await new Deno.Command("python3", {
    args: ["-c", HUGE_READER, String(port), what],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output()
  assert.ok(out.success, `${what}: ${decoder.decode(out.stderr)}`)
  return decoder.decode(out.stdout).trim()
}

for (const jail of JAILS) {
  Deno.test(`${jail} jail: another session's NOOP answers within 100 ms while STAT and LIST of 200,000 entries run`, async () => {
    if (!(await installed("python3", "python3"))) return
    const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-huge-" }))
    try {
      await hugeDirectory(`${root}/big`, 200_000)
      await withChildServer({ root, jail }, async (server) => {
        const noop = await loggedIn(server.port)
        try {
          let done = false
          const finished = Promise.all([readHuge(server.port, "STAT"), readHuge(server.port, "LIST")])
            .finally(() => (done = true))
          let worst = 0
          let noops = 0
          while (!done) {
            const t0 = performance.now()
            assert.equal((await timed(noop.command("NOOP"), 10_000, "NOOP")).code, 200)
            worst = Math.max(worst, performance.now() - t0)
            noops++
            await sleep(10)
          }
          const [statLines, listed] = await finished
          assert.equal(statLines, "200002", "STAT lists every entry between its first and last line")
          assert.equal(listed, "200000 226")
          assert.ok(noops > 5 && worst < 100, `${noops} NOOPs, the slowest took ${worst.toFixed(1)} ms`)
        } finally {
          noop.close()
        }
      })
    } finally {
      await Deno.remove(root, { recursive: true })
    }
  })
}

// --- smaller items -------------------------------------------------------------------------------

Deno.test("SITE CHMOD refuses setuid, setgid and sticky bits with 550 unless permitSpecialModeBits", async () => {
  await withLoggedIn({}, async (server, raw) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "a")
    await Deno.chmod(`${server.root}/a.txt`, 0o644)
    for (const mode of ["4777", "2755", "1777", "7777"]) {
      assert.equal((await raw.command(`SITE CHMOD ${mode} a.txt`)).code, 550, mode)
    }
    assert.equal((await Deno.stat(`${server.root}/a.txt`)).mode! & 0o7777, 0o644)
    assert.equal((await raw.command("SITE CHMOD 0777 a.txt")).code, 200)
    assert.equal((await Deno.stat(`${server.root}/a.txt`)).mode! & 0o7777, 0o777)
  })
  await withLoggedIn({ permitSpecialModeBits: true }, async (server, raw) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "a")
    assert.equal((await raw.command("SITE CHMOD 4755 a.txt")).code, 200)
    assert.equal((await Deno.stat(`${server.root}/a.txt`)).mode! & 0o7777, 0o4755)
  })
})

Deno.test("MFMT refuses a time past year 9999 and every out-of-range field with 501", () =>
  withLoggedIn({}, async (server, raw) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "a")
    const before = (await Deno.stat(`${server.root}/a.txt`)).mtime?.getTime()
    for (const time of ["99991231235960", "20261321000000", "20260230000000", "20261121240000", "20261121146000"]) {
      assert.equal((await raw.command(`MFMT ${time} a.txt`)).code, 501, time)
    }
    assert.equal((await Deno.stat(`${server.root}/a.txt`)).mtime?.getTime(), before)
    const last = await raw.command("MFMT 99991231235959 a.txt")
    assert.deepEqual([last.code, last.text], [213, "Modify=99991231235959; /a.txt."])
  }))

Deno.test("MLST, MLSD and LIST give FIFOs and sockets their own types", () =>
  withLoggedIn({}, async (server, raw) => {
    const fifo = await new Deno.Command("mkfifo", { args: [`${server.root}/pipe`] }).output()
    assert.ok(fifo.success)
    const socket = Deno.listen({ transport: "unix", path: `${server.root}/sock` })
    try {
      assert.match((await raw.command("MLST pipe")).lines[1], /type=OS\.unix=fifo;/)
      assert.match((await raw.command("MLST sock")).lines[1], /type=OS\.unix=socket;/)
      const mlsd = (await receive(raw, "MLSD")).data
      assert.match(mlsd, /type=OS\.unix=fifo;.* pipe\r\n/)
      assert.match(mlsd, /type=OS\.unix=socket;.* sock\r\n/)
      const list = (await receive(raw, "LIST")).data
      assert.match(list, /^p[-rwx]{9} .* pipe\r$/m)
      assert.match(list, /^s[-rwx]{9} .* sock\r$/m)
    } finally {
      socket.close()
    }
  }))

/** A 1 MiB tmpfs for `f`, or `undefined` when this process may not mount one (not root, in a container). */
const withFullDisk = async (f: (dir: string) => Promise<void>): Promise<boolean> => {
  const dir = await Deno.makeTempDir({ prefix: "ftpd-full-" })
  try {
    const mounted = await new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir],
      stdout: "null",
      stderr: "null",
    }).output().catch(() => undefined)
    if (!mounted?.success) return false
    try {
      await f(dir)
    } finally {
      await new Deno.Command("umount", { args: [dir] }).output()
    }
    return true
  } finally {
    await Deno.remove(dir, { recursive: true })
  }
}

Deno.test("an upload that fills the disk replies 452 and its log line counts the bytes the file holds", async () => {
  const ran = await withFullDisk(async (root) => {
    const server = await startServer({ root })
    try {
      const raw = await loggedIn(server)
      try {
        const conn = await raw.passive()
        assert.equal((await raw.command("STOR big.bin")).code, 150)
        await writeAllAndClose(conn, new Uint8Array(3 << 20).fill(1)).catch(() => undefined)
        closeQuietly(conn)
        assert.equal((await raw.readReply()).code, 452)
        assert.equal((await raw.command("NOOP")).code, 200)
      } finally {
        raw.close()
      }
      const size = (await Deno.stat(`${root}/big.bin`)).size
      assert.ok(size > 0 && size < 3 << 20, String(size))
      await eventually(() => server.logs.some((line) => line.includes("STOR /big.bin completed=0")))
      const line = server.logs.find((line) => line.includes("STOR /big.bin completed=0"))!
      assert.match(line, new RegExp(` bytes=${size} `), `${line} (the file holds ${size} bytes)`)
    } finally {
      await server.close()
    }
  })
  if (!ran) console.warn("skipped: this test mounts a 1 MiB tmpfs, which needs root (mount -t tmpfs)")
})

Deno.test("STAT with a path during a transfer reports the transfer, so a session runs one listing at a time", () =>
  withLoggedIn({}, async (server, raw) => {
    // Far more than the socket buffers hold: the transfer runs until the client reads.
    await sparseFile(`${server.root}/big.bin`, 256 << 20)
    const conn = await raw.passive()
    try {
      assert.equal((await raw.command("RETR big.bin")).code, 150)
      const stat = await raw.command("STAT /")
      assert.equal(stat.code, 211)
      assert.match(stat.lines.join("\n"), /Data connection open: RETR \/big\.bin/)
      await readAll(conn)
      assert.equal((await raw.readReply()).code, 226)
    } finally {
      closeQuietly(conn)
    }
  }))
