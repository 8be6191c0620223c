/**
 * One control connection: its state (user, current directory, type, REST offset, RNFR, data
 * connection, running transfer) and the loop that reads a command, checks it against the
 * command table and runs its handler.
 *
 * A transfer runs in a child fiber, so that ABOR, STAT, NOOP and QUIT are answered while it runs
 * (RFC 959 4.1.3); any other command waits for the transfer to end, which keeps replies in order.
 *
 * A graceful server close drains a session: waiting for a command, it gets 421 and is closed at
 * once; with a transfer running, it still answers ABOR, STAT, NOOP and QUIT, and gets 421 once the
 * transfer's final reply is sent; any other command is not run.
 *
 * @module
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import type * as Scope from "effect/Scope"
import * as References from "effect/References"
import type { Account, AuthorizerShape, Permission } from "../auth/authorizer.ts"
import type { BansShape } from "../bans.ts"
import { type DataSetup, type DataSockets, releaseSetup } from "../data/data_channel.ts"
import type { PassivePorts } from "../data/passive_ports.ts"
import type { Progress } from "../data/transfer.ts"
import { type DataConnectionError, FilesystemError, filesystemReply } from "../errors.ts"
import type { FilesystemShape, FtpPath } from "../fs/filesystem.ts"
import type { HookSession, HooksShape } from "../hooks.ts"
import { SESSION_ANNOTATION } from "../log.ts"
import { ControlConnection, endpointsOf } from "../net/connection.ts"
import { type NativeTls, TlsConn } from "../net/tls.ts"
import { parseCommand } from "../protocol/command.ts"
import type { Framed } from "../protocol/framer.ts"
import { DEFAULT_MLSX_FACTS } from "../protocol/listing.ts"
import { basename, hasControlCharacter, resolveVirtual } from "../protocol/path.ts"
import { formatReply, formatReplyMiddle, formatReplyStart } from "../protocol/reply.ts"
import type { ResolvedOptions } from "../options.ts"

/** What every session of one server shares. */
export interface ServerContext {
  readonly options: ResolvedOptions
  /** The TLS context shared by every control and data connection, when FTPS is configured. */
  readonly tls: import("node:tls").SecureContext | null
  /** Certificate and key for native TLS on PROT P passive data connections, when the TLS settings allow it. */
  readonly dataTls: NativeTls | null
  readonly fs: FilesystemShape
  readonly auth: AuthorizerShape
  readonly hooks: HooksShape
  readonly passivePorts: PassivePorts
  /** Every data connection open, counted against its session's and the server's limits. */
  readonly dataSockets: DataSockets
  readonly commands: ReadonlyMap<string, CommandSpec>
  /** Every open session, for the server's idle sweep. */
  readonly sessions: Set<Session>
  /** Logged-in sessions per user, for `maxSessionsPerUser`. */
  readonly userSessions: Map<string, number>
  /** The ban list: failed logins and floods are counted here. */
  readonly bans: BansShape
  /** Whether the server is closing: a session that starts now is drained at once. */
  readonly closing: () => boolean
  /** Run a hook in the server's hook fibers: never blocks the caller. */
  readonly runHook: (hook: Effect.Effect<void> | undefined) => Effect.Effect<void>
}

/** Errors a handler may fail with; the dispatcher turns each into its reply. */
export type CommandError = FilesystemError | DataConnectionError

/** A command handler: reply through `session.reply`. */
export type Handler = (session: Session, arg: string) => Effect.Effect<void, CommandError>

/** A row of the command table (pyftpdlib's `proto_cmds`). */
export interface CommandSpec {
  readonly name: string
  /** Whether the command needs a logged-in user. */
  readonly needsLogin: boolean
  /** Argument rule, checked before the handler runs. */
  readonly arg: "required" | "optional" | "none"
  /** Text of `HELP <name>`. */
  readonly help: string
  readonly handler: Handler
}

/** A transfer in progress, as STAT shows it. */
export interface ActiveTransfer {
  readonly command: string
  readonly path: string
  readonly progress: Progress
  readonly started: number
  fiber: Fiber.Fiber<void> | undefined
}

/** The 421 text of a session closed because the server stops. */
export const SHUTTING_DOWN = "Server shutting down."

/** What the command loop's wait ends with when it was woken rather than given a command line. */
const WOKEN = Symbol("woken")
const TRANSFER_DONE = Symbol("transfer done")

/** Commands answered while a transfer runs (RFC 959 4.1.3); the rest wait for it. */
const DURING_TRANSFER = new Set(["ABOR", "STAT", "NOOP", "QUIT"])

