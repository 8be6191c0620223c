import assert from "node:assert/strict"
import { Buffer } from "node:buffer"
import { Readable, Writable } from "node:stream"
import { Client, FTPError } from "basic-ftp"
import { type CliConfig, parseCli } from "../src/cli.ts"

const CLI = new URL("../src/cli.ts", import.meta.url).pathname

const run = (argv: string[]): CliConfig => {
  const parsed = parseCli(argv)
  assert.equal(parsed.kind, "run", JSON.stringify(parsed))
  return (parsed as { config: CliConfig }).config
}

const error = (argv: string[]): string => {
  const parsed = parseCli(argv)
  assert.equal(parsed.kind, "error", JSON.stringify(parsed))
  return (parsed as { message: string }).message
}

// parseCli: pyftpdlib's flags, meanings and defaults

Deno.test("no flags: anonymous read-only share of the current directory on [::]:2121", () => {
  const config = run([])
  assert.deepEqual(config, {
    options: {
      host: "::",
      port: 2121,
      permitForeignAddresses: false,
      permitPrivilegedPorts: false,
      useLocaltime: false,
    },
    directory: Deno.cwd(),
    user: null,
    write: false,
    debug: false,
  })
})

Deno.test("every flag in its long form sets its option", () => {
  const config = run([
    "--interface=127.0.0.1",
    "--port=2200",
    "--write",
    "--directory=/srv/ftp",
    "--nat-address=203.0.113.7",
    "--range=60000-60099",
    "--debug",
    "--username=bob",
    "--password=secret",
    "--timeout=60",
    "--banner=hello there",
    "--permit-foreign-addresses",
    "--permit-privileged-ports",
    "--encoding=utf-8",
    "--use-localtime",
    "--max-cons=10",
    "--max-cons-per-ip=2",
    "--max-login-attempts=5",
  ])
  assert.deepEqual(config, {
    options: {
      host: "127.0.0.1",
      port: 2200,
      passivePorts: [60000, 60099],
      masqueradeAddress: "203.0.113.7",
      timeout: 60,
      dataTimeout: 60,
      banner: "hello there",
      permitForeignAddresses: true,
      permitPrivilegedPorts: true,
      encoding: "utf-8",
      useLocaltime: true,
      maxCons: 10,
      maxConsPerIp: 2,
      maxLoginAttempts: 5,
    },
    directory: "/srv/ftp",
    user: { name: "bob", password: "secret" },
    write: true,
    debug: true,
  })
})

Deno.test("every short flag means its long form", () => {
  const short = run([
    "-i",
    "::1",
    "-p",
    "21",
    "-w",
    "-d",
    "/srv",
    "-n",
    "10.0.0.1",
    "-r",
    "1-2",
    "-D",
    "-u",
    "a",
    "-P",
    "b",
  ])
  const long = run([
    "--interface",
    "::1",
    "--port",
    "21",
    "--write",
    "--directory",
    "/srv",
    "--nat-address",
    "10.0.0.1",
    "--range",
    "1-2",
    "--debug",
    "--username",
    "a",
    "--password",
    "b",
  ])
  assert.deepEqual(short, long)
  assert.equal(short.options.host, "::1")
})

Deno.test("-d takes a relative directory as relative to the current directory", () => {
  assert.equal(run(["-d", "sub/dir"]).directory, `${Deno.cwd()}/sub/dir`)
})

Deno.test("port 0 (any free port) and --timeout 0 (no timeout) are accepted", () => {
  const config = run(["-p", "0", "--timeout", "0", "--max-cons", "0"])
  assert.equal(config.options.port, 0)
  assert.equal(config.options.timeout, 0)
  assert.equal(config.options.maxCons, 0)
})

Deno.test("-h and --help print usage listing every flag with its default", () => {
  for (const flag of ["-h", "--help"]) {
    const parsed = parseCli([flag, "-p", "abc"])
    assert.equal(parsed.kind, "help")
    const text = (parsed as { text: string }).text
    for (
      const name of [
        "-i, --interface ADDRESS",
        "-p, --port PORT",
        "-w, --write",
        "-d, --directory PATH",
        "-n, --nat-address ADDRESS",
        "-r, --range FROM-TO",
        "-D, --debug",
        "-u, --username USERNAME",
        "-P, --password PASSWORD",
        "--timeout SECONDS",
        "--banner BANNER",
        "--permit-foreign-addresses",
        "--permit-privileged-ports",
        "--encoding ENCODING",
        "--use-localtime",
        "--max-cons N",
        "--max-cons-per-ip N",
        "--max-login-attempts N",
        "-v, --version",
      ]
    ) assert.match(text, new RegExp(`^  ${name}$`, "m"), name)
    for (const value of ["2121", "300", "512", "elradfmwMT", "--allow-net", "--allow-read", "--allow-write"]) {
      assert.ok(text.includes(value), value)
    }
  }
})

