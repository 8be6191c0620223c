/**
 * `ftpd` as a new user first meets it: `deno task serve` from wherever they are, the start banner
 * saying what is shared with whom, and a startup that fails (a port in use, an address this
 * machine does not have, a privileged port) saying so in one line and exiting 2.
 */
import assert from "node:assert/strict"
import { makeCertificate, nobodyCantRun, RawClient } from "./helpers.ts"

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "")
const CLI = `${ROOT}/src/cli.ts`
const decoder = new TextDecoder()

/** Run the CLI with `permissions`, wait for it, and return its exit code and output. */
const runCli = async (permissions: string[], args: string[]) => {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...permissions, CLI, ...args],
    stdin: "null",
    env: { NO_COLOR: "1" },
  }).output()
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) }
}

/** A fresh temporary directory with `hello.txt`, removed after `f`. */
const withShare = async (f: (dir: string) => Promise<void>, parent?: string): Promise<void> => {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-startup-", dir: parent }))
  try {
    await Deno.writeTextFile(`${dir}/hello.txt`, "hello\n")
    await f(dir)
  } finally {
    await Deno.remove(dir, { recursive: true })
  }
}

/** A running `ftpd`: its port (from the banner), the banner so far, and how to stop it. */
interface Running {
  readonly port: number
  readonly log: () => string
  /** SIGINT, then the exit code (the process is killed if it has not exited 5 s later). */
  readonly stop: () => Promise<number>
}

/** Spawn `command` (an ftpd, or a `deno task` running one) and wait for its start banner. */
const started = async (command: Deno.Command): Promise<Running> => {
  const process = command.spawn()
  let log = ""
  const banner = Promise.withResolvers<number>()
  const drained = (async () => {
    for await (const chunk of process.stderr.pipeThrough(new TextDecoderStream())) {
      log += chunk
      const match = />>> starting FTP server on 127\.0\.0\.1:(\d+), pid=\d+ <<<[^]*\] TLS: /.exec(log)
      if (match) banner.resolve(Number(match[1]))
    }
    banner.reject(new Error(`exited before its banner:\n${log}`))
  })()
  const kill = () => {
    try {
      process.kill("SIGKILL")
    } catch {
      // Exited already.
    }
  }
  const stop = async () => {
    try {
      process.kill("SIGINT")
    } catch {
      // Exited already.
    }
    const timer = setTimeout(kill, 5000)
    const { code } = await process.status
    clearTimeout(timer)
    await drained
    return code
  }
  const timer = setTimeout(() => banner.reject(new Error(`no banner within 20 s:\n${log}`)), 20_000)
  try {
    return { port: await banner.promise, log: () => log, stop }
  } catch (error) {
    kill()
    await Promise.all([process.status, drained])
    throw error
  } finally {
    clearTimeout(timer)
  }
}

const ftpd = (dir: string, args: string[], permissions: string[] = []) =>
  new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      "--allow-net=127.0.0.1",
      `--allow-read=${dir}`,
      ...permissions,
      CLI,
      ...["-i", "127.0.0.1", "-p", "0", "-d", dir, ...args],
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  })

/** The banner line saying what is served, without its log prefix. */
const servingLine = (log: string): string | undefined => /\] (serving .*)$/m.exec(log)?.[1]

// --- the start banner ----------------------------------------------------------------------------

Deno.test("the banner says which folder is shared, anonymous and read-only by default", async () => {
  await withShare(async (dir) => {
    const server = await started(ftpd(dir, []))
    assert.equal(servingLine(server.log()), `serving ${dir}: anonymous read-only (elr)`)
    assert.equal(await server.stop(), 130)
  })
})

Deno.test("the banner says -w gives anonymous users write access, and -u/-P who alone may log in", async () => {
  await withShare(async (dir) => {
    const writable = await started(ftpd(dir, ["-w"], [`--allow-write=${dir}`]))
    assert.equal(servingLine(writable.log()), `serving ${dir}: anonymous read-write (elradfmwMT)`)
    assert.equal(await writable.stop(), 130)
    const bob = await started(ftpd(dir, ["-u", "bob", "-P", "secret", "-w"], [`--allow-write=${dir}`]))
    assert.equal(servingLine(bob.log()), `serving ${dir}: user bob read-write (elradfmwMT)`)
    assert.ok(!bob.log().includes("secret"), "the password is in the log")
    assert.equal(await bob.stop(), 130)
  })
})

