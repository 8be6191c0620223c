/**
 * Each example in examples/ runs as its own process, serves what it demonstrates to real clients,
 * and exits with 130 on SIGINT.
 */
import { Client } from "basic-ftp"
import assert from "node:assert/strict"
import { Readable, Writable } from "node:stream"
import { curl, eventually, makeCertificate, RawClient, sha256, writeAllAndClose } from "./helpers.ts"

const repo = new URL("..", import.meta.url)

/** An example running as a subprocess on 127.0.0.1. */
interface Example {
  readonly port: number
  /** Everything it wrote to standard output and standard error so far. */
  readonly output: () => string
  /** Wait until its output matches `pattern`. */
  readonly waitFor: (pattern: RegExp, timeoutMs?: number) => Promise<RegExpMatchArray>
  /** Send SIGINT; the exit code, or a failure when it has not exited within 5 seconds. */
  readonly stop: () => Promise<number>
}

/**
 * Run `examples/<name>.ts --host 127.0.0.1 --port 0 --directory <temp dir> ...args`, read its port
 * from the start banner, call `body`, then stop it and expect exit code 130. The process and the
 * directory are gone afterwards whatever happens.
 */
const withExample = async (
  name: string,
  args: ReadonlyArray<string>,
  body: (example: Example, dir: string) => Promise<void>,
): Promise<void> => {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-example-" }))
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `examples/${name}.ts`, "--host", "127.0.0.1", "--port", "0", "--directory", dir, ...args],
    cwd: repo,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn()
  let output = ""
  const collect = (stream: ReadableStream<Uint8Array>) =>
    stream.pipeThrough(new TextDecoderStream()).pipeTo(new WritableStream({ write: (text) => void (output += text) }))
  const drained = Promise.all([collect(child.stdout), collect(child.stderr)])
  let exited = false
  const status = child.status.finally(() => (exited = true))
  const waitFor = async (pattern: RegExp, timeoutMs = 10_000) => {
    await eventually(() => pattern.test(output) || exited, timeoutMs, `${pattern} in the output of ${name}`)
    const match = output.match(pattern)
    if (match === null) throw new Error(`${name} exited without printing ${pattern}:\n${output}`)
    return match
  }
  const stop = async () => {
    if (!exited) child.kill("SIGINT")
    let timer: ReturnType<typeof setTimeout> | undefined
    const timeout = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), 5000)))
    const result = await Promise.race([status, timeout]).finally(() => clearTimeout(timer))
    if (result === "timeout") throw new Error(`${name} did not exit within 5 s of SIGINT:\n${output}`)
    return result.code
  }
  try {
    // The first run of an example may compile it: give it time.
    const port = Number((await waitFor(/>>> starting FTP server on 127\.0\.0\.1:(\d+)/, 60_000))[1])
    await body({ port, output: () => output, waitFor, stop }, dir)
    assert.equal(await stop(), 130, output)
    assert.match(output, />>> shutting down FTP server/)
  } finally {
    if (!exited) child.kill("SIGKILL")
    await status
    await drained
    await Deno.remove(dir, { recursive: true })
  }
}

const connect = async (port: number): Promise<Client> => {
  const client = new Client(10_000)
  try {
    await client.access({ host: "127.0.0.1", port, user: "user", password: "12345" })
    return client
  } catch (error) {
    client.close()
    throw error
  }
}

const upload = (client: Client, data: Uint8Array, path: string) => client.uploadFrom(Readable.from([data]), path)

const download = async (client: Client, path: string): Promise<Uint8Array> => {
  const chunks: Uint8Array[] = []
  await client.downloadTo(new Writable({ write: (chunk, _encoding, done) => (chunks.push(chunk), done()) }), path)
  return new Uint8Array(Buffer.concat(chunks))
}

const exists = (path: string) => Deno.stat(path).then(() => true, () => false)

