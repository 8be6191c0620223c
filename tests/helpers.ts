/**
 * Test helpers: a real server on 127.0.0.1 port 0 in a temporary directory, and a raw FTP
 * client for exact reply checks. Tests talk to the server from outside, over TCP.
 */
import "../src/_no_async_hooks.ts"
import { Effect, Exit, Layer, Scope } from "effect"
import net from "node:net"
import { Filesystem, type FilesystemShape } from "../src/fs/filesystem.ts"
import { makeMemoryNetwork, type MemoryNetwork } from "../src/net/memory.ts"
import { runWorkers } from "../src/workers/coordinator.ts"
import type { FixtureData } from "./workers_fixture.ts"
import { Network } from "../src/net/network.ts"
import { DummyAuthorizer } from "../src/auth/dummy.ts"
import { Authorizer, type AuthorizerShape } from "../src/auth/authorizer.ts"
import { type JailMode, LocalFilesystem, UnixFilesystem } from "../src/fs/local.ts"
import { Hooks, type HooksShape } from "../src/hooks.ts"
import { FtpLogger, type LogFormat } from "../src/log.ts"
import type { ServerOptions } from "../src/options.ts"
import { FtpServer } from "../src/server.ts"

/** Options of {@link startServer}. */
export interface TestServerOptions extends ServerOptions {
  /** Users; default: "user"/"pass" with every permission on the root, and anonymous read-only. */
  readonly users?: (authorizer: DummyAuthorizer, root: string) => DummyAuthorizer
  /** An authorizer of the test's own, made from the users' DummyAuthorizer (default: that one as it is). */
  readonly authorizer?: (users: DummyAuthorizer) => AuthorizerShape
  /** An authorizer of the test's own instead of `users` (built in the server's scope, so it lives as long). */
  readonly authorizerLayer?: Layer.Layer<Authorizer, unknown>
  readonly hooks?: HooksShape
  /** Use UnixFilesystem (no jail) instead of LocalFilesystem. */
  readonly unix?: boolean
  /** The jail of the LocalFilesystem (default: auto, the descriptor jail under `--allow-all`). */
  readonly jail?: JailMode
  /** A filesystem of the test's own, instead of a LocalFilesystem. */
  readonly filesystem?: FilesystemShape
  /**
   * An existing root directory; default: a fresh temporary directory, removed by `close`. With a
   * `filesystem` that is not the local disk, its home for the users (`memory:/`).
   */
  readonly root?: string
  /** Homes are not local directories (see `DummyAuthorizerOptions.localHomes`); default true. */
  readonly localHomes?: boolean
  /** Print server log lines (default: kept in `logs` only). */
  readonly verbose?: boolean
  readonly debug?: boolean
  /** Serve over an in-memory network: no socket at all (clients connect with `RawClient.connectTo`). */
  readonly inMemory?: boolean
  /** The log format (default pyftpdlib). */
  readonly logFormat?: LogFormat
  /** More services for the server (metrics, a tracer, ...), built before it and released after it. */
  readonly layer?: Layer.Layer<never, unknown>
}

/** How a test client reaches a server: over TCP, or over the server's in-memory network. */
export interface TestNetwork {
  connect(hostname: string, port: number): Promise<ClientConn & Pick<Deno.Conn, "closeWrite">>
}

const tcp: TestNetwork = { connect: (hostname, port) => Deno.connect({ hostname, port }) }

/** A running test server. */
export interface TestServer {
  readonly port: number
  readonly root: string
  /** Every log line the server wrote. */
  readonly logs: string[]
  /** How clients reach it (TCP, or in memory with `inMemory`). */
  readonly network: TestNetwork
  close(): Promise<void>
}

/**
 * How many workers the suite's servers run with: `FTPD_TEST_WORKERS` (unset: none, one server in
 * the test's thread). A server whose options are not plain data (its own users, hooks or
 * filesystem, or the in-memory network) can't be sent to workers and runs alone, and so do one
 * whose passive range is too small to split and one with the path jail.
 */