// --- startup failures ----------------------------------------------------------------------------

Deno.test("a control port already in use exits 2 with one error line", async () => {
  await withShare(async (dir) => {
    using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 })
    const port = (taken.addr as Deno.NetAddr).port
    const { code, stdout, stderr } = await runCli(
      ["--allow-net=127.0.0.1", `--allow-read=${dir}`],
      ["-i", "127.0.0.1", "-p", String(port), "-d", dir],
    )
    assert.equal(code, 2)
    assert.equal(stdout, "")
    assert.equal(stderr, `ftpd: error: 127.0.0.1:${port} is already in use\n`)
  })
})

Deno.test("an implicit TLS port already in use exits 2 with one error line", async () => {
  const cert = await makeCertificate()
  try {
    await withShare(async (dir) => {
      using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 })
      const port = (taken.addr as Deno.NetAddr).port
      const { code, stderr } = await runCli(
        ["--allow-net=127.0.0.1", `--allow-read=${dir},${cert.dir}`],
        ["-i", "127.0.0.1", "-p", "0", "-d", dir, "--tls", "--certfile", cert.certFile, "--keyfile", cert.keyFile, ...[
          "--implicit-tls-port",
          String(port),
        ]],
      )
      assert.equal(code, 2)
      assert.equal(stderr, `ftpd: error: 127.0.0.1:${port} is already in use\n`)
    })
  } finally {
    await cert.remove()
  }
})

Deno.test("an -i address no interface of this machine has exits 2 with one error line", async () => {
  await withShare(async (dir) => {
    // 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never configured on a real interface.
    const { code, stderr } = await runCli(["--allow-net", `--allow-read=${dir}`], ["-i", "192.0.2.1", "-d", dir])
    assert.equal(code, 2)
    assert.equal(stderr, "ftpd: error: can't listen on 192.0.2.1:2121: no interface has that address\n")
  })
})