Deno.test("basic_ftpd: banner, full-access user, read-only anonymous, passive range, 5 sessions per IP", async () => {
  const from = 40_000 + Math.floor(Math.random() * 20_000)
  const to = from + 19
  await withExample("basic_ftpd", ["--passive-ports", `${from}-${to}`], async ({ port }, dir) => {
    const raws: RawClient[] = []
    try {
      for (let i = 0; i < 5; i++) raws.push(await RawClient.connect(port))
      assert.match(raws[0].greeting.text, /^ftpd \S+ based ftpd ready\.$/)
      const sixth = await RawClient.connect(port)
      sixth.close()
      assert.equal(sixth.greeting.code, 421)
      assert.equal(sixth.greeting.text, "Too many connections from the same IP address.")
      await raws[0].login("user", "12345")
      const epsv = await raws[0].command("EPSV")
      const passivePort = Number(/\(\|\|\|(\d+)\|\)/.exec(epsv.text)?.[1])
      assert.ok(passivePort >= from && passivePort <= to, `passive port ${passivePort} in ${from}-${to}`)
    } finally {
      for (const raw of raws) raw.close()
    }

    // The server frees the slots of the five sessions once it sees them close.
    let client: Client | undefined
    await eventually(async () => (client = await connect(port).catch(() => undefined)) !== undefined, 5000, "a slot")
    try {
      await upload(client!, new TextEncoder().encode("hello"), "hello.txt")
      assert.equal(await Deno.readTextFile(`${dir}/hello.txt`), "hello")
    } finally {
      client?.close()
    }
    const anonymous = await curl(`ftp://127.0.0.1:${port}/hello.txt`)
    assert.equal(new TextDecoder().decode(anonymous.stdout), "hello")
    const refused = await curl("-T", "/dev/null", `ftp://127.0.0.1:${port}/anon.txt`)
    assert.equal(refused.code, 25, refused.stderr) // curl's "upload failed"
    assert.match(refused.stderr, /550/)
    assert.equal(await exists(`${dir}/anon.txt`), false)
  })
})

Deno.test("custom_site: SITE UPTIME and SITE WHOAMI reply and are listed with their help in SITE HELP", async () => {
  await withExample("custom_site", [], async ({ port }, dir) => {
    const raw = await RawClient.connect(port)
    try {
      assert.equal((await raw.command("SITE UPTIME")).code, 530)
    } finally {
      raw.close()
    }
    await Deno.mkdir(`${dir}/sub`)
    const client = await connect(port)
    try {
      const help = await client.send("SITE HELP")
      assert.equal(help.code, 214)
      for (const name of ["CHMOD", "HELP", "UPTIME", "WHOAMI"]) {
        assert.match(help.message, new RegExp(`^ ${name}$`, "m"))
      }
      const uptimeHelp = await client.send("SITE HELP UPTIME")
      assert.equal(uptimeHelp.message, "214 Syntax: SITE UPTIME (show how long the server has been running).")
      assert.match((await client.send("SITE UPTIME")).message, /^200 Up \d+ seconds\.$/)
      await client.cd("sub")
      assert.equal((await client.send("SITE WHOAMI")).message, "200 You are user from 127.0.0.1, in /sub.")
    } finally {
      client.close()
    }
  })
})

Deno.test("slow_hook: the .sha256 file appears after the delay while both sessions are served promptly", async () => {
  const delay = 3
  await withExample("slow_hook", ["--delay", String(delay)], async ({ port, waitFor }, dir) => {
    const data = crypto.getRandomValues(new Uint8Array(60_000))
    const uploader = await connect(port)
    const other = await connect(port)
    try {
      const uploadStarted = Date.now()
      await upload(uploader, data, "data.bin")
      // The hook starts after the upload has begun, so its file can't exist before this deadline.
      const hookDeadline = uploadStarted + delay * 1000
      const served = Date.now()
      assert.deepEqual((await uploader.list()).map((f) => f.name), ["data.bin"])
      assert.deepEqual(await download(other, "data.bin"), data)
      assert.equal((await other.send("NOOP")).code, 200)
      const elapsed = Date.now() - served
      assert.ok(Date.now() < hookDeadline, `commands took ${elapsed} ms, past the hook's ${delay} s delay`)
      assert.equal(await exists(`${dir}/data.bin.sha256`), false)
    } finally {
      uploader.close()
      other.close()
    }
    await eventually(() => exists(`${dir}/data.bin.sha256`), 10_000, "data.bin.sha256")
    await waitFor(/wrote .*data\.bin\.sha256/)
    assert.equal(await Deno.readTextFile(`${dir}/data.bin.sha256`), `${await sha256(data)}  data.bin\n`)
  })
})