const workersFor = (options: TestServerOptions): number | undefined => {
  const wanted = Number(Deno.env.get("FTPD_TEST_WORKERS") ?? 0)
  if (!(wanted > 1)) return undefined
  // The path jail refuses to run as one of several workers (its renames are exclusive in one only).
  const plain = options.jail !== "path" && options.users === undefined && options.hooks === undefined &&
    options.filesystem === undefined &&
    options.layer === undefined && options.authorizer === undefined && options.authorizerLayer === undefined &&
    !options.inMemory &&
    options.siteCommands === undefined
  // A test of how one server leases a small passive range means nothing once the range is split.
  const range = options.passivePorts
  const splittable = range === undefined || range[1] - range[0] + 1 >= 4 * wanted
  return plain && splittable ? wanted : undefined
}

/** Start a server on 127.0.0.1 (or `options.host`) at a free port. */
export const startServer = async (options: TestServerOptions = {}): Promise<TestServer> => {
  const root = options.root ?? (await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-test-" })))
  const logs: string[] = []
  const build = (a: DummyAuthorizer) =>
    options.users !== undefined
      ? options.users(a, root)
      : a.addUser("user", "pass", root, { perm: "elradfmwMT" }).addAnonymous(root)
  const localHomes = options.localHomes ?? true
  const users = options.authorizer === undefined
    ? DummyAuthorizer.layer(build, { localHomes })
    : Layer.succeed(Authorizer, options.authorizer(build(new DummyAuthorizer({ localHomes }))))
  const logger = FtpLogger.layer({
    debug: options.debug ?? false,
    format: options.logFormat,
    write: (line) => {
      logs.push(line)
      if (options.verbose) console.error(line)
    },
  })
  const memory = options.inMemory ? makeMemoryNetwork() : undefined
  const layers = Layer.mergeAll(
    options.authorizerLayer === undefined ? users : Layer.empty,
    options.filesystem !== undefined
      ? Layer.succeed(Filesystem, options.filesystem)
      : options.unix
      ? UnixFilesystem.layer
      : LocalFilesystem.layerWith({ jail: options.jail ?? "auto" }),
    Hooks.layer(options.hooks ?? {}),
    logger,
    memory === undefined ? Layer.empty : Layer.succeed(Network, memory),
  )
  const scope = Effect.runSync(Scope.make())
  const {
    inMemory: _,
    filesystem: __,
    users: ___,
    hooks: ____,
    verbose: _____,
    authorizer: ______,
    localHomes: _______,
    authorizerLayer: ________,
    layer,
    unix,
    jail,
    debug,
    logFormat,
    ...rest
  } = options
  const serverOptions: ServerOptions = { host: "127.0.0.1", port: 0, authFailedTimeout: 0, ...rest }
  const closeScope = async (error: unknown): Promise<never> => {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    throw error
  }
  const own = options.authorizerLayer === undefined
    ? undefined
    : await Effect.runPromise(Layer.buildWithScope(options.authorizerLayer.pipe(Layer.provide(logger)), scope))
      .catch(closeScope)
  const workers = workersFor(options)
  const port = workers === undefined
    ? (await Effect.runPromise(
      Effect.gen(function* () {
        // Built in the server's scope, so that it lives (and is released) with the server.
        const extra = yield* Layer.buildWithScope(layer ?? Layer.empty, scope)
        return yield* FtpServer.make(serverOptions).pipe(Effect.provideContext(extra), Scope.provide(scope))
      }).pipe(Effect.provide(layers), own === undefined ? (effect) => effect : Effect.provide(own)),
    ).catch(closeScope)).address.port
    : (await Effect.runPromise(
      runWorkers({
        workers,
        module: new URL("./workers_fixture.ts", import.meta.url),
        options: serverOptions,
        data: { root, jail, unix, debug, logFormat } satisfies FixtureData,
        onLog: (line) => {
          logs.push(line)
          if (options.verbose) console.error(line)
        },
      }).pipe(Scope.provide(scope), Effect.provide(logger)),
    ).catch(closeScope)).port
  let closed = false
  return {
    port,
    root,
    logs,
    network: memory ?? tcp,
    close: async () => {
      if (closed) return
      closed = true
      await Effect.runPromise(Scope.close(scope, Exit.void))
      if (options.root === undefined) await Deno.remove(root, { recursive: true }).catch(() => undefined)
    },
  }
}

/** One FTP reply. */
export interface Reply {
  readonly code: number
  /** The text of the last line (after the code). */
  readonly text: string
  /** Every line of the reply, as received. */
  readonly lines: ReadonlyArray<string>
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** The byte connection under a {@link RawClient}: a `Deno.Conn`, or a `node:net` socket ({@link netConn}). */
export type ClientConn = Pick<Deno.Conn, "read" | "write" | "close" | "remoteAddr" | "localAddr">

/** A data connection a test client opened: over TCP or in memory. */
export type DataConn = ClientConn & Pick<Deno.Conn, "closeWrite">

/** A connected `node:net` socket as a {@link ClientConn}. */
const netConn = (socket: net.Socket): ClientConn => {
  const chunks: Uint8Array[] = []
  let ended = false
  let wake = () => {}
  socket.on("data", (chunk: Uint8Array) => {
    chunks.push(chunk)
    wake()
  })
  socket.on("close", () => {
    ended = true
    wake()
  })
  socket.on("error", () => undefined)
  return {
    remoteAddr: { transport: "tcp", hostname: socket.remoteAddress ?? "", port: socket.remotePort ?? 0 },
    localAddr: { transport: "tcp", hostname: socket.localAddress ?? "", port: socket.localPort ?? 0 },
    async read(buffer) {
      while (chunks.length === 0) {
        if (ended) return null
        await new Promise<void>((resolve) => (wake = resolve))
      }
      const head = chunks[0]
      const n = Math.min(head.length, buffer.length)
      buffer.set(head.subarray(0, n))
      if (n === head.length) chunks.shift()
      else chunks[0] = head.subarray(n)
      return n
    },
    write: (bytes) =>
      new Promise((resolve, reject) => socket.write(bytes, (error) => (error ? reject(error) : resolve(bytes.length)))),
    close: () => void socket.destroy(),
  }
}

/** A raw FTP client for exact reply checks. */
export class RawClient {
  protected buffer = ""
  private readonly chunk = new Uint8Array(65536)
  /** A read that outlived a reply timeout: the next read takes its bytes instead of losing them. */
  protected pending: Promise<number | null> | undefined
  greeting!: Reply

  /** `network`: where data connections go (the control connection's network). */
  protected constructor(public conn: ClientConn, readonly network: TestNetwork = tcp) {}

  /** Connect over TCP and read the greeting. */
  static async connect(port: number, hostname = "127.0.0.1"): Promise<RawClient> {
    return await new RawClient(await Deno.connect({ hostname, port })).greeted()
  }

  /** A client over a connection already open (after bytes of the test's own, say), once its greeting arrives. */
  static async over(conn: Deno.Conn): Promise<RawClient> {
    return await new RawClient(conn).greeted()
  }

  /** Connect to an in-memory `server` as a client at `localAddress` and read the greeting. */
  static async connectToFrom(server: TestServer, localAddress: string): Promise<RawClient> {
    const memory = server.network as unknown as MemoryNetwork
    if (typeof memory.connectFrom !== "function") throw new Error("connectToFrom needs an in-memory server")
    return await new RawClient(await memory.connectFrom(localAddress, "127.0.0.1", server.port), server.network)
      .greeted()
  }

  /** Connect to `server` the way it is reached (TCP, or its in-memory network) and read the greeting. */
  static async connectTo(server: TestServer, hostname = "127.0.0.1"): Promise<RawClient> {
    return await new RawClient(await server.network.connect(hostname, server.port), server.network).greeted()
  }

  /**
   * Connect from `localAddress` (another loopback address, say), which `Deno.connect` can't choose,
   * over `node:net`, and read the greeting.
   */
  static async connectFrom(port: number, localAddress: string): Promise<RawClient> {
    const socket = net.connect({ host: "127.0.0.1", port, localAddress })
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", () => resolve())
      socket.once("error", reject)
    })
    return await new RawClient(netConn(socket)).greeted()
  }

  /** Read the greeting; the connection is closed if none comes. */
  protected async greeted(): Promise<this> {
    try {
      this.greeting = await this.readReply()
      return this
    } catch (error) {
      this.close()
      throw error
    }
  }

  /** Send raw bytes or a command line (CRLF added to strings). */
  async send(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? encoder.encode(`${data}\r\n`) : data
    let offset = 0
    while (offset < bytes.length) offset += await this.conn.write(bytes.subarray(offset))
  }

  private async readLine(timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const end = this.buffer.indexOf("\r\n")
      if (end >= 0) {
        const line = this.buffer.slice(0, end)
        this.buffer = this.buffer.slice(end + 2)
        return line
      }
      const remaining = deadline - Date.now()
      if (remaining <= 0) throw new Error(`no reply within ${timeoutMs} ms (buffered: ${JSON.stringify(this.buffer)})`)
      this.pending ??= this.conn.read(this.chunk)
      let timer: ReturnType<typeof setTimeout> | undefined
      const n = await Promise.race([
        this.pending,
        new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), remaining))),
      ]).finally(() => clearTimeout(timer))
      if (n === "timeout") continue
      this.pending = undefined
      if (n === null) throw new Error(`connection closed (buffered: ${JSON.stringify(this.buffer)})`)
      this.buffer += decoder.decode(this.chunk.subarray(0, n), { stream: true })
    }
  }

  /** Read one (possibly multi-line) reply. */
  async readReply(timeoutMs = 10_000): Promise<Reply> {
    const first = await this.readLine(timeoutMs)
    const match = /^(\d{3})([ -])(.*)$/.exec(first)
    if (match === null) throw new Error(`not a reply line: ${JSON.stringify(first)}`)
    const lines = [first]
    if (match[2] === "-") {
      for (;;) {
        const line = await this.readLine(timeoutMs)
        lines.push(line)
        if (line.startsWith(`${match[1]} `)) return { code: Number(match[1]), text: line.slice(4), lines }
      }
    }
    return { code: Number(match[1]), text: match[3], lines }
  }

  /** Send a command and read its reply. */
  async command(line: string): Promise<Reply> {
    await this.send(line)
    return await this.readReply()
  }

  /** USER + PASS; throws unless 230. */
  async login(user = "user", password = "pass"): Promise<void> {
    const u = await this.command(`USER ${user}`)
    if (u.code !== 331) throw new Error(`USER: ${u.lines.join("|")}`)
    const p = await this.command(`PASS ${password}`)
    if (p.code !== 230) throw new Error(`PASS: ${p.lines.join("|")}`)
  }

  /** EPSV; the announced port. */
  async epsvPort(): Promise<number> {
    const reply = await this.command("EPSV")
    const match = /\(\|\|\|(\d+)\|\)/.exec(reply.text)
    if (reply.code !== 229 || match === null) throw new Error(`EPSV: ${reply.lines.join("|")}`)
    return Number(match[1])
  }

  /** EPSV and connect to the announced port over TCP. */
  async passive(): Promise<Deno.TcpConn> {
    if (this.network !== tcp) throw new Error("an in-memory client: use passiveData()")
    const port = await this.epsvPort()
    const remote = this.conn.remoteAddr as Deno.NetAddr
    return await Deno.connect({ hostname: remote.hostname, port })
  }

  /** EPSV and connect to the announced port over the control connection's network (TCP or in memory). */
  async passiveData(): Promise<DataConn> {
    const port = await this.epsvPort()
    const remote = this.conn.remoteAddr as Deno.NetAddr
    return await this.network.connect(remote.hostname, port)
  }

  /** Whether the server closed the control connection (reads until EOF, within `timeoutMs`). */
  async closedByServer(timeoutMs = 5000): Promise<boolean> {
    try {
      for (;;) await this.readLine(timeoutMs)
    } catch (error) {
      return String(error).includes("connection closed") || error instanceof Deno.errors.ConnectionReset
    }
  }

  close(): void {
    try {
      this.conn.close()
    } catch {
      // Closed already.
    }
  }
}