Deno.test("-v and --version print the version", () => {
  assert.deepEqual(parseCli(["-v"]), { kind: "version", text: "ftpd 0.1.0" })
  assert.deepEqual(parseCli(["--version"]), { kind: "version", text: "ftpd 0.1.0" })
})

Deno.test("a bad value or flag is one clear error naming the flag", () => {
  const cases: Array<[string[], RegExp]> = [
    [["--bogus"], /unknown option '--bogus'/],
    [["-x"], /unknown option '-x'/],
    [["stray"], /unexpected argument 'stray'/],
    [["-p"], /'-p, --port <value>' argument missing/],
    [["--write=yes"], /'-w, --write' does not take an argument/],
    [["-p", "abc"], /-p\/--port: expected an integer from 0 to 65535, got 'abc'/],
    [["-p", "70000"], /-p\/--port: .* got '70000'/],
    [["-p", "-1"], /-p\/--port: .* got '-1'/],
    [["--port=21.5"], /-p\/--port: .* got '21.5'/],
    [["-r", "5-3"], /-r\/--range: expected FROM-TO .* got '5-3'/],
    [["-r", "5-5"], /-r\/--range: .* got '5-5'/],
    [["-r", "x"], /-r\/--range: .* got 'x'/],
    [["-r", "0-10"], /-r\/--range: .* got '0-10'/],
    [["-r", "1-70000"], /-r\/--range: .* got '1-70000'/],
    [["--timeout", "-5"], /--timeout: expected an integer >= 0, got '-5'/],
    [["--timeout", "soon"], /--timeout: .* got 'soon'/],
    [["--max-cons", "-1"], /--max-cons: .* got '-1'/],
    [["--max-cons-per-ip=-2"], /--max-cons-per-ip: .* got '-2'/],
    [["--max-login-attempts", "many"], /--max-login-attempts: .* got 'many'/],
    [["--encoding", "latin1"], /--encoding: unsupported encoding 'latin1' \(only utf8 is supported\)/],
    [["-u", "bob"], /-u\/--username: requires a password \(-P\/--password\)/],
    [["-u", "bob", "-P", ""], /-u\/--username: requires a password/],
    [["-u", "", "-P", "x"], /-u\/--username: must not be empty/],
    [["-P", "secret"], /-P\/--password: requires -u\/--username/],
    [["-i", "not an address"], /-i\/--interface: invalid address 'not an address'/],
    [["-i", ""], /-i\/--interface: invalid address ''/],
    [["-n", "nat.example.com"], /-n\/--nat-address: expected an IPv4 address, got 'nat.example.com'/],
    [["-n", "1.2.3.256"], /-n\/--nat-address: .* got '1.2.3.256'/],
  ]
  for (const [argv, message] of cases) {
    const text = error(argv)
    assert.match(text, message, `${argv.join(" ")} → ${text}`)
    assert.ok(!text.includes("\n"), `one line: ${text}`)
  }
})

// The command, as a user runs it

/** Run the CLI with exactly `permissions` and `--no-prompt`, wait for it, and return its exit code and output. */
const runCli = async (permissions: string[], args: string[]) => {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...permissions, CLI, ...args],
    stdin: "null",
    env: { NO_COLOR: "1" },
  }).output()
  const decoder = new TextDecoder()
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) }
}

/** A temporary directory with `hello.txt`, removed after `f`. */
const withShare = async (f: (dir: string) => Promise<void>): Promise<void> => {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-cli-" }))
  try {
    await Deno.writeTextFile(`${dir}/hello.txt`, "hello from ftpd\n")
    await f(dir)
  } finally {
    await Deno.remove(dir, { recursive: true })
  }
}

Deno.test("ftpd -v prints its version and needs no permission", async () => {
  const { code, stdout } = await runCli([], ["-v"])
  assert.equal(code, 0)
  assert.equal(stdout, "ftpd 0.1.0\n")
})

Deno.test("ftpd --help exits 0 and lists the flags", async () => {
  const { code, stdout } = await runCli([], ["--help"])
  assert.equal(code, 0)
  assert.match(stdout, /^usage: ftpd \[options\]/)
  assert.match(stdout, /--max-login-attempts N/)
})

