import assert from "node:assert/strict"
import { Buffer } from "node:buffer"
import { Readable, Writable } from "node:stream"
import { Client, FTPError } from "basic-ftp"
import { type CliConfig, loadTls, parseCli, TlsFilesError } from "../src/cli.ts"
import { resolveOptions } from "../src/options.ts"
import { curl, makeCertificate, RawClient, type TestCertificate } from "./helpers.ts"

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
    storage: { kind: "local", path: Deno.cwd() },
    mounts: [],
    s3: { pathStyle: false },
    user: null,
    write: false,
    debug: false,
    jail: "auto",
    workers: 1,
    tls: null,
    users: null,
    unix: null,
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
    "--data-timeout=30",
    "--login-timeout=20",
    "--max-sessions-per-user=4",
    "--auth-failed-timeout=0.5",
    "--ban-after-failures=10",
    "--ban-window=120",
    "--ban-duration=86400",
    "--max-commands-per-second=300",
    "--read-limit=1000",
    "--write-limit=2000",
    "--user-read-limit=3000",
    "--user-write-limit=4000",
    "--global-read-limit=5000",
    "--global-write-limit=6000",
    "--atomic-uploads",
    "--shutdown-grace=15",
    "--permit-special-mode-bits",
    "--jail=path",
    "--workers=3",
    "--proxy-protocol",
    "--proxy-trusted=10.0.0.0/8,192.0.2.1",
    "--mount=/inbox=s3://bucket/inbox:ro",
    "--s3-endpoint=http://127.0.0.1:9000",
    "--s3-region=eu-west-1",
    "--s3-path-style",
  ])
  assert.deepEqual(config, {
    options: {
      host: "127.0.0.1",
      port: 2200,
      passivePorts: [60000, 60099],
      masqueradeAddress: "203.0.113.7",
      timeout: 60,
      dataTimeout: 30,
      loginTimeout: 20,
      banner: "hello there",
      permitForeignAddresses: true,
      permitPrivilegedPorts: true,
      encoding: "utf-8",
      useLocaltime: true,
      maxCons: 10,
      maxConsPerIp: 2,
      maxSessionsPerUser: 4,
      maxLoginAttempts: 5,
      authFailedTimeout: 0.5,
      banAfterFailures: 10,
      banWindow: 120,
      banDuration: 86400,
      maxCommandsPerSecond: 300,
      readLimit: 1000,
      writeLimit: 2000,
      userReadLimit: 3000,
      userWriteLimit: 4000,
      globalReadLimit: 5000,
      globalWriteLimit: 6000,
      atomicUploads: true,
      shutdownGrace: 15,
      permitSpecialModeBits: true,
      proxyProtocol: true,
      proxyTrusted: ["10.0.0.0/8", "192.0.2.1"],
    },
    directory: "/srv/ftp",
    storage: { kind: "local", path: "/srv/ftp" },
    mounts: [{ at: "/inbox", storage: { kind: "s3", bucket: "bucket", prefix: "inbox" }, readOnly: true }],
    s3: { endpoint: "http://127.0.0.1:9000", region: "eu-west-1", pathStyle: true },
    user: { name: "bob", password: "secret" },
    write: true,
    debug: true,
    jail: "path",
    workers: 3,
    tls: null,
    users: null,
    unix: null,
  })
})

Deno.test("the FTPS flags in their long form set their options, with the files as absolute paths", () => {
  const config = run([
    "--tls",
    "--certfile=certs/cert.pem",
    "--keyfile=/etc/ftpd/key.pem",
    "--tls-control-required",
    "--tls-data-required",
    "--implicit-tls-port=990",
    "--require-session-reuse",
  ])
  assert.deepEqual(config.tls, { certFile: `${Deno.cwd()}/certs/cert.pem`, keyFile: "/etc/ftpd/key.pem" })
  assert.equal(config.options.implicitTlsPort, 990)
  assert.equal(config.options.tlsControlRequired, true)
  assert.equal(config.options.tlsDataRequired, true)
  assert.equal(config.options.requireSessionReuse, true)
})