/** How {@link loggedIn} connects and logs in. */
export interface LoginOptions {
  readonly hostname?: string
  readonly user?: string
  readonly password?: string
  /** The TYPE to set after login (default "I", binary); `null` leaves the server's default. */
  readonly type?: "I" | "A" | null
}

/** A raw client connected to `server` (or a port, over TCP), logged in, in binary mode unless told otherwise. */
export const loggedIn = async (server: TestServer | { readonly port: number } | number, options: LoginOptions = {}) => {
  const client = typeof server === "number"
    ? await RawClient.connect(server, options.hostname)
    : "network" in server
    ? await RawClient.connectTo(server, options.hostname)
    : await RawClient.connect(server.port, options.hostname)
  try {
    await client.login(options.user, options.password)
    const type = options.type === undefined ? "I" : options.type
    if (type !== null) {
      const reply = await client.command(`TYPE ${type}`)
      if (reply.code !== 200) throw new Error(`TYPE ${type}: ${reply.lines.join("|")}`)
    }
    return client
  } catch (error) {
    client.close()
    throw error
  }
}

/** Start a server with `options`, log a client in, run `f`; both are closed afterwards. */
export const withLoggedIn = async (
  options: TestServerOptions,
  f: (server: TestServer, client: RawClient) => Promise<void>,
  login: LoginOptions = {},
): Promise<void> => {
  const server = await startServer(options)
  try {
    const client = await loggedIn(server, login)
    try {
      await f(server, client)
    } finally {
      client.close()
    }
  } finally {
    await server.close()
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** `size` random bytes (getRandomValues fills at most 64 KiB at a time). */
export const randomBytes = (size: number): Uint8Array => {
  const bytes = new Uint8Array(size)
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(bytes.subarray(i, Math.min(size, i + 65536)))
  return bytes
}

/** A file of `size` zero bytes that takes no disk space (sparse): a transfer far bigger than socket buffers. */
export const sparseFile = async (path: string, size: number): Promise<void> => {
  const file = await Deno.open(path, { write: true, create: true })
  try {
    await file.truncate(size)
  } finally {
    file.close()
  }
}

/** Hooks that record each file hook's call as `name file`. */
export const recordingHooks = (): { calls: string[]; hooks: HooksShape } => {
  const calls: string[] = []
  const record = (name: string) => (_session: unknown, file: string) =>
    Effect.sync(() => void calls.push(`${name} ${file}`))
  const hooks: HooksShape = {
    onFileSent: record("onFileSent"),
    onFileReceived: record("onFileReceived"),
    onIncompleteFileSent: record("onIncompleteFileSent"),
    onIncompleteFileReceived: record("onIncompleteFileReceived"),
  }
  return { calls, hooks }
}

/** `promise`'s value, or `null` if it takes longer than `ms`. */
export const within = async <A>(promise: Promise<A>, ms: number): Promise<A | null> => {
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    return await Promise.race([promise, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), ms)))])
  } finally {
    clearTimeout(timer)
  }
}