Deno.test("an unknown flag exits 2 with the error and a hint on stderr", async () => {
  const { code, stdout, stderr } = await runCli([], ["--bogus"])
  assert.equal(code, 2)
  assert.equal(stdout, "")
  assert.equal(stderr, "ftpd: error: unknown option '--bogus'\nTry 'ftpd --help'.\n")
})

Deno.test("-u without -P exits 2", async () => {
  const { code, stderr } = await runCli([], ["-u", "bob"])
  assert.equal(code, 2)
  assert.match(stderr, /^ftpd: error: argument -u\/--username: requires a password/)
})

Deno.test("-w without --allow-write exits 2 naming --allow-write", async () => {
  await withShare(async (dir) => {
    const { code, stderr } = await runCli(
      ["--allow-net=127.0.0.1", `--allow-read=${dir}`],
      ["-i", "127.0.0.1", "-d", dir, "-w"],
    )
    assert.equal(code, 2)
    assert.equal(stderr, `ftpd: missing permission: write access to ${dir} (add --allow-write=${dir})\n`)
  })
})

Deno.test("a missing net permission exits 2 naming --allow-net, before binding anything", async () => {
  await withShare(async (dir) => {
    const { code, stderr } = await runCli([`--allow-read=${dir}`], ["-i", "127.0.0.1", "-p", "2121", "-d", dir])
    assert.equal(code, 2)
    assert.equal(
      stderr,
      "ftpd: missing permission: net access to listen on 127.0.0.1:2121 (add --allow-net=127.0.0.1:2121)\n" +
        "ftpd: missing permission: net access to passive ports chosen by the system on 127.0.0.1" +
        " (add --allow-net=127.0.0.1:0)\n",
    )
  })
})

Deno.test("a passive port range needs every port in it, or the bare host", async () => {
  await withShare(async (dir) => {
    const args = ["-i", "127.0.0.1", "-p", "2121", "-r", "60000-60002", "-d", dir]
    const some = await runCli(
      ["--allow-net=127.0.0.1:2121,127.0.0.1:60000,127.0.0.1:60001", `--allow-read=${dir}`],
      args,
    )
    assert.equal(some.code, 2)
    assert.equal(
      some.stderr,
      "ftpd: missing permission: net access to passive ports 60000-60002 on 127.0.0.1 (add --allow-net=127.0.0.1)\n",
    )
  })
})

Deno.test("listening on every address needs an unrestricted --allow-net, since PASV listens where the client connected", async () => {
  await withShare(async (dir) => {
    const { code, stderr } = await runCli(["--allow-net=[::]", `--allow-read=${dir}`], ["-d", dir])
    assert.equal(code, 2)
    assert.equal(
      stderr,
      "ftpd: missing permission: net access to passive ports on whichever local address a client connects to" +
        " (add --allow-net, or give -i one IP address)\n",
    )
  })
})

Deno.test("a missing read permission exits 2 naming --allow-read", async () => {
  await withShare(async (dir) => {
    const { code, stderr } = await runCli(["--allow-net=127.0.0.1"], ["-i", "127.0.0.1", "-d", dir])
    assert.equal(code, 2)
    assert.equal(stderr, `ftpd: missing permission: read access to ${dir} (add --allow-read=${dir})\n`)
  })
})

Deno.test("a directory that does not exist exits 2", async () => {
  await withShare(async (dir) => {
    const { code, stderr } = await runCli(["--allow-net=127.0.0.1", `--allow-read=${dir}`], [
      "-i",
      "127.0.0.1",
      "-d",
      `${dir}/missing`,
    ])
    assert.equal(code, 2)
    assert.match(stderr, /^ftpd: error: argument -d\/--directory: .*missing/)
    assert.match(stderr, /Try 'ftpd --help'\.\n$/)
  })
})

/** A running `ftpd` on 127.0.0.1 and a free port, read from its start banner on stderr. */
interface RunningCli {
  readonly port: number
  readonly process: Deno.ChildProcess
  /** Everything it wrote to stderr so far. */
  readonly log: () => string
  /** Settles once stderr is closed. */
  readonly drained: Promise<void>
}

const kill = (process: Deno.ChildProcess) => {
  try {
    process.kill("SIGKILL")
  } catch {
    // already exited
  }
}