Deno.test("--tls alone turns on explicit FTPS only; --keyfile defaults to the certfile, as in pyftpdlib", () => {
  const config = run(["--tls", "--certfile", "/etc/ftpd/both.pem"])
  assert.deepEqual(config.tls, { certFile: "/etc/ftpd/both.pem", keyFile: "/etc/ftpd/both.pem" })
  assert.equal(config.options.implicitTlsPort, undefined)
  assert.equal(config.options.tlsControlRequired, undefined)
  assert.equal(config.options.tlsDataRequired, undefined)
  assert.equal(config.options.requireSessionReuse, undefined)
  // Port 0 for both is allowed: each gets its own free port.
  assert.equal(run(["--tls", "--certfile", "c", "-p", "0", "--implicit-tls-port", "0"]).options.implicitTlsPort, 0)
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

Deno.test("--timeout bounds idle control and stalled data connections alike; --data-timeout overrides the data one", () => {
  assert.deepEqual(run(["--timeout", "60"]).options.dataTimeout, 60)
  assert.deepEqual(run(["--timeout", "60", "--data-timeout", "5"]).options.dataTimeout, 5)
  assert.deepEqual(run(["--data-timeout", "5", "--timeout", "60"]).options.dataTimeout, 5)
  const alone = run(["--data-timeout", "0"]).options
  assert.equal(alone.dataTimeout, 0)
  assert.equal(alone.timeout, undefined)
})

Deno.test("the limit flags are absent from the options unless given, so the library's defaults apply", () => {
  const { options } = run(["-p", "21"])
  for (
    const name of [
      "maxSessionsPerUser",
      "authFailedTimeout",
      "banAfterFailures",
      "banWindow",
      "banDuration",
      "maxCommandsPerSecond",
      "readLimit",
      "writeLimit",
      "userReadLimit",
      "userWriteLimit",
      "globalReadLimit",
      "globalWriteLimit",
      "loginTimeout",
      "dataTimeout",
      "atomicUploads",
      "shutdownGrace",
    ]
  ) assert.ok(!(name in options), name)
})

Deno.test("a RATE is bytes per second with an optional K, M or G suffix in powers of 1024", () => {
  const cases: Array<[string, number]> = [
    ["0", 0],
    ["512", 512],
    ["64K", 64 * 1024],
    ["64k", 64 * 1024],
    ["1M", 1048576],
    ["1.5M", 1572864],
    ["2G", 2 * 1024 ** 3],
    ["0.3K", 307],
  ]
  for (const [text, bytes] of cases) {
    for (const long of ["read-limit", "write-limit", "user-read-limit", "user-write-limit"]) {
      const options = run([`--${long}`, text]).options as Record<string, unknown>
      const name = long.replace(/-(\w)/g, (_, c: string) => c.toUpperCase())
      assert.equal(options[name], bytes, `--${long} ${text}`)
    }
    assert.equal(run(["--global-read-limit", text]).options.globalReadLimit, bytes)
    assert.equal(run(["--global-write-limit", text]).options.globalWriteLimit, bytes)
  }
})

Deno.test("SECONDS flags take fractions; 0 turns a timeout off", () => {
  const { options } = run([
    "--timeout=0",
    "--login-timeout=0",
    "--auth-failed-timeout=0",
    "--ban-after-failures=3",
    "--ban-window=0.25",
    "--ban-duration=1.5",
    "--shutdown-grace=2.5",
  ])
  assert.equal(options.timeout, 0)
  assert.equal(options.dataTimeout, 0)
  assert.equal(options.loginTimeout, 0)
  assert.equal(options.authFailedTimeout, 0)
  assert.equal(options.banWindow, 0.25)
  assert.equal(options.banDuration, 1.5)
  assert.equal(options.shutdownGrace, 2.5)
})

Deno.test("--no-hash turns the checksum commands off and --max-hashes caps them; without them the defaults apply", () => {
  const config = run(["--no-hash", "--max-hashes", "5"])
  assert.equal(config.options.hashCommands, false)
  assert.equal(config.options.maxHashes, 5)
  const plain = run([])
  assert.equal("hashCommands" in plain.options, false)
  assert.equal("maxHashes" in plain.options, false)
  assert.equal(run(["--max-hashes", "0"]).options.maxHashes, 0)
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
        "--data-timeout SECONDS",
        "--login-timeout SECONDS",
        "--max-sessions-per-user N",
        "--auth-failed-timeout SECONDS",
        "--ban-after-failures N",
        "--ban-window SECONDS",
        "--ban-duration SECONDS",
        "--max-commands-per-second N",
        "--read-limit RATE",
        "--write-limit RATE",
        "--user-read-limit RATE",
        "--user-write-limit RATE",
        "--global-read-limit RATE",
        "--global-write-limit RATE",
        "--atomic-uploads",
        "--shutdown-grace SECONDS",
        "--no-hash",
        "--max-hashes N",
        "--tls",
        "--certfile PATH",
        "--keyfile PATH",
        "--tls-control-required",
        "--tls-data-required",
        "--implicit-tls-port PORT",
        "--require-session-reuse",
        "-v, --version",
      ]
    ) assert.match(text, new RegExp(`^  ${name}$`, "m"), name)
    for (const value of ["2121", "300", "512", "elradfmwMT", "--allow-net", "--allow-read", "--allow-write"]) {
      assert.ok(text.includes(value), value)
    }
    const defaults = resolveOptions()
    const shown: Array<[string, string]> = [
      ["--timeout SECONDS", `(default: ${defaults.timeout})`],
      ["--data-timeout SECONDS", `else ${defaults.dataTimeout})`],
      ["--login-timeout SECONDS", `(default: ${defaults.loginTimeout})`],
      ["--max-cons N", `(default: ${defaults.maxCons})`],
      ["--max-cons-per-ip N", "(default: 0, no limit)"],
      ["--max-sessions-per-user N", "(default: 0, no limit)"],
      ["--max-login-attempts N", `(default: ${defaults.maxLoginAttempts})`],
      ["--auth-failed-timeout SECONDS", `(default: ${defaults.authFailedTimeout})`],
      ["--ban-after-failures N", "(default: 0, never ban)"],
      ["--ban-window SECONDS", `(default: ${defaults.banWindow})`],
      ["--ban-duration SECONDS", `(default: ${defaults.banDuration})`],
      ["--max-commands-per-second N", "(default: 0, no limit)"],
      ["--read-limit RATE", "(default: 0, no limit)"],
      ["--write-limit RATE", "(default: 0, no limit)"],
      ["--user-read-limit RATE", "(default: 0, no limit)"],
      ["--user-write-limit RATE", "(default: 0, no limit)"],
      ["--global-read-limit RATE", "(default: 0, no limit)"],
      ["--global-write-limit RATE", "(default: 0, no limit)"],
      ["--atomic-uploads", "(default: off)"],
      ["--shutdown-grace SECONDS", `(default: ${defaults.shutdownGrace})`],
      ["--no-hash", "(default: on)"],
      ["--max-hashes N", `(default: ${defaults.maxHashes})`],
    ]
    for (const [flag, value] of shown) {
      const help = new RegExp(`^  ${flag}\\n      (.*)$`, "m").exec(text)?.[1] ?? ""
      assert.ok(help.endsWith(value), `${flag}: ${help}`)
    }
    assert.match(text, /RATE +bytes per second, with an optional K, M or G suffix \(powers of 1024: 1M = 1048576\)/)
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
    [["--timeout", "-5"], /--timeout: expected a number of seconds >= 0, got '-5'/],
    [["--timeout", "1e3"], /--timeout: .* got '1e3'/],
    [["--data-timeout", "-1"], /^argument --data-timeout: expected a number of seconds >= 0, got '-1'$/],
    [["--login-timeout", "1m"], /^argument --login-timeout: expected a number of seconds >= 0, got '1m'$/],
    [["--auth-failed-timeout", "."], /^argument --auth-failed-timeout: .* got '\.'$/],
    [["--ban-after-failures", "3", "--ban-window", "x"], /^argument --ban-window: .* seconds >= 0, got 'x'$/],
    [["--ban-after-failures", "3", "--ban-duration", "-60"], /^argument --ban-duration: .* got '-60'$/],
    [["--shutdown-grace", "soon"], /^argument --shutdown-grace: expected a number of seconds >= 0, got 'soon'$/],
    [["--shutdown-grace", "-1"], /^argument --shutdown-grace: .* got '-1'$/],
    [["--max-sessions-per-user", "1.5"], /^argument --max-sessions-per-user: expected an integer >= 0, got '1.5'$/],
    [["--ban-after-failures", "-3"], /^argument --ban-after-failures: expected an integer >= 0, got '-3'$/],
    [["--max-commands-per-second", "lots"], /^argument --max-commands-per-second: .* got 'lots'$/],
    [["--ban-window", "60"], /^argument --ban-window: requires --ban-after-failures$/],
    [["--ban-duration", "60"], /^argument --ban-duration: requires --ban-after-failures$/],
    [["--atomic-uploads=yes"], /'--atomic-uploads' does not take an argument/],
    [["--no-hash=yes"], /'--no-hash' does not take an argument/],
    [["--max-hashes", "-1"], /^argument --max-hashes: expected an integer >= 0, got '-1'$/],
    [["--max-hashes", "two"], /^argument --max-hashes: expected an integer >= 0, got 'two'$/],
    [["--max-hashes", "1.5"], /^argument --max-hashes: expected an integer >= 0, got '1.5'$/],
    [
      ["--read-limit", "1T"],
      /^argument --read-limit: expected bytes per second, a number with an optional K, M or G suffix, got '1T'$/,
    ],
    [["--write-limit", "-1M"], /^argument --write-limit: expected bytes per second.* got '-1M'$/],
    [["--user-read-limit", "M"], /^argument --user-read-limit: .* got 'M'$/],
    [["--user-write-limit", "1 M"], /^argument --user-write-limit: .* got '1 M'$/],
    [["--global-read-limit", "1MB"], /^argument --global-read-limit: .* got '1MB'$/],
    [["--global-write-limit", ""], /^argument --global-write-limit: .* got ''$/],
    [["--read-limit", "99999999999G"], /^argument --read-limit: .* got '99999999999G'$/],
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
    [["--jail", "chroot"], /^argument --jail: expected auto, descriptor or path, got 'chroot'$/],
    [
      ["--proxy-protocol", "--proxy-trusted", "10.0.0.0/33"],
      /^argument --proxy-trusted: not an address or range: '10\.0\.0\.0\/33'$/,
    ],
    [
      ["--proxy-protocol", "--proxy-trusted", "10.0.0.1,lb.example"],
      /--proxy-trusted: not an address or range: 'lb\.example'$/,
    ],
    [["--proxy-trusted", "10.0.0.1"], /^argument --proxy-trusted: requires --proxy-protocol$/],
    [["--workers", "0"], /^argument --workers: expected 'auto' or an integer from 1 to 256, got '0'$/],
    [["--workers", "many"], /^argument --workers: expected 'auto' or an integer from 1 to 256, got 'many'$/],
    [["-d", "s3://"], /^argument -d\/--directory: expected s3:\/\/BUCKET\[\/PREFIX\] .* got 's3:\/\/'$/],
    [["-d", "s3://Bad_Bucket"], /^argument -d\/--directory: expected s3:\/\/BUCKET.* got 's3:\/\/Bad_Bucket'$/],
    [
      ["-d", "s3://bucket/a/../b"],
      /^argument -d\/--directory: '\.' and '\.\.' are not allowed in 's3:\/\/bucket\/a\/\.\.\/b'$/,
    ],
    [["-d", "ftp:"], /^argument -d\/--directory: unknown storage 'ftp:'$/],
    [["-d", ""], /^argument -d\/--directory: expected a directory, memory: or s3:/],
    [["--mount", "/pub"], /^argument --mount: expected AT=STORAGE .* got '\/pub'$/],
    [
      ["--mount", "pub=/srv/pub"],
      /^argument --mount: the mount point must be an absolute path other than \/, got 'pub'$/,
    ],
    [["--mount", "/=/srv/pub"], /^argument --mount: the mount point must be an absolute path other than \/, got '\/'$/],
    [["--mount", "/a/../b=memory:"], /^argument --mount: the mount point must be .* got '\/a\/\.\.\/b'$/],
    [["--mount", "/in=s3://x"], /^argument --mount: expected s3:\/\/BUCKET/],
    [["--mount", "/a=memory:", "--mount", "/a/=/srv"], /^argument --mount: two mounts at \/a$/],
    [["--s3-endpoint", "http://127.0.0.1:9000"], /^argument --s3-endpoint: requires s3:\/\/ storage/],
    [["--s3-path-style"], /^argument --s3-path-style: requires s3:\/\/ storage/],
    [
      ["-d", "s3://bucket", "--s3-endpoint", "ftp://host"],
      /^argument --s3-endpoint: expected an http:\/\/ or https:\/\/ URL .* got 'ftp:\/\/host'$/,
    ],
    [
      ["-d", "s3://bucket", "--s3-endpoint", "http://host/path"],
      /^argument --s3-endpoint: .* got 'http:\/\/host\/path'$/,
    ],
    [
      ["-d", "s3://bucket", "--s3-region", "EU WEST"],
      /^argument --s3-region: expected a region name .* got 'EU WEST'$/,
    ],
    [["-d", "memory:", "--jail", "path"], /^argument --jail: requires a local directory \(-d or --mount\)$/],
    [["-d", "memory:", "--workers", "2"], /^argument --workers: memory: storage lives in one process and can't be/],
    [["--mount", "/tmp=memory:", "--workers", "auto"], /^argument --workers: memory: storage lives in one process/],
    [["-n", "nat.example.com"], /-n\/--nat-address: expected an IPv4 address, got 'nat.example.com'/],
    [["-n", "1.2.3.256"], /-n\/--nat-address: .* got '1.2.3.256'/],
    [["--tls"], /^argument --tls: requires a certificate \(--certfile PATH\)$/],
    [["--tls", "--keyfile", "k.pem"], /^argument --tls: requires a certificate \(--certfile PATH\)$/],
    [["--tls", "--certfile", ""], /^argument --tls: requires a certificate/],
    [["--tls", "--certfile", "c.pem", "--keyfile", ""], /^argument --keyfile: must not be empty$/],
    [["--certfile", "c.pem"], /^argument --certfile: requires --tls$/],
    [["--keyfile", "k.pem"], /^argument --keyfile: requires --tls$/],
    [["--tls-control-required"], /^argument --tls-control-required: requires --tls$/],
    [["--tls-data-required"], /^argument --tls-data-required: requires --tls$/],
    [["--implicit-tls-port", "990"], /^argument --implicit-tls-port: requires --tls$/],
    [["--require-session-reuse"], /^argument --require-session-reuse: requires --tls$/],
    [["--tls", "--certfile", "c", "--implicit-tls-port", "x"], /--implicit-tls-port: expected an integer .* got 'x'/],
    [["--tls", "--certfile", "c", "--implicit-tls-port", "-1"], /--implicit-tls-port: .* got '-1'/],
    [["--tls", "--certfile", "c", "--implicit-tls-port", "65536"], /--implicit-tls-port: .* got '65536'/],
    [
      ["--tls", "--certfile", "c", "-p", "2121", "--implicit-tls-port", "2121"],
      /^argument --implicit-tls-port: must differ from the control port \(2121\)$/,
    ],
    [["--tls", "--certfile", "c", "--implicit-tls-port", "2121"], /must differ from the control port \(2121\)/],
  ]
  for (const [argv, message] of cases) {
    const text = error(argv)
    assert.match(text, message, `${argv.join(" ")} → ${text}`)
    assert.ok(!text.includes("\n"), `one line: ${text}`)
  }
})