/** Commands logged at INFO with their reply code (pyftpdlib's `log_cmds_list`). */
const LOGGED_COMMANDS = new Set([
  "DELE",
  "RNFR",
  "RNTO",
  "MKD",
  "RMD",
  "CWD",
  "XMKD",
  "XRMD",
  "XCWD",
  "REIN",
  "SITE",
  "MFMT",
])

/** The state of one control connection. Handlers read and change it. */
export class Session {
  /** Name given by USER, waiting for PASS or logged in. */
  user: string | null = null
  account: Account | null = null
  loginAttempts = 0
  cwd = "/"
  /** TYPE A (the RFC 959 default) or TYPE I. */
  ascii = true
  restOffset = 0
  renameFrom: FtpPath | null = null
  data: DataSetup | null = null
  /** Data connections this session holds open (see `DataSockets`). */
  dataSockets = 0
  /** Set by the server's graceful close: finish the running transfer (if any), then 421 and close. */
  draining = false
  /** Ends the command loop's current wait for a line (see {@link nextLine}) with `WOKEN`. */
  private wake: (() => void) | null = null
  private current: ActiveTransfer | null = null
  /** The latest transfer, kept after it ends: its fiber ends only once its final reply (226, 426) is sent. */
  private latest: ActiveTransfer | null = null
  epsvAll = false
  mlstFacts: ReadonlySet<string> = new Set(DEFAULT_MLSX_FACTS)
  /** PBSZ was given after AUTH TLS (RFC 4217 9: PROT needs it first). */
  pbsz = false
  /** PROT P: data connections are TLS. */
  protP = false
  /** The running transfer, if any; `null` again as its final reply is about to be sent. */
  get transfer(): ActiveTransfer | null {
    return this.current
  }
  set transfer(value: ActiveTransfer | null) {
    this.current = value
    if (value !== null) this.latest = value
  }
  lastReplyCode = 0
  /** Set by QUIT (and by too many failed logins): the loop ends after this command. */
  closing = false
  /** Whether debug logging (`-D`: every command and reply) is on; read once per session. */
  debugLog = false
  private lastActivity = Date.now()
  /** When the connection opened or its user logged out (REIN, a second USER): `loginTimeout` runs from here. */
  loginStarted = Date.now()
  /** The user this session counts against `maxSessionsPerUser`, while logged in. */
  private slotUser: string | null = null
  private commandWindowStart = 0
  private commandsInWindow = 0

  /** The session's scope: transfers are forked into it, so that its end interrupts them. */
  scope!: Scope.Scope
  /** Set by the idle sweep when it closed the session: the reason, for the log. */
  timedOut: string | null = null

  constructor(readonly conn: ControlConnection, readonly server: ServerContext) {}

  get options(): ResolvedOptions {
    return this.server.options
  }

  get remoteAddress(): string {
    return this.conn.endpoints.remoteAddress
  }

  /** pyftpdlib's log prefix: `ip:port-[user]`. */
  get prefix(): string {
    const { remoteAddress, remotePort } = this.conn.endpoints
    return `${remoteAddress}:${remotePort}-[${this.account?.user ?? this.user ?? ""}]`
  }

  get hookSession(): HookSession {
    const { remoteAddress, remotePort } = this.conn.endpoints
    return { remoteAddress, remotePort, user: this.account?.user ?? null }
  }

  /** Send a reply; a peer that is gone is noticed by the next read. */
  reply(code: number, text: string | ReadonlyArray<string>): Effect.Effect<void> {
    this.lastReplyCode = code
    const formatted = formatReply(code, text)
    const send = Effect.promise(() => this.conn.write(formatted).catch(() => this.conn.close()))
    return this.debugLog ? Effect.andThen(this.debug(`-> ${formatted.trimEnd()}`), send) : send
  }

  /**
   * Send a multi-line reply whose middle lines arrive in batches (LIST-formatted text, CRLF line
   * ends): `first`, every line of `lines`, then `last`. A failure while reading `lines` (the
   * listing's error) ends the reply at once with `last` replaced by a 451 line, and is not raised.
   */
  replyStream(code: number, first: string, lines: AsyncIterable<string>, last: string): Effect.Effect<void> {
    this.lastReplyCode = code
    const failed = (error: unknown) => {
      this.lastReplyCode = 451
      return formatReply(451, `Listing aborted: ${error instanceof Error ? error.message : String(error)}`)
    }
    async function* pieces() {
      yield formatReplyStart(code, first)
      try {
        for await (const text of lines) yield formatReplyMiddle(text)
      } catch (error) {
        yield failed(error)
        return
      }
      yield formatReply(code, last)
    }
    return Effect.promise(() => this.conn.writeStream(pieces()).catch(() => this.conn.close()))
  }