/** `promise`'s value; fails the test if it takes longer than `ms` (no await in a test waits forever). */
export const timed = async <A>(promise: Promise<A>, ms: number, what: string): Promise<A> => {
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms))),
    ])
  } finally {
    clearTimeout(timer)
  }
}

/** Read a data connection to its end, within 20 s. */
export const readAll = (conn: Pick<Deno.Conn, "read">): Promise<Uint8Array> =>
  timed(
    (async () => {
      const chunks: Uint8Array[] = []
      let total = 0
      for (;;) {
        const chunk = new Uint8Array(1 << 16)
        const n = await conn.read(chunk)
        if (n === null) break
        chunks.push(chunk.subarray(0, n))
        total += n
      }
      const all = new Uint8Array(total)
      let offset = 0
      for (const chunk of chunks) {
        all.set(chunk, offset)
        offset += chunk.length
      }
      return all
    })(),
    20_000,
    "the data connection to end",
  )

/** A command that receives data (RETR, LIST...) over EPSV: its reply codes and the text received. */
export const receive = async (raw: RawClient, command: string): Promise<{ codes: number[]; data: string }> => {
  const conn = await raw.passiveData()
  try {
    const first = await raw.command(command)
    if (first.code !== 150) return { codes: [first.code], data: "" }
    const data = new TextDecoder().decode(await readAll(conn))
    return { codes: [150, (await raw.readReply()).code], data }
  } finally {
    closeQuietly(conn)
  }
}