// loadTls: the --certfile and --keyfile, read and checked before the server starts

/** A certificate in a temporary directory, removed after `f`. */
const withCertificate = async (f: (cert: TestCertificate) => Promise<void>): Promise<void> => {
  const cert = await makeCertificate()
  try {
    await f(cert)
  } finally {
    await cert.remove()
  }
}

const tlsError = async (promise: Promise<unknown>): Promise<string> => {
  const error = await promise.then(() => undefined, (e) => e)
  assert.ok(error instanceof TlsFilesError, `expected a TlsFilesError, got ${error}`)
  assert.ok(!error.message.includes("\n"), `one line: ${error.message}`)
  return error.message
}

Deno.test("loadTls reads a matching certificate and key", async () => {
  await withCertificate(async (cert) => {
    assert.deepEqual(await loadTls({ certFile: cert.certFile, keyFile: cert.keyFile }), {
      cert: cert.cert,
      key: cert.key,
    })
  })
})

Deno.test("loadTls takes certificate and key from one file when --keyfile is not given", async () => {
  await withCertificate(async (cert) => {
    const both = `${cert.dir}/both.pem`
    await Deno.writeTextFile(both, cert.cert + cert.key)
    const settings = await loadTls({ certFile: both, keyFile: both })
    assert.equal(settings.cert, cert.cert + cert.key)
    assert.equal(settings.key, cert.cert + cert.key)
  })
})