  log(message: string): Effect.Effect<void> {
    return Effect.logInfo(message).pipe(Effect.annotateLogs(SESSION_ANNOTATION, this.prefix))
  }

  warn(message: string): Effect.Effect<void> {
    return Effect.logWarning(message).pipe(Effect.annotateLogs(SESSION_ANNOTATION, this.prefix))
  }

  debug(message: string): Effect.Effect<void> {
    return Effect.logDebug(message).pipe(Effect.annotateLogs(SESSION_ANNOTATION, this.prefix))
  }

  /** Resolve a client's path argument (relative to the current directory) inside the user's home. */
  resolve(arg: string): Effect.Effect<FtpPath, FilesystemError> {
    return this.server.fs.resolve(this.account!.home, resolveVirtual(this.cwd, arg))
  }

  /** Fail with 553 when the last component of `path`, a name about to be created, has a control character. */
  newName(path: FtpPath): Effect.Effect<void, FilesystemError> {
    return hasControlCharacter(basename(path.virtual))
      ? Effect.fail(
        new FilesystemError({
          path: path.virtual,
          reason: "BadName",
          detail: "File name not allowed: it contains control characters.",
        }),
      )
      : Effect.void
  }

  /** Fail with 550 unless the user has `perm` on `path`. */
  requirePerm(perm: Permission, path: FtpPath): Effect.Effect<void, FilesystemError> {
    return this.server.auth.hasPerm(this.account!.user, perm, path.real) ? Effect.void : Effect.fail(
      new FilesystemError({ path: path.virtual, reason: "PermissionDenied", detail: "Not enough privileges." }),
    )
  }

  hasPerm(perm: string, path: FtpPath): boolean {
    return this.server.auth.hasPerm(this.account!.user, perm as Permission, path.real)
  }

  /** Run a hook without waiting for it. */
  hook<A extends ReadonlyArray<unknown>>(
    pick: (hooks: HooksShape) => ((session: HookSession, ...args: A) => Effect.Effect<void>) | undefined,
    ...args: A
  ): Effect.Effect<void> {
    const hook = pick(this.server.hooks)
    return hook === undefined ? Effect.void : this.server.runHook(hook(this.hookSession, ...args))
  }

  /** Give up the pending data connection, if any. */
  releaseData(): Effect.Effect<void> {
    const setup = this.data
    this.data = null
    return setup === null ? Effect.void : releaseSetup(setup)
  }

  /** Count a login of `user` against `maxSessionsPerUser`; `false` (nothing counted) when the user is at the limit. */
  claimUserSlot(user: string): boolean {
    const sessions = this.server.userSessions
    const count = sessions.get(user) ?? 0
    const max = this.options.maxSessionsPerUser
    if (max > 0 && count >= max) return false
    this.releaseUserSlot()
    sessions.set(user, count + 1)
    this.slotUser = user
    return true
  }

  /** Give back the slot of the logged-in user: on logout, REIN, a second USER, and the session's end. */
  releaseUserSlot(): void {
    const user = this.slotUser
    if (user === null) return
    this.slotUser = null
    const left = (this.server.userSessions.get(user) ?? 1) - 1
    if (left === 0) this.server.userSessions.delete(user)
    else this.server.userSessions.set(user, left)
  }

  /** Count a failed login (or a command flood) against the client's address, and log the ban it causes. */
  recordFailure(): Effect.Effect<void> {
    return Effect.flatMap(
      this.server.bans.recordFailure(this.remoteAddress),
      (banned) =>
        banned ? this.warn(`${this.remoteAddress} banned: too many failed logins or command floods.`) : Effect.void,
    )
  }

  /**
   * Count one command against `maxCommandsPerSecond`; `true` when it is over the limit. A fixed
   * one-second window, as pyftpdlib's anti_flood demo: cheap, and a burst at a window's edge of at
   * most twice the limit is no threat.
   */
  floods(now: number): boolean {
    const max = this.options.maxCommandsPerSecond
    if (max === 0) return false
    if (now - this.commandWindowStart >= 1000) {
      this.commandWindowStart = now
      this.commandsInWindow = 0
    }
    return ++this.commandsInWindow > max
  }

