/**
 * Starting, watching and stopping the servers under test, each as its own process, and
 * reading their CPU time and memory from `/proc`.
 *
 * @module
 */

/** The servers the benchmark knows; `ftpd-workers` is ftpd with `--workers N` (`--workers`). */
export type ServerName = "ftpd" | "ftpd-workers" | "pyftpdlib"

/** The account every server is started with. */
export const USER = "bench"
export const PASSWORD = "bench"
export const HOST = "127.0.0.1"

/** The bench's self-signed certificate (generated at start into its temp dir). */
export interface TlsFiles {
  readonly certfile: string
  readonly keyfile: string
  /** The certificate's PEM text, for clients that verify it. */
  readonly cert: string
}

/** How to start one server: the argv for a control port, a root and a passive range. */
export interface ServerSpec {
  readonly name: ServerName
  readonly argv: (port: number, root: string, passive: readonly [number, number]) => string[]
  /** The same server with explicit FTPS (AUTH TLS) on; absent when this machine cannot run it. */
  readonly tlsArgv?: (port: number, root: string, passive: readonly [number, number], tls: TlsFiles) => string[]
  /** Why `tlsArgv` is absent, and how to add it. */
  readonly tlsMissing?: string
  /** The same server with its users from `usersFile` (ftpd's `--users`); absent when it has no such thing. */
  readonly usersArgv?: (port: number, root: string, passive: readonly [number, number], usersFile: string) => string[]
  /** The same server, running a full garbage collection at each SIGUSR2; absent when it cannot. */
  readonly gcArgv?: (port: number, root: string, passive: readonly [number, number]) => string[]
}

/** CPU seconds (utime + stime, every thread) and memory of a process at one moment. */
export interface ProcSample {
  readonly cpuSeconds: number
  /** Resident set size, KiB (`VmRSS`). */
  readonly rssKiB: number
  /** Peak resident set size, KiB (`VmHWM`). */
  readonly hwmKiB: number
}

/** Clock ticks per second of /proc's CPU times. */
export const CLK_TCK: number = (() => {
  try {
    const out = new Deno.Command("getconf", { args: ["CLK_TCK"], stdout: "piped", stderr: "null" }).outputSync()
    const ticks = Number(new TextDecoder().decode(out.stdout).trim())
    return Number.isFinite(ticks) && ticks > 0 ? ticks : 100
  } catch {
    return 100
  }
})()