Deno.test("loadTls refuses a missing or unreadable file, naming the flag and the path", async () => {
  await withCertificate(async (cert) => {
    const missing = `${cert.dir}/missing.pem`
    assert.equal(
      await tlsError(loadTls({ certFile: missing, keyFile: cert.keyFile })),
      `argument --certfile: can't read ${missing}: no such file`,
    )
    assert.equal(
      await tlsError(loadTls({ certFile: cert.certFile, keyFile: missing })),
      `argument --keyfile: can't read ${missing}: no such file`,
    )
    assert.equal(
      await tlsError(loadTls({ certFile: cert.dir, keyFile: cert.keyFile })),
      `argument --certfile: can't read ${cert.dir}: is a directory`,
    )
  })
})

Deno.test("loadTls refuses a key that does not match the certificate", async () => {
  await withCertificate(async (cert) => {
    const other = await makeCertificate()
    try {
      assert.equal(
        await tlsError(loadTls({ certFile: cert.certFile, keyFile: other.keyFile })),
        `--certfile ${cert.certFile} and --keyfile ${other.keyFile}: the private key does not match the certificate`,
      )
    } finally {
      await other.remove()
    }
  })
})

Deno.test("loadTls refuses files that are not a PEM certificate and key", async () => {
  await withCertificate(async (cert) => {
    const junk = `${cert.dir}/junk.pem`
    await Deno.writeTextFile(junk, "not a certificate\n")
    const broken = `${cert.dir}/broken.pem`
    await Deno.writeTextFile(broken, cert.cert.replace(/\n[A-Za-z0-9+/]{20}/, "\n!!!!"))
    const cases: Array<[string, string, RegExp]> = [
      [junk, cert.keyFile, /: the certificate is not in PEM form \(no BEGIN CERTIFICATE block\)$/],
      [cert.keyFile, cert.keyFile, /: the certificate is not in PEM form/],
      [cert.certFile, junk, /: the key is not a PEM private key \(no BEGIN PRIVATE KEY block\)$/],
      [cert.certFile, cert.certFile, /which must hold the key too.*: the key is not a PEM private key/],
      [broken, cert.keyFile, /: the certificate can't be parsed: /],
    ]
    for (const [certFile, keyFile, message] of cases) {
      assert.match(await tlsError(loadTls({ certFile, keyFile })), message, `${certFile} ${keyFile}`)
    }
  })
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

Deno.test("a bad limit value exits 2 with one error line, before checking permissions", async () => {
  const { code, stdout, stderr } = await runCli([], ["--write-limit", "10X"])
  assert.equal(code, 2)
  assert.equal(stdout, "")
  assert.equal(
    stderr,
    "ftpd: error: argument --write-limit: expected bytes per second, a number with an optional K, M or G suffix," +
      " got '10X'\nTry 'ftpd --help'.\n",
  )
})

Deno.test("a bad --max-hashes exits 2 with one error line", async () => {
  const { code, stdout, stderr } = await runCli([], ["--max-hashes", "-3"])
  assert.equal(code, 2)
  assert.equal(stdout, "")
  assert.equal(stderr, "ftpd: error: argument --max-hashes: expected an integer >= 0, got '-3'\nTry 'ftpd --help'.\n")
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

Deno.test("--workers without read access to ftpd's modules exits 2 naming the folder to grant", async () => {
  await withShare(async (dir) => {
    const source = new URL("../src", import.meta.url).pathname
    const { code, stderr } = await runCli(
      ["--allow-net=127.0.0.1", `--allow-read=${dir}`],
      ["-i", "127.0.0.1", "-d", dir, "--jail", "path", "--workers", "2"],
    )
    assert.equal(code, 2)
    assert.equal(
      stderr,
      `ftpd: missing permission: read access to ${source}, whose modules each worker of --workers loads` +
        ` (add --allow-read=${source})\n`,
    )
  })
})

Deno.test("--workers with the path jail (asked for, or without --allow-ffi) exits 2: its renames are exclusive in one worker only", async () => {
  await withShare(async (dir) => {
    const source = new URL("../src", import.meta.url).pathname
    for (const [grants, jail] of [[["--allow-ffi"], ["--jail", "path"]], [[], []]]) {
      const { code, stderr } = await runCli(
        ["--allow-net=127.0.0.1", `--allow-read=${dir},${source}`, ...grants],
        ["-i", "127.0.0.1", "-d", dir, ...jail, "--workers", "2"],
      )
      assert.equal(code, 2, stderr)
      assert.match(
        stderr,
        /^ftpd: error: argument --workers: the path jail keeps renames exclusive within one worker only; workers need the descriptor jail \(--allow-ffi, on Linux\)\n/,
      )
    }
  })
})

Deno.test("--jail descriptor without --allow-ffi exits 2 naming --allow-ffi", async () => {
  await withShare(async (dir) => {
    const { code, stderr } = await runCli(
      ["--allow-net=127.0.0.1", `--allow-read=${dir}`],
      ["-i", "127.0.0.1", "-d", dir, "--jail", "descriptor"],
    )
    assert.equal(code, 2)
    assert.equal(stderr, "ftpd: missing permission: FFI for the descriptor jail (add --allow-ffi)\n")
  })
})

Deno.test("the start banner names the jail in force: descriptor with --allow-ffi, path without", async () => {
  await withCli([], async (cli) => {
    assert.match(cli.log(), /\] filesystem: local disk, path jail/)
    assert.equal(await interrupt(cli), 130, cli.log())
  })
  await withCli([], async (cli) => {
    assert.match(cli.log(), /\] filesystem: local disk, descriptor jail/)
    assert.equal(await interrupt(cli), 130, cli.log())
  }, ["--allow-ffi"])
  await withCli(["--jail", "path"], async (cli) => {
    assert.match(cli.log(), /\] filesystem: local disk, path jail/)
    assert.equal(await interrupt(cli), 130, cli.log())
  }, ["--allow-ffi"])
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

/** `permissions` are added to the net and share grants. */
const startCli = async (dir: string, args: string[], permissions: string[] = []): Promise<RunningCli> => {
  const process = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      "--allow-net=127.0.0.1",
      `--allow-read=${dir}`,
      `--allow-write=${dir}`,
      ...permissions,
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
const withCli = async (
  args: string[],
  f: (cli: RunningCli, dir: string) => Promise<void>,
  permissions: string[] = [],
): Promise<void> => {
  await withShare(async (dir) => {
    const cli = await startCli(dir, args, permissions)
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

/** The first reply line the server sends on a fresh connection to `port`; the connection is closed after. */
const greeting = async (port: number): Promise<{ line: string; conn: Deno.Conn }> => {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port })
  const buffer = new Uint8Array(512)
  const n = await conn.read(buffer)
  return { line: new TextDecoder().decode(buffer.subarray(0, n ?? 0)).trimEnd(), conn }
}

Deno.test("ftpd passes the limit flags to the server: --max-cons-per-ip 1 refuses a second connection with 421", async () => {
  await withCli(["-w", "--max-cons-per-ip", "1", "--write-limit", "64K", "--atomic-uploads"], async (cli, dir) => {
    const first = await greeting(cli.port)
    const second = await greeting(cli.port)
    first.conn.close()
    second.conn.close()
    assert.match(first.line, /^220 /)
    assert.equal(second.line, "421 Too many connections from the same IP address.")
    // The slot comes back once the first connection is gone.
    for (let i = 0; i < 100 && !/FTP session closed/.test(cli.log()); i++) {
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    await session(cli.port, anonymous, (client) => upload(client, "new.txt", "atomic"))
    assert.equal(await Deno.readTextFile(`${dir}/new.txt`), "atomic")
    assert.equal(await interrupt(cli), 130, cli.log())
  })
})

Deno.test("ftpd --shutdown-grace 0: SIGTERM cuts a stalled download at once instead of waiting for it", async () => {
  await withCli(["--shutdown-grace", "0"], async (cli, dir) => {
    await Deno.writeFile(`${dir}/big.bin`, new Uint8Array())
    await Deno.truncate(`${dir}/big.bin`, 256 * 1024 * 1024)
    const client = await RawClient.connect(cli.port)
    let data: Deno.Conn | undefined
    try {
      await client.login("anonymous", "guest@example.com")
      data = await client.passive()
      assert.equal((await client.command("RETR big.bin")).code, 150)
      // Nobody reads the data connection: the transfer stalls, and with the default grace SIGTERM would wait for it.
      const started = performance.now()
      cli.process.kill("SIGTERM")
      assert.equal((await cli.process.status).code, 130, cli.log())
      const ms = performance.now() - started
      assert.ok(ms < 3000, `exited ${ms.toFixed(0)} ms after SIGTERM`)
    } finally {
      data?.close()
      client.close()
    }
  })
})

// FTPS from the command line

Deno.test("ftpd --tls with a certfile that does not exist exits 2 with one error line, before binding", async () => {
  await withShare(async (dir) => {
    const certFile = `${dir}/missing.pem`
    const { code, stdout, stderr } = await runCli(
      ["--allow-net=127.0.0.1", `--allow-read=${dir}`],
      ["-i", "127.0.0.1", "-p", "0", "-d", dir, "--tls", "--certfile", certFile],
    )
    assert.equal(code, 2)
    assert.equal(stdout, "")
    assert.equal(stderr, `ftpd: error: argument --certfile: can't read ${certFile}: no such file\n`)
  })
})

Deno.test("ftpd --tls with a key that does not match the certificate exits 2 with one error line", async () => {
  await withShare(async (dir) => {
    await withCertificate(async (cert) => {
      const other = await makeCertificate()
      try {
        const { code, stdout, stderr } = await runCli(
          ["--allow-net=127.0.0.1", `--allow-read=${dir},${cert.dir},${other.dir}`],
          ["-i", "127.0.0.1", "-p", "0", "-d", dir, "--tls", "--certfile", cert.certFile, "--keyfile", other.keyFile],
        )
        assert.equal(code, 2)
        assert.equal(stdout, "")
        assert.equal(
          stderr,
          `ftpd: error: --certfile ${cert.certFile} and --keyfile ${other.keyFile}: ` +
            "the private key does not match the certificate\n",
        )
      } finally {
        await other.remove()
      }
    })
  })
})

Deno.test("ftpd --tls without read permission for the certificate and key names --allow-read for each", async () => {
  await withShare(async (dir) => {
    await withCertificate(async (cert) => {
      const { code, stderr } = await runCli(
        ["--allow-net=127.0.0.1", `--allow-read=${dir}`],
        ["-i", "127.0.0.1", "-p", "0", "-d", dir, "--tls", "--certfile", cert.certFile, "--keyfile", cert.keyFile],
      )
      assert.equal(code, 2)
      assert.equal(
        stderr,
        `ftpd: missing permission: read access to ${cert.certFile} (add --allow-read=${cert.certFile})\n` +
          `ftpd: missing permission: read access to ${cert.keyFile} (add --allow-read=${cert.keyFile})\n`,
      )
    })
  })
})

Deno.test("ftpd --implicit-tls-port without net permission for it exits 2 naming --allow-net", async () => {
  await withShare(async (dir) => {
    await withCertificate(async (cert) => {
      const { code, stderr } = await runCli(
        ["--allow-net=127.0.0.1:2121,127.0.0.1:0", `--allow-read=${dir},${cert.dir}`],
        ["-i", "127.0.0.1", "-d", dir, "--tls", "--certfile", cert.certFile, "--keyfile", cert.keyFile].concat(
          ["--implicit-tls-port", "990"],
        ),
      )
      assert.equal(code, 2)
      assert.equal(
        stderr,
        "ftpd: missing permission: net access to listen on 127.0.0.1:990 for implicit TLS" +
          " (add --allow-net=127.0.0.1:990)\n",
      )
    })
  })
})

Deno.test("ftpd without --tls says so in its banner and refuses AUTH TLS with 502", async () => {
  await withCli([], async (cli) => {
    assert.match(cli.log(), /\] TLS: off\n/)
    const client = new Client(5_000)
    try {
      assert.equal(
        await replyCode(client.access({ host: "127.0.0.1", port: cli.port, ...anonymous, secure: true })),
        502,
      )
    } finally {
      client.close()
    }
    assert.equal(await interrupt(cli), 130, cli.log())
  })
})

Deno.test("ftpd --tls serves explicit and implicit FTPS, requires TLS on the control connection, and says so in its banner", async () => {
  await withCertificate(async (cert) => {
    await withCli(
      [
        ...["--tls", "--certfile", cert.certFile, "--keyfile", cert.keyFile],
        ...["--implicit-tls-port", "0", "--tls-control-required", "-u", "bob", "-P", "secret"],
      ],
      async (cli) => {
        const banner =
          /\] TLS: explicit \(AUTH TLS\) on the control port, implicit TLS on 127\.0\.0\.1:(\d+); minimum TLSv1\.2; control required: yes; data required: no; session reuse required: no; passive PROT P data: native TLS\n/
            .exec(cli.log())
        assert.ok(banner, cli.log())
        const implicitPort = Number(banner[1])
        assert.notEqual(implicitPort, cli.port)

        const explicit = await curl("--ssl-reqd", "-k", `ftp://bob:secret@127.0.0.1:${cli.port}/hello.txt`)
        assert.equal(explicit.code, 0, explicit.stderr)
        assert.equal(new TextDecoder().decode(explicit.stdout), "hello from ftpd\n")
        const implicit = await curl("-k", `ftps://bob:secret@127.0.0.1:${implicitPort}/hello.txt`)
        assert.equal(implicit.code, 0, implicit.stderr)
        assert.equal(new TextDecoder().decode(implicit.stdout), "hello from ftpd\n")

        // A client that logs in without AUTH TLS is refused before it sends its password.
        const plain = await replyCode(session(cli.port, { user: "bob", password: "secret" }, () => Promise.resolve()))
        assert.equal(plain, 530)
        assert.match(cli.log(), /AUTH SSL successful \(TLSv1\.[23]\)/)
        assert.equal(await interrupt(cli), 130, cli.log())
      },
      // Native TLS on passive data connections needs FFI: a handshake that never finishes is closed through it.
      [`--allow-read=${cert.dir}`, "--allow-ffi"],
    )
  })
})