Deno.test("effect_app: serves uploads and its stats fiber logs sessions and files from the hooks", async () => {
  await withExample("effect_app", ["--stats-interval", "0.2"], async ({ port, waitFor }, dir) => {
    await waitFor(/stats: 0 session\(s\) open, 0 file\(s\) received/)
    const client = await connect(port)
    try {
      await upload(client, new TextEncoder().encode("from the app"), "app.txt")
      await waitFor(/stats: 1 session\(s\) open, 1 file\(s\) received/)
    } finally {
      client.close()
    }
    await waitFor(/stats: 0 session\(s\) open, 1 file\(s\) received/)
    assert.equal(await Deno.readTextFile(`${dir}/app.txt`), "from the app")
  })
})

Deno.test("workers_ftpd: two workers serve one port, each from its slice, and the per-IP limit holds across them", async () => {
  const from = 20000 + Math.floor(Math.random() * 10000)
  const args = ["--workers", "2", "--passive-ports", `${from}-${from + 19}`]
  await withExample("workers_ftpd", args, async ({ port, waitFor }, dir) => {
    await waitFor(
      new RegExp(`>>> 2 workers on port ${port}, passive ports worker 1: ${from}-${from + 9}, worker 2: ${from + 10}-`),
    )
    const clients = await Promise.all(Array.from({ length: 5 }, () => connect(port)))
    try {
      await Promise.all(clients.map(async (client, i) => {
        const data = new TextEncoder().encode(`client ${i}\n`.repeat(1000))
        await upload(client, data, `from-${i}.txt`)
        assert.deepEqual(await download(client, `from-${i}.txt`), data)
      }))
      // maxConsPerIp is 5 for the whole server, whichever worker the sixth connection reaches.
      const sixth = await RawClient.connect(port)
      sixth.close()
      assert.equal(sixth.greeting.code, 421, sixth.greeting.text)
    } finally {
      for (const client of clients) client.close()
    }
    assert.equal((await Array.fromAsync(Deno.readDir(dir))).length, 5)
  })
})

Deno.test("tls_ftpd: explicit FTPS with basic-ftp, implicit FTPS with curl, and no login in clear", async () => {
  const cert = await makeCertificate()
  try {
    const args = ["--certfile", cert.certFile, "--keyfile", cert.keyFile, "--implicit-port", "0"]
    await withExample("tls_ftpd", args, async ({ port, waitFor }, dir) => {
      const banner = await waitFor(
        /TLS: explicit \(AUTH TLS\) on the control port, implicit TLS on 127\.0\.0\.1:(\d+);.*/,
      )
      assert.match(banner[0], /control required: yes/)
      const implicitPort = Number(banner[1])

      const data = new TextEncoder().encode("sent over TLS only\n")
      const client = new Client(10_000)
      try {
        await client.access({
          host: "127.0.0.1",
          port,
          user: "user",
          password: "12345",
          secure: true,
          secureOptions: { ca: cert.cert, servername: "localhost" },
        })
        await upload(client, data, "secret.txt")
        assert.deepEqual((await client.list()).map((f) => f.name), ["secret.txt"])
        assert.deepEqual(await download(client, "secret.txt"), data)
      } finally {
        client.close()
      }
      assert.deepEqual(await Deno.readFile(`${dir}/secret.txt`), data)

      // curl checks the certificate against the test's own, for 127.0.0.1.
      const implicit = await curl("--cacert", cert.certFile, `ftps://user:12345@127.0.0.1:${implicitPort}/secret.txt`)
      assert.equal(implicit.code, 0, implicit.stderr)
      assert.deepEqual(implicit.stdout, data)

      const plain = await RawClient.connect(port)
      try {
        const user = await plain.command("USER user")
        assert.equal(user.code, 530)
        assert.match(user.text, /AUTH TLS/)
      } finally {
        plain.close()
      }
    })
  } finally {
    await cert.remove()
  }
})