/** Close a connection that may be closed already. */
export const closeQuietly = (conn: { close(): void }): void => {
  try {
    conn.close()
  } catch {
    // Closed already.
  }
}

/** Write `data` to a data connection and end it (the server sees the end of the file). */
export const writeAllAndClose = async (
  conn: Pick<Deno.Conn, "write" | "closeWrite">,
  data: Uint8Array,
): Promise<void> => {
  for (let offset = 0; offset < data.length;) offset += await conn.write(data.subarray(offset))
  await conn.closeWrite()
}

/** SHA-256 of bytes, as hex. */
export const sha256 = async (data: Uint8Array): Promise<string> =>
  Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>)))
    .map((b) => b.toString(16).padStart(2, "0"))
    .join("")

/** Run curl; returns exit code and output. */
export const curl = async (...args: string[]): Promise<{ code: number; stdout: Uint8Array; stderr: string }> => {
  const out = await new Deno.Command("curl", {
    args: ["-s", "-S", "--max-time", "60", ...args],
    stdout: "piped",
    stderr: "piped",
  })
    .output()
  return { code: out.code, stdout: out.stdout, stderr: decoder.decode(out.stderr) }
}

/** Open file descriptors of this process (Linux). */
export const openFds = (): number => [...Deno.readDirSync("/proc/self/fd")].length