  /** Wait until the running transfer (if any) has ended. */
  readonly awaitTransfer: Effect.Effect<void> = Effect.suspend(() => {
    const fiber = this.transfer?.fiber
    return fiber === undefined ? Effect.void : Effect.asVoid(Fiber.await(fiber))
  })

  /** Wait until the latest transfer has ended and sent its final reply. */
  readonly awaitLatestTransfer: Effect.Effect<void> = Effect.suspend(() => {
    const fiber = this.latest?.fiber
    return fiber === undefined ? Effect.void : Effect.asVoid(Fiber.await(fiber))
  })

  /** Graceful shutdown: an idle session is closed with 421 now, a busy one once its command or transfer ends. */
  drain(): void {
    this.draining = true
    this.wake?.()
  }

  /**
   * `read`'s line, or `WOKEN` as soon as {@link drain} is called. A fresh promise per wait: a race
   * against one long-lived promise would pile up a reaction on it per command.
   */
  nextLine(read: Promise<Framed | null>): Promise<Framed | null | typeof WOKEN> {
    if (this.draining) return Promise.resolve(WOKEN)
    return new Promise<Framed | null | typeof WOKEN>((resolve) => {
      this.wake = () => resolve(WOKEN)
      read.then(resolve)
    }).finally(() => (this.wake = null))
  }

  /** Called by a transfer as it ends. */
  transferEnded(): void {
    this.transfer = null
    this.lastActivity = Date.now()
  }

  /** The next command line, or `null` when the client closed the connection (or the idle timeout closed it). */
  async readCommand(): Promise<Framed | null> {
    const line = await this.conn.readLine().catch(() => null)
    this.lastActivity = Date.now()
    return line
  }

  /**
   * Called about once a second by the server's idle sweep: a session not logged in `loginTimeout`
   * seconds after it connected, or with no command for `timeout` seconds and no transfer running
   * (transfer time is not idle time), gets 421 and is closed, which ends its pending read. One
   * sweep for all sessions costs less than a timer per command per session.
   */
  checkIdle(now: number): void {
    if (this.timedOut !== null) return
    const loginMs = this.options.loginTimeout * 1000
    if (loginMs > 0 && this.account === null && now - this.loginStarted >= loginMs) {
      return this.timeOut(`No login within ${this.options.loginTimeout} seconds: closing control connection.`)
    }
    const timeoutMs = this.options.timeout * 1000
    if (timeoutMs === 0 || this.transfer !== null || now - this.lastActivity < timeoutMs) return
    this.timeOut("Control connection timed out.")
  }

  private timeOut(text: string): void {
    this.timedOut = text
    this.lastReplyCode = 421
    const close = () => this.conn.close()
    this.conn.write(formatReply(421, text)).then(close, close)
    setTimeout(close, 1000)
  }
}

const masked = (name: string, line: string) => (name === "PASS" ? "PASS ******" : line)

/** Run one command through the table: login, argument rule, handler, error replies. */
export const dispatch = (session: Session, name: string, arg: string): Effect.Effect<void> => {
  const spec = session.server.commands.get(name)
  if (spec === undefined) {
    // Echo only printable ASCII, and not much of it: the reply must not carry a client's control
    // characters (terminal escapes) into other tools' output or the log.
    return session.reply(500, `Command "${name.replace(/[^\x21-\x7e]/g, "?").slice(0, 40)}" not understood.`)
  }
  if (spec.needsLogin && session.account === null) return session.reply(530, "Log in with USER and PASS first.")
  if (spec.arg === "required" && arg === "") return session.reply(501, "Syntax error: command needs an argument.")
  if (spec.arg === "none" && arg !== "") {
    return session.reply(501, "Syntax error: command does not accept arguments.")
  }
  const run = spec.handler(session, arg).pipe(
    Effect.catchTags({
      FilesystemError: (error) => {
        const { code, text } = filesystemReply(error)
        return session.reply(code, text)
      },
      DataConnectionError: (error) => session.reply(error.code ?? 425, error.message),
    }),
    Effect.catchDefect((defect) =>
      Effect.andThen(
        Effect.logError(`${name} failed unexpectedly`, defect).pipe(
          Effect.annotateLogs(SESSION_ANNOTATION, session.prefix),
        ),
        session.reply(451, "Requested action aborted: local error in processing."),
      )
    ),
  )
  return LOGGED_COMMANDS.has(name)
    ? Effect.andThen(run, Effect.suspend(() => session.log(`${`${name} ${arg}`.trim()} ${session.lastReplyCode}`)))
    : run
}