const startCli = async (dir: string, args: string[]): Promise<RunningCli> => {
  const process = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      "--allow-net=127.0.0.1",
      `--allow-read=${dir}`,
      `--allow-write=${dir}`,
      CLI,
      ...["-i", "127.0.0.1", "-p", "0", "-d", dir, ...args],
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn()
  let log = ""
  const banner = Promise.withResolvers<number>()
  // Keep draining stderr after the banner, so that the server never blocks on a full pipe.
  const drained = (async () => {
    for await (const chunk of process.stderr.pipeThrough(new TextDecoderStream())) {
      log += chunk
      const match = />>> starting FTP server on 127\.0\.0\.1:(\d+), pid=\d+ <<</.exec(log)
      if (match) banner.resolve(Number(match[1]))
    }
    banner.reject(new Error(`ftpd exited before its banner:\n${log}`))
  })()
  const timer = setTimeout(() => banner.reject(new Error(`no banner within 10 s:\n${log}`)), 10_000)
  try {
    return { port: await banner.promise, process, log: () => log, drained }
  } catch (e) {
    kill(process)
    await Promise.all([process.status, drained])
    throw e
  } finally {
    clearTimeout(timer)
  }
}

/** Start `ftpd` in a fresh share, run `f` against it, and make sure the process is gone afterwards. */
const withCli = async (args: string[], f: (cli: RunningCli, dir: string) => Promise<void>): Promise<void> => {
  await withShare(async (dir) => {
    const cli = await startCli(dir, args)
    try {
      await f(cli, dir)
    } finally {
      kill(cli.process)
      await Promise.all([cli.process.status, cli.drained])
    }
  })
}

/** Log in and run `f` with the client, closing it afterwards. */
const session = async <A>(
  port: number,
  login: { user: string; password: string },
  f: (client: Client) => Promise<A>,
): Promise<A> => {
  const client = new Client(5_000)
  try {
    await client.access({ host: "127.0.0.1", port, ...login })
    return await f(client)
  } finally {
    client.close()
  }
}

const anonymous = { user: "anonymous", password: "guest@example.com" }

const download = async (client: Client, path: string): Promise<string> => {
  const chunks: Buffer[] = []
  const sink = new Writable({
    write(chunk, _encoding, done) {
      chunks.push(chunk)
      done()
    },
  })
  await client.downloadTo(sink, path)
  return Buffer.concat(chunks).toString()
}

const upload = (client: Client, path: string, text: string) =>
  client.uploadFrom(Readable.from([Buffer.from(text)]), path)

const replyCode = async (promise: Promise<unknown>): Promise<number> => {
  try {
    await promise
  } catch (e) {
    if (e instanceof FTPError) return e.code
    throw e
  }
  return 0
}

/** SIGINT, then the exit code; a process still running 5 s later is killed (and exits 137). */
const interrupt = async (cli: RunningCli): Promise<number> => {
  cli.process.kill("SIGINT")
  const timer = setTimeout(() => kill(cli.process), 5_000)
  try {
    return (await cli.process.status).code
  } finally {
    clearTimeout(timer)
  }
}

Deno.test("ftpd serves its directory read-only to anonymous users and exits 130 on SIGINT", async () => {
  await withCli([], async (cli, dir) => {
    await session(cli.port, anonymous, async (client) => {
      assert.deepEqual((await client.list()).map((f) => f.name), ["hello.txt"])
      assert.equal(await download(client, "hello.txt"), "hello from ftpd\n")
      assert.equal(await replyCode(upload(client, "new.txt", "data")), 550)
    })
    await assert.rejects(Deno.stat(`${dir}/new.txt`), Deno.errors.NotFound)
    assert.equal(await interrupt(cli), 130, cli.log())
  })
})

Deno.test("ftpd -w lets anonymous users upload", async () => {
  await withCli(["-w"], async (cli, dir) => {
    await session(cli.port, anonymous, (client) => upload(client, "new.txt", "uploaded"))
    assert.equal(await Deno.readTextFile(`${dir}/new.txt`), "uploaded")
    assert.equal(await interrupt(cli), 130, cli.log())
  })
})

Deno.test("ftpd -u -P admits that user only", async () => {
  await withCli(["-u", "bob", "-P", "secret"], async (cli) => {
    assert.equal(await replyCode(session(cli.port, anonymous, () => Promise.resolve())), 530)
    const text = await session(cli.port, { user: "bob", password: "secret" }, (client) => download(client, "hello.txt"))
    assert.equal(text, "hello from ftpd\n")
    assert.equal(await interrupt(cli), 130, cli.log())
  })
})