/** Read `/proc/PID/stat` and `/proc/PID/status`. */
export const sampleProc = (pid: number): ProcSample => {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`)
  // The command name (field 2) may hold spaces and parentheses; the fields after the last ")" do not.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  // Counting from field 3 (state) at index 0: utime is field 14, stime field 15.
  const ticks = Number(fields[11]) + Number(fields[12])
  const status = Deno.readTextFileSync(`/proc/${pid}/status`)
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN)
  return { cpuSeconds: ticks / CLK_TCK, rssKiB: kib("VmRSS"), hwmKiB: kib("VmHWM") }
}

/** Every child this process started and has not reaped yet; killed on exit, on errors and on Ctrl-C. */
const children = new Set<Deno.ChildProcess>()

/** Spawn a child that is killed if the benchmark exits or is interrupted. */
export const spawnTracked = (command: string, options: Deno.CommandOptions): Deno.ChildProcess => {
  const child = new Deno.Command(command, options).spawn()
  children.add(child)
  child.status.finally(() => children.delete(child))
  return child
}

/** Kill every tracked child right now (synchronous, so it also works from `unload` and signal handlers). */
export const killAll = (): void => {
  for (const child of children) {
    try {
      child.kill("SIGKILL")
    } catch {
      // Already exited.
    }
  }
  children.clear()
}

/** True when `port` on 127.0.0.1 can be bound now. */
const portFree = (port: number): boolean => {
  try {
    Deno.listen({ hostname: HOST, port }).close()
    return true
  } catch {
    return false
  }
}

/**
 * A random control port and passive range below Linux's ephemeral range (32768+), so that neither
 * collides with the client side of the benchmark's own connections.
 */
export const pickPorts = (passiveCount: number): { port: number; passive: [number, number] } => {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 10000 + Math.floor(Math.random() * (32000 - 10000 - passiveCount - 2))
    const passive: [number, number] = [port + 1, port + passiveCount]
    if (portFree(port) && portFree(passive[0]) && portFree(passive[1])) return { port, passive }
  }
  throw new Error("no free port found in 50 attempts")
}

/** A server that is up and greeting on `port`. */
export interface RunningServer {
  readonly name: ServerName
  readonly pid: number
  readonly port: number
  readonly child: Deno.ChildProcess
  /** Where its stdout and stderr go; shown when it fails. */
  readonly logPath: string
  /** Resolves with the exit code if the process ends. */
  readonly exited: Promise<number>
  sample(): ProcSample
  /** Run a full garbage collection in it and let it settle; false when it was not started for that. */
  gc(): Promise<boolean>
  stop(): Promise<void>
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** The last `bytes` of a file, for error messages. */
export const tail = (path: string, bytes = 2000): string => {
  try {
    const text = Deno.readTextFileSync(path)
    return text.length > bytes ? "…" + text.slice(-bytes) : text
  } catch {
    return ""
  }
}

/** Connect and wait until a line starting with `220 ` arrives. Resolves false on refusal or silence. */
const greets = async (port: number, timeoutMs: number): Promise<boolean> => {
  let conn: Deno.TcpConn
  try {
    conn = await Deno.connect({ hostname: HOST, port })
  } catch {
    return false
  }
  const timer = setTimeout(() => conn.close(), timeoutMs)
  try {
    const buf = new Uint8Array(4096)
    let text = ""
    while (!/^220 /m.test(text)) {
      const n = await conn.read(buf)
      if (n === null) return false
      text += new TextDecoder().decode(buf.subarray(0, n))
    }
    await conn.write(new TextEncoder().encode("QUIT\r\n")).catch(() => 0)
    return true
  } catch {
    return false
  } finally {
    clearTimeout(timer)
    try {
      conn.close()
    } catch {
      // Closed by the timer.
    }
  }
}

/**
 * Start `spec` as a child process with its output in `logPath`, and wait (at most `timeoutMs`) until
 * its control port sends the 220 greeting.
 */
export const startServer = async (
  spec: ServerSpec,
  root: string,
  logPath: string,
  tls: TlsFiles | null = null,
  timeoutMs = 30_000,
  /** Flags after the spec's own (later flags win: `-d memory:`), and environment variables. */
  extra: { readonly args?: ReadonlyArray<string>; readonly env?: Record<string, string> } = {},
  usersFile: string | null = null,
  /** Started with `spec.gcArgv`, so that `gc()` works. */
  gc = false,
): Promise<RunningServer> => {
  const { port, passive } = pickPorts(1000)
  if (tls !== null && spec.tlsArgv === undefined) throw new Error(`${spec.name}: ${spec.tlsMissing ?? "no TLS"}`)
  if (usersFile !== null && spec.usersArgv === undefined) throw new Error(`${spec.name}: no user file`)
  const withGc = gc && spec.gcArgv !== undefined
  const argv = [
    ...(withGc
      ? spec.gcArgv!(port, root, passive)
      : usersFile !== null
      ? spec.usersArgv!(port, root, passive, usersFile)
      : tls === null
      ? spec.argv(port, root, passive)
      : spec.tlsArgv!(port, root, passive, tls)),
    ...(extra.args ?? []),
  ]
  // `exec` replaces the shell, so the child's pid is the server's pid; output goes straight to a file
  // and costs the benchmark process nothing.
  const child = spawnTracked("sh", {
    // As many descriptors as the hard limit allows: 5,000 idle sessions need more than 1,024.
    args: ["-c", 'ulimit -n "$(ulimit -Hn)"; exec "$@" >>"$BENCH_LOG" 2>&1', "sh", ...argv],
    env: { BENCH_LOG: logPath, NO_COLOR: "1", ...extra.env },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  })
  let exitCode: number | null = null
  const exited = child.status.then((status) => (exitCode = status.code))
  const stop = async () => {
    if (exitCode !== null) return
    try {
      child.kill("SIGTERM")
    } catch {
      return
    }
    const timedOut = await Promise.race([exited.then(() => false), sleep(3000).then(() => true)])
    if (timedOut) {
      try {
        child.kill("SIGKILL")
      } catch {
        // Exited in between.
      }
      await exited
    }
  }
  const deadline = performance.now() + timeoutMs
  try {
    while (!(await greets(port, 2000))) {
      if (exitCode !== null) {
        throw new Error(`${spec.name} exited with code ${exitCode} before greeting:\n${tail(logPath).trim()}`)
      }
      if (performance.now() > deadline) {
        throw new Error(
          `${spec.name} sent no 220 greeting on port ${port} within ${timeoutMs} ms:\n${tail(logPath).trim()}`,
        )
      }
      await sleep(50)
    }
  } catch (error) {
    await stop()
    throw error
  }
  return {
    name: spec.name,
    pid: child.pid,
    port,
    child,
    logPath,
    exited,
    sample: () => {
      if (exitCode !== null) throw new Error(`${spec.name} exited with code ${exitCode}:\n${tail(logPath).trim()}`)
      return sampleProc(child.pid)
    },
    gc: async () => {
      if (!withGc || exitCode !== null) return false
      child.kill("SIGUSR2")
      // Collection takes milliseconds; the allocator's giving back of pages a little longer.
      await sleep(1000)
      return true
    },
    stop,
  }
}

/** Directory of the repository this file lives in. */
export const repoRoot: string = new URL("../../", import.meta.url).pathname.replace(/\/$/, "")

const ftpdFlags = (port: number, root: string, [from, to]: readonly [number, number]) => [
  ...["-i", HOST, "-p", String(port), "-d", root, "-u", USER, "-P", PASSWORD, "-w"],
  ...["--max-cons", "0", "--max-cons-per-ip", "0", "-r", `${from}-${to}`],
]

/** ftpd (`src/cli.ts`), run by the same `deno` that runs the benchmark; with TLS, `--tls --certfile --keyfile`. */
export const ftpdSpec: ServerSpec = {
  name: "ftpd",
  argv: (port, root, passive) => [
    Deno.execPath(),
    "run",
    "--allow-all",
    `${repoRoot}/src/cli.ts`,
    ...ftpdFlags(port, root, passive),
  ],
  tlsArgv: (port, root, passive, tls) => [
    Deno.execPath(),
    "run",
    "--allow-all",
    `${repoRoot}/src/cli.ts`,
    ...ftpdFlags(port, root, passive),
    ...["--tls", "--certfile", tls.certfile, "--keyfile", tls.keyfile],
  ],
  usersArgv: (port, _root, [from, to], usersFile) => [
    Deno.execPath(),
    "run",
    "--allow-all",
    `${repoRoot}/src/cli.ts`,
    ...["-i", HOST, "-p", String(port), "--users", usersFile],
    ...["--max-cons", "0", "--max-cons-per-ip", "0", "-r", `${from}-${to}`],
  ],
  gcArgv: (port, root, passive) => [
    Deno.execPath(),
    "run",
    "--allow-all",
    "--v8-flags=--expose-gc",
    `${repoRoot}/tests/bench/ftpd_gc.ts`,
    ...ftpdFlags(port, root, passive),
  ],
}

/** ftpd with `--workers count`, as a column of its own next to ftpd's. */
export const ftpdWorkersSpec = (count: number): ServerSpec => ({
  name: "ftpd-workers",
  argv: (port, root, passive) => [...ftpdSpec.argv(port, root, passive), "--workers", String(count)],
  tlsArgv: (port, root, passive, tls) => [...ftpdSpec.tlsArgv!(port, root, passive, tls), "--workers", String(count)],
})

const PYTHON = "/usr/bin/python3"

const run = (command: string, args: string[]): { code: number; stdout: string } => {
  try {
    const out = new Deno.Command(command, { args, stdout: "piped", stderr: "piped" }).outputSync()
    return { code: out.code, stdout: new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr) }
  } catch {
    return { code: -1, stdout: "" }
  }
}

/** Whether `/usr/bin/python3 -m pyftpdlib` can run here, and its version. */
export const pyftpdlibVersion = (): string | null => {
  const out = run(PYTHON, ["-c", "import pyftpdlib; print(pyftpdlib.__ver__)"])
  return out.code === 0 ? out.stdout.trim() : null
}

/** Whether `src/cli.ts` exists, i.e. ftpd can be started. */
export const ftpdAvailable = (): boolean => {
  try {
    return Deno.statSync(`${repoRoot}/src/cli.ts`).isFile
  } catch {
    return false
  }
}

/**
 * pyftpdlib as `python3 -m pyftpdlib`. Its command line before 2.0 has no `--max-cons` and caps
 * sessions at 512 (counting listening and data sockets), which the 500 idle sessions would brush
 * against; then the same `main()` runs with `FTPServer.max_cons = 0` (unlimited) set beforehand.
 */
export const pyftpdlibSpec = (): ServerSpec => {
  const hasMaxCons = run(PYTHON, ["-m", "pyftpdlib", "--help"]).stdout.includes("--max-cons")
  const unlimitedMain = "import sys; from pyftpdlib import servers, __main__ as m; servers.FTPServer.max_cons = 0; " +
    "sys.argv[0] = 'pyftpdlib'; m.main()"
  const launcher = hasMaxCons ? ["-m", "pyftpdlib"] : ["-c", unlimitedMain]
  // No TLS flags on pyftpdlib's command line: TLS_FTPHandler with the settings `-w -u -P -r` give.
  const tlsLauncher = [
    "-c",
    [
      "import sys",
      "from pyftpdlib.authorizers import DummyAuthorizer",
      "from pyftpdlib.handlers import TLS_FTPHandler",
      "from pyftpdlib.servers import FTPServer",
      "host, port, root, lo, hi, cert, key, user, password = sys.argv[1:]",
      "authorizer = DummyAuthorizer()",
      "authorizer.add_user(user, password, root, perm='elradfmwMT')",
      "handler = TLS_FTPHandler",
      "handler.certfile, handler.keyfile, handler.authorizer = cert, key, authorizer",
      "handler.passive_ports = list(range(int(lo), int(hi) + 1))",
      "server = FTPServer((host, int(port)), handler)",
      "server.max_cons, server.max_cons_per_ip = 0, 0",
      "server.serve_forever()",
    ].join("\n"),
  ]
  const flags = (port: number, root: string, [from, to]: readonly [number, number]) => [
    ...["-i", HOST, "-p", String(port), "-d", root, "-u", USER, "-P", PASSWORD, "-w"],
    ...(hasMaxCons ? ["--max-cons", "0", "--max-cons-per-ip", "0"] : []),
    ...["-r", `${from}-${to}`],
  ]
  const tlsCheck = run(PYTHON, ["-c", "import OpenSSL; from pyftpdlib.handlers import TLS_FTPHandler"])
  return {
    name: "pyftpdlib",
    ...(tlsCheck.code === 0
      ? {
        tlsArgv: (port: number, root: string, [from, to]: readonly [number, number], tls: TlsFiles) => [
          PYTHON,
          ...tlsLauncher,
          ...[HOST, String(port), root, String(from), String(to), tls.certfile, tls.keyfile, USER, PASSWORD],
        ],
      }
      : {
        tlsMissing: "its TLS needs PyOpenSSL, which is not installed (`apt-get install -y python3-openssl` adds it)",
      }),
    argv: (port, root, passive) => [PYTHON, ...launcher, ...flags(port, root, passive)],
    // CPython frees most objects as their last reference goes; gc.collect() takes the cycles too.
    gcArgv: (port, root, passive) => [
      PYTHON,
      "-c",
      `import gc, signal; signal.signal(signal.SIGUSR2, lambda *_: gc.collect()); ${unlimitedMain}`,
      ...flags(port, root, passive),
    ],
  }
}