Deno.test("virtual_hosts: HOST picks the site, each with its own password and home; no HOST is the default site", async () => {
  await withExample("virtual_hosts", [], async ({ port, waitFor }, dir) => {
    /** Log in (after HOST, if given) and store `name`; the replies of HOST and PASS. */
    const store = async (host: string | null, password: string, name: string) => {
      const raw = await RawClient.connect(port)
      try {
        const hostReply = host === null ? null : (await raw.command(`HOST ${host}`)).code
        await raw.command("USER user")
        const pass = (await raw.command(`PASS ${password}`)).code
        if (pass === 230) {
          const data = await raw.passive()
          assert.equal((await raw.command(`STOR ${name}`)).code, 150)
          await writeAllAndClose(data, new TextEncoder().encode(name))
          assert.equal((await raw.readReply()).code, 226)
          data.close()
        }
        return { host: hostReply, pass }
      } finally {
        raw.close()
      }
    }
    assert.deepEqual(await store("B.Example", "67890", "to-b.txt"), { host: 220, pass: 230 })
    assert.equal(await Deno.readTextFile(`${dir}/b.example/to-b.txt`), "to-b.txt")
    assert.deepEqual(await store(null, "12345", "to-a.txt"), { host: null, pass: 230 })
    assert.equal(await Deno.readTextFile(`${dir}/a.example/to-a.txt`), "to-a.txt")
    assert.equal((await store(null, "67890", "x")).pass, 530, "site B's password is not site A's")
    assert.equal((await store("other.example", "12345", "x")).host, 504)
    assert.equal(await exists(`${dir}/b.example/to-a.txt`), false)
    await waitFor(/user@b\.example logged in to b\.example/)
    await waitFor(/user@a\.example logged in to a\.example \(no HOST\)/)
  })
})

Deno.test("custom_filesystem: /scratch is kept in memory, executables are refused with 553, the rest goes to disk", async () => {
  await withExample("custom_filesystem", [], async ({ port, output }, dir) => {
    assert.match(
      output(),
      /filesystem: local disk, .*; \/scratch mounted from memory:\/ \(memory \(at most 67108864 bytes\)\)/,
    )
    const client = await connect(port)
    try {
      await upload(client, new TextEncoder().encode("on disk"), "notes.txt")
      assert.equal(await Deno.readTextFile(`${dir}/notes.txt`), "on disk")
      await upload(client, new TextEncoder().encode("in memory"), "/scratch/notes.txt")
      assert.equal(new TextDecoder().decode(await download(client, "/scratch/notes.txt")), "in memory")
      assert.equal(await exists(`${dir}/scratch`), false, "nothing of /scratch on disk")
      assert.deepEqual((await client.list("/")).map((entry) => entry.name).sort(), ["notes.txt", "scratch"])
      await assert.rejects(upload(client, new Uint8Array(10), "setup.exe"), /553/)
      await assert.rejects(upload(client, new Uint8Array(10), "/scratch/run.BAT"), /553/)
      assert.equal(await exists(`${dir}/setup.exe`), false)
    } finally {
      client.close()
    }
  })
})

Deno.test("sqlite_users: users from a SQLite table with hashed passwords; a user added while it runs logs in", async () => {
  const { DatabaseSync } = await import("node:sqlite")
  const { hashPassword } = await import("../mod.ts")
  const dbDir = await Deno.makeTempDir({ prefix: "ftpd-sqlite-" })
  const db = `${dbDir}/users.db`
  try {
    await withExample("sqlite_users", ["--db", db], async ({ port, waitFor }, dir) => {
      await waitFor(/added user "user"/)
      await Deno.writeTextFile(`${dir}/hello.txt`, "hello")
      const client = await connect(port)
      try {
        assert.equal(new TextDecoder().decode(await download(client, "hello.txt")), "hello")
      } finally {
        client.close()
      }
      const reader = new DatabaseSync(db)
      try {
        const stored = reader.prepare("SELECT hash FROM users WHERE name = 'user'").get() as { hash: string }
        assert.match(stored.hash, /^\$argon2id\$/)
        assert.ok(!stored.hash.includes("12345"))
        await Deno.mkdir(`${dir}/carol`)
        reader.prepare("INSERT INTO users VALUES (?, ?, ?, ?)").run("carol", await hashPassword("c-pw"), "carol", "elr")
      } finally {
        reader.close()
      }
      const raw = await RawClient.connect(port)
      try {
        await raw.command("USER user")
        assert.equal((await raw.command("PASS wrong")).code, 530)
        await raw.login("carol", "c-pw")
        assert.equal((await raw.command("PWD")).code, 257)
        assert.equal((await raw.command("MKD nope")).code, 550)
      } finally {
        raw.close()
      }
    })
  } finally {
    await Deno.remove(dbDir, { recursive: true })
  }
})