Deno.test("an -i host name that does not resolve exits 2 with one error line", async () => {
  await withShare(async (dir) => {
    const { code, stderr } = await runCli(["--allow-net", `--allow-read=${dir}`], [
      "-i",
      "no-such-host.invalid",
      "-d",
      dir,
    ])
    assert.equal(code, 2)
    assert.match(stderr, /^ftpd: error: can't listen on no-such-host\.invalid:2121: [^\n]+\n$/)
  })
})

/**
 * A privileged port needs root: as root, the test runs the server as `nobody` (setpriv, from
 * util-linux), which needs the checkout to be readable by everyone and the system to keep ports
 * below 1024 privileged (some containers do not).
 */
const privilegedPortCheck = (() => {
  try {
    const start = Number(Deno.readTextFileSync("/proc/sys/net/ipv4/ip_unprivileged_port_start").trim())
    if (start <= 21) return `ports from ${start} up are unprivileged on this system`
    return Deno.uid() === 0 ? nobodyCantRun(CLI) : undefined
  } catch (error) {
    return `can't read /proc/sys/net/ipv4/ip_unprivileged_port_start: ${error}`
  }
})()
if (privilegedPortCheck !== undefined) {
  console.warn(`the privileged-port startup test skips: ${privilegedPortCheck}`)
}

Deno.test({
  name: "port 21 refused by the system (not root) exits 2 with one error line saying why",
  ignore: privilegedPortCheck !== undefined,
  fn: async () => {
    const home = await Deno.makeTempDir({ prefix: "ftpd-nobody-" })
    try {
      await Deno.chmod(home, 0o777)
      const deno = [
        Deno.execPath(),
        "run",
        "--no-prompt",
        "--node-modules-dir=manual",
        "--cached-only",
        "--allow-net",
        `--allow-read=${home}`,
        CLI,
        ...["-i", "127.0.0.1", "-p", "21", "-d", home],
      ]
      const asNobody = Deno.uid() === 0
        ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", `DENO_DIR=${home}`, `HOME=${home}`]
        : []
      const [program, ...args] = [...asNobody, ...deno]
      const output = await new Deno.Command(program, { args, stdin: "null", env: { NO_COLOR: "1" } }).output()
      assert.equal(output.code, 2, decoder.decode(output.stderr))
      assert.equal(
        decoder.decode(output.stderr),
        "ftpd: error: the system refused to listen on 127.0.0.1:21: ports below 1024 need root or the" +
          " CAP_NET_BIND_SERVICE capability\n",
      )
    } finally {
      await Deno.remove(home, { recursive: true })
    }
  },
})

Deno.test("the library fails FtpServer with an FtpServerError naming --allow-net when it may not listen", async () => {
  const script = `
import { Effect } from "effect"
import { DummyAuthorizer, FtpServer, LocalFilesystem } from ${JSON.stringify(`${ROOT}/mod.ts`)}
const users = DummyAuthorizer.layer((a) => a.addAnonymous(Deno.args[0]))
const error = await Effect.runPromise(Effect.flip(Effect.scoped(
  FtpServer.make({ host: "127.0.0.1", port: 2121 }).pipe(Effect.provide([users, LocalFilesystem.layer])),
)))
console.log(error._tag + ": " + error.message)
`
  await withShare(async (dir) => {
    await Deno.writeTextFile(`${dir}/server.ts`, script)
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", `--config=${ROOT}/deno.json`, `--allow-read=${dir}`, `${dir}/server.ts`, dir],
      stdin: "null",
    }).output()
    assert.equal(
      decoder.decode(output.stdout),
      "FtpServerError: no permission to listen on 127.0.0.1:2121 (grant --allow-net)\n",
      decoder.decode(output.stderr),
    )
  })
})

// --- deno task serve -----------------------------------------------------------------------------

/** `deno task serve ...args` run from `cwd`, as a user types it. */
const task = (cwd: string, args: string[]) =>
  new Deno.Command(Deno.execPath(), {
    args: ["task", "serve", ...args],
    cwd,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    // `deno task` sets INIT_CWD only when it is not set already, and this test may itself run
    // under `deno task test`: the environment of a user's shell has none.
    clearEnv: true,
    env: { ...withoutInitCwd(), NO_COLOR: "1" },
  })

const withoutInitCwd = (): Record<string, string> => {
  const { INIT_CWD: _, ...env } = Deno.env.toObject()
  return env
}

Deno.test("deno task serve from a subfolder shares that folder read-only, not the project", async () => {
  await withShare(async (dir) => {
    const server = await started(task(dir, ["-i", "127.0.0.1", "-p", "0"]))
    try {
      assert.equal(servingLine(server.log()), `serving ${dir}: anonymous read-only (elr)`)
      const client = await RawClient.connect(server.port)
      try {
        await client.login("anonymous", "guest")
        const conn = await client.passive()
        assert.equal((await client.command("NLST")).code, 150)
        const names = new TextDecoder().decode(await new Response(conn.readable).arrayBuffer())
        assert.deepEqual(names.trim().split("\r\n"), ["hello.txt"])
        assert.equal((await client.readReply()).code, 226)
        assert.equal((await client.command("MKD new")).code, 550)
      } finally {
        client.close()
      }
    } finally {
      assert.equal(await server.stop(), 130)
    }
  }, ROOT)
})

Deno.test("deno task serve grants no write access: -w exits 2 naming --allow-write", async () => {
  await withShare(async (dir) => {
    const output = await task(dir, ["-i", "127.0.0.1", "-p", "0", "-w"]).output()
    assert.equal(output.code, 2)
    assert.match(
      decoder.decode(output.stderr),
      new RegExp(`ftpd: missing permission: write access to ${dir} \\(add --allow-write=${dir}\\)\\n$`),
    )
  }, ROOT)
})