/** Wait until `condition` holds, polling, or throw after `timeoutMs`. */
export const eventually = async (condition: () => boolean | Promise<boolean>, timeoutMs = 5000, what = "condition") => {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** A self-signed certificate made by {@link makeCertificate}; nothing of it is ever committed. */
export interface TestCertificate {
  /** The temporary directory holding `cert.pem` and `key.pem`. */
  readonly dir: string
  readonly certFile: string
  readonly keyFile: string
  /** PEM text of the certificate. */
  readonly cert: string
  /** PEM text of the (unencrypted) private key. */
  readonly key: string
  /** Remove the directory. */
  remove(): Promise<void>
}

/**
 * A fresh self-signed certificate for `localhost` and `127.0.0.1` (P-256, valid for a day),
 * made with `openssl` in a temporary directory.
 */
export const makeCertificate = async (commonName = "localhost"): Promise<TestCertificate> => {
  // Not under /dev/shm: Deno lets a process read files below /dev only with --allow-all.
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-cert-" }))
  const remove = () => Deno.remove(dir, { recursive: true }).catch(() => undefined)
  try {
    const certFile = `${dir}/cert.pem`
    const keyFile = `${dir}/key.pem`
    const out = await new Deno.Command("openssl", {
      args: [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        keyFile,
        "-out",
        certFile,
        "-days",
        "1",
        "-subj",
        `/CN=${commonName}`,
        "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
        // Not a CA: rustls (Deno's TLS client) refuses a CA certificate as a server's own.
        "-addext",
        "basicConstraints=critical,CA:FALSE",
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output()
    if (!out.success) throw new Error(`openssl req failed: ${decoder.decode(out.stderr)}`)
    const [cert, key] = await Promise.all([Deno.readTextFile(certFile), Deno.readTextFile(keyFile)])
    return { dir, certFile, keyFile, cert, key, remove }
  } catch (error) {
    await remove()
    throw error
  }
}

/**
 * The child: a test server with the options in argv[0], serving until its stdin closes. On
 * SIGUSR2 it collects garbage and writes its live heap size to argv[1] (run with --expose-gc).
 */
const SERVER_SCRIPT = `
import { startServer } from ${JSON.stringify(new URL("./helpers.ts", import.meta.url).href)}
const server = await startServer(JSON.parse(Deno.args[0]))
const gc = (globalThis as unknown as { gc: () => void }).gc
let probes = 0
Deno.addSignalListener("SIGUSR2", () => {
  gc()
  gc()
  Deno.writeTextFileSync(Deno.args[1], JSON.stringify({ probe: ++probes, heap: Deno.memoryUsage().heapUsed }))
})
console.log(JSON.stringify({ port: server.port, root: server.root }))
for await (const _ of Deno.stdin.readable) { /* until the parent closes stdin */ }
await server.close()
`

/** A server in a child process, so that its memory and descriptors are its own. */
export interface ChildServer {
  readonly port: number
  readonly pid: number
  /** The directory it serves. */
  readonly root: string
  /** Descriptors the server process has open. */
  fds(): number
  /** Resident set size of the server process, in bytes. */
  rss(): number
  /** Live heap of the server process after a full garbage collection, in bytes. */
  heap(): Promise<number>
}

/**
 * Run `f` against a test server (`options` as for {@link startServer}, JSON only) in a child
 * process; the child ends when `f` does.
 */
export const withChildServer = async (
  options: Omit<TestServerOptions, "users" | "hooks">,
  f: (server: ChildServer) => Promise<void>,
) => {
  const dir = await Deno.makeTempDir({ prefix: "ftpd-resources-" })
  let child: Deno.ChildProcess | undefined
  try {
    await Deno.writeTextFile(`${dir}/server.ts`, SERVER_SCRIPT)
    const config = new URL("../deno.json", import.meta.url).pathname
    child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        "--no-prompt",
        "--config",
        config,
        "--v8-flags=--expose-gc",
        `${dir}/server.ts`,
        JSON.stringify(options),
        `${dir}/heap.json`,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn()
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader()
    const first = await timed(reader.read(), 30_000, "the child server to start")
    reader.releaseLock()
    child.stdout.cancel().catch(() => undefined)
    const { port, root } = JSON.parse(first.value!.trim())
    const pid = child.pid
    let probes = 0
    const heap = async () => {
      probes++
      Deno.kill(pid, "SIGUSR2")
      let heap = 0
      await eventually(
        () => {
          try {
            const report = JSON.parse(Deno.readTextFileSync(`${dir}/heap.json`))
            heap = report.heap
            return report.probe === probes
          } catch {
            return false
          }
        },
        10_000,
        "the child's heap report",
      )
      return heap
    }
    await f({
      port,
      pid,
      root,
      fds: () => [...Deno.readDirSync(`/proc/${pid}/fd`)].length,
      rss: () => Number(/VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))![1]) * 1024,
      heap,
    })
  } finally {
    if (child !== undefined) {
      await child.stdin.close().catch(() => undefined)
      const exited = await within(child.status, 10_000)
      if (exited === null) {
        child.kill("SIGKILL")
        await child.status
      }
    }
    await Deno.remove(dir, { recursive: true })
  }
}

/** The `ftpd` command, run by {@link spawnCli}. */
export const CLI: string = new URL("../src/cli.ts", import.meta.url).pathname

/** A running `ftpd` process, with its standard error gathered as it comes. */
export interface SpawnedCli {
  readonly process: Deno.ChildProcess
  /** Everything it wrote to standard error so far. */
  readonly stderr: () => string
  /** The control port, from its start banner. */
  readonly port: number
  /** Signal it, wait for it to exit (killing it after 10 s), and return its exit code. */
  stop(signal?: Deno.Signal): Promise<number>
}

/**
 * Start `ftpd` with `permissions` (and `--no-prompt`), `args` and `env`, and wait for its start
 * banner. The caller stops it.
 */
export const spawnCli = async (
  permissions: string[],
  args: string[],
  env: Record<string, string> = {},
  /** Where the banner is when the log goes to a file (`--log-file`). */
  logFile?: string,
): Promise<SpawnedCli> => {
  const process = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...permissions, CLI, ...args],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1", ...env },
  }).spawn()
  let log = ""
  const started = Promise.withResolvers<number>()
  const drained = (async () => {
    for await (const chunk of process.stderr.pipeThrough(new TextDecoderStream())) {
      log += chunk
      const match = /starting FTP server on [^\s,]+:(\d+), pid=/.exec(log)
      if (match) started.resolve(Number(match[1]))
    }
    started.reject(new Error(`ftpd exited before its banner:\n${log}`))
  })()
  const poll = logFile === undefined ? undefined : setInterval(() => {
    let text = ""
    try {
      text = Deno.readTextFileSync(logFile)
    } catch {
      // Not made yet.
    }
    const match = /starting FTP server on [^\s,]+:(\d+), pid=/.exec(text)
    if (match) started.resolve(Number(match[1]))
  }, 50)
  const stop = async (signal: Deno.Signal = "SIGTERM") => {
    try {
      process.kill(signal)
    } catch {
      // Exited already.
    }
    const exited = await within(process.status, 10_000)
    if (exited === null) {
      process.kill("SIGKILL")
      await process.status
    }
    await drained
    return (await process.status).code
  }
  try {
    const port = await timed(started.promise, 20_000, `ftpd's banner (${log})`)
    return { process, stderr: () => log, port, stop }
  } catch (error) {
    await stop("SIGKILL")
    throw error
  } finally {
    clearInterval(poll)
  }
}

/** Whether `command` is installed; when not, warns (naming the Debian package) so that the skip is seen. */
export const installed = async (command: string, debianPackage: string): Promise<boolean> => {
  try {
    await new Deno.Command(command, { args: ["--version"], stdout: "null", stderr: "null" }).output()
    return true
  } catch {
    console.warn(`SKIPPED: ${command} is not installed (apt-get install -y ${debianPackage})`)
    return false
  }
}

/**
 * Why the user nobody (uid 65534, through setpriv) can't run `cli` with this deno, or `undefined`
 * when it can: the checkout must be readable by everyone and the deno binary executable by everyone
 * (npx keeps it under /root, which it is not).
 */
export const nobodyCantRun = (cli: string): string | undefined => {
  try {
    const probe = new Deno.Command("setpriv", {
      args: [
        ...["--reuid=65534", "--regid=65534", "--clear-groups"],
        ...["sh", "-c", 'test -r "$1" && test -x "$2"', "probe", cli, Deno.execPath()],
      ],
      stdout: "null",
      stderr: "null",
    }).outputSync()
    return probe.success ? undefined : "user nobody cannot read the checkout or run this deno"
  } catch (error) {
    return `no setpriv (apt-get install -y util-linux): ${error}`
  }
}