const closeSession = (session: Session, exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> =>
  Effect.gen(function* () {
    if (exit._tag === "Failure" && Cause.hasInterruptsOnly(exit.cause) && !session.conn.isClosed) {
      yield* session.reply(421, SHUTTING_DOWN).pipe(Effect.timeoutOption("1 second"))
    }
    yield* session.releaseData()
    session.releaseUserSlot()
    session.conn.close()
    yield* session.log("FTP session closed (disconnect).")
    yield* session.hook((h) => h.onDisconnect)
  })

/**
 * Implicit FTPS: TLS from the first byte. A failed or stalled handshake (garbage, a plain FTP
 * client, a client that never finishes) costs this connection only; it is logged and closed.
 */
const implicitHandshake = (server: ServerContext, raw: Deno.Conn): Effect.Effect<ControlConnection | undefined> =>
  Effect.tryPromise(() =>
    TlsConn.accept(raw, server.tls!, {
      timeoutMs: server.options.tlsHandshakeTimeout * 1000,
      requestCert: server.options.tls?.requestClientCert ?? false,
    })
  ).pipe(
    Effect.map((tls) => new ControlConnection(raw, tls)),
    Effect.catch((error) => {
      const { remoteAddress, remotePort } = endpointsOf(raw)
      return Effect.as(
        Effect.logWarning(`${remoteAddress}:${remotePort} implicit TLS: ${String(error.cause)}`),
        undefined,
      )
    }),
    Effect.onInterrupt(() => Effect.sync(() => raw.close())),
  )

/** Serve one control connection until QUIT, disconnect, timeout or interruption. */
export const runSession = (server: ServerContext, raw: Deno.Conn, implicitTls: boolean): Effect.Effect<void> =>
  Effect.gen(function* () {
    const conn = implicitTls ? yield* implicitHandshake(server, raw) : new ControlConnection(raw)
    if (conn === undefined) return
    const session = new Session(conn, server)
    // Transfers forked into this scope later register their finalizers after this one, so they
    // close first: a running transfer is interrupted (data connection and file closed) before
    // the session says 421 and closes.
    yield* Effect.addFinalizer((exit) => closeSession(session, exit))
    session.scope = yield* Effect.scope
    server.sessions.add(session)
    // Connected (or finished its TLS handshake) while the server was already closing.
    if (server.closing()) session.drain()
    yield* Effect.addFinalizer(() => Effect.sync(() => server.sessions.delete(session)))
    const level = yield* References.MinimumLogLevel
    session.debugLog = level === "Debug" || level === "Trace" || level === "All"
    yield* session.log("FTP session opened (connect)")
    yield* session.hook((h) => h.onConnect)
    yield* session.reply(220, server.options.banner)
    // The read of the next line outlives a wake-up, so that no command line is lost.
    let pending: Promise<Framed | null> | null = null
    while (!session.closing) {
      const read = pending ??= session.readCommand()
      const next = session.draining
        // Still answer ABOR, STAT, NOOP and QUIT while a transfer finishes; 421 once it has.
        ? yield* Effect.raceFirst(Effect.promise(() => read), Effect.as(session.awaitLatestTransfer, TRANSFER_DONE))
        : yield* Effect.promise(() => session.nextLine(read))
      if (next === WOKEN) continue
      if (next === TRANSFER_DONE) {
        yield* session.reply(421, SHUTTING_DOWN)
        break
      }
      pending = null
      const framed = next
      if (framed === null) {
        if (session.timedOut !== null) yield* session.log(session.timedOut)
        break
      }
      if (session.floods(Date.now())) {
        yield* session.reply(421, "Too many commands per second: disconnecting.")
        yield* session.warn(`Disconnected: more than ${server.options.maxCommandsPerSecond} commands per second.`)
        yield* session.recordFailure()
        break
      }
      if (framed.kind === "tooLong") {
        yield* session.reply(500, "Command too long.")
        continue
      }
      const { name, arg } = parseCommand(framed.text)
      if (session.debugLog) yield* session.debug(`<- ${masked(name, framed.text)}`)
      if (session.draining && !DURING_TRANSFER.has(name)) {
        yield* session.awaitLatestTransfer
        yield* session.reply(421, SHUTTING_DOWN)
        break
      }
      if (session.transfer !== null && !DURING_TRANSFER.has(name)) yield* session.awaitTransfer
      yield* dispatch(session, name, arg)
    }
  }).pipe(Effect.scoped)
