/**
 * The state of one control connection: user, current directory, type, REST offset, RNFR, pending
 * data connection, running transfer, TLS protection, and what every session of a server shares
 * ({@link ServerContext}). The loop that reads commands and runs them is `loop.ts`; the handlers
 * are in `commands/`.
 *
 * @module
 */
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import type * as Scope from "effect/Scope"
import type * as Tracer from "effect/Tracer"
import type { AdmissionShape } from "../admission.ts"
import type { Account, AuthorizerShape, Permission } from "../auth/authorizer.ts"
import type { BansShape } from "../bans.ts"
import { DataChannel, type DataSockets, type DataTls, type PendingData } from "../data/channel.ts"
import type { PassivePorts } from "../data/passive_ports.ts"
import type { Bandwidth, Throttle } from "../data/throttle.ts"
import { type ChecksumAlgorithm, DEFAULT_CHECKSUM } from "../data/checksum.ts"
import type { Progress } from "../data/loops.ts"
import { FilesystemError } from "../errors.ts"
import type { Capabilities, FilesystemShape, FtpPath } from "../fs/filesystem.ts"
import type { HookSession, HooksShape } from "../hooks.ts"
import { logAnnotated, SESSION_ANNOTATION, SESSION_FIELDS_ANNOTATION, type SessionFields } from "../log.ts"
import type { NativeTls, NetworkShape } from "../net/network.ts"
import type { Events, EventSession } from "../observability/events.ts"
import type { ResolvedOptions } from "../options.ts"
import type { Framed } from "../protocol/framer.ts"
import { DEFAULT_MLSX_FACTS } from "../protocol/listing.ts"
import { basename, hasControlCharacter, resolveVirtual } from "../protocol/path.ts"
import { formatReply, formatReplyMiddle, formatReplyStart } from "../protocol/reply.ts"
import type { ControlConnection } from "./control.ts"
import type { CommandSpec } from "./table.ts"

/** What every session of one server shares. */
export interface ServerContext {
  readonly options: ResolvedOptions
  readonly network: NetworkShape
  /** The TLS context shared by every control and data connection, when FTPS is configured. */
  readonly tls: import("node:tls").SecureContext | null
  /** Certificate and key for native TLS on PROT P passive data connections, when the TLS settings allow it. */
  readonly nativeTls: NativeTls | null
  readonly fs: FilesystemShape
  /** What `fs` can do (see `Capabilities`). */
  readonly capabilities: Capabilities
  /** The MLSx facts `fs` can report. */
  readonly mlsxFacts: ReadonlySet<string>
  readonly auth: AuthorizerShape
  readonly hooks: HooksShape
  readonly passivePorts: PassivePorts
  /** Every data connection open, counted against its session's and the server's limits. */
  readonly dataSockets: DataSockets
  /** The bandwidth buckets of the server, its users and its sessions. */
  readonly bandwidth: Bandwidth
  readonly commands: ReadonlyMap<string, CommandSpec>
  /** Every open session, for the server's idle sweep. */
  readonly sessions: Set<Session>
  /** Connections, logged-in sessions per user and running checksums, counted for the limits. */
  readonly admission: AdmissionShape
  /** The ban list: failed logins and floods are counted here. */
  readonly bans: BansShape
  /** Whether the server is closing: a session that starts now is drained at once. */
  readonly closing: () => boolean
  /** Run a hook in the server's hook fibers: never blocks the caller. */
  readonly runHook: (hook: Effect.Effect<void> | undefined) => Effect.Effect<void>
  /** Where sessions report what happens: log lines, metrics, xferlog, hooks, spans. */
  readonly events: Events
}

/** A transfer in progress, as STAT shows it. */
export interface ActiveTransfer {
  readonly command: string
  readonly path: string
  readonly progress: Progress
  readonly started: number
  /** TYPE A when the transfer started. */
  readonly ascii: boolean
  /** Its bandwidth limits, if any (they count the time waited). */
  readonly throttle: Throttle | undefined
  fiber: Fiber.Fiber<void> | undefined
  /** What STAT says of it, when it is not a data transfer (a checksum); default: the data connection's state. */
  readonly status?: string
  /** The 426 text that ABOR sends for it; default: "Transfer aborted via ABOR.". */
  readonly aborted?: string
}

const DEFAULT_FACTS: ReadonlySet<string> = new Set(DEFAULT_MLSX_FACTS)

/** What the command loop's wait ends with when it was woken rather than given a command line. */
export const WOKEN = Symbol("woken")

/** The 421 text of a session closed because the server stops. */
export const SHUTTING_DOWN = "Server shutting down."

/** The text of the 530 that a command needing a login gets before one. */
export const LOG_IN_FIRST = "Log in with USER and PASS first."

/** The state of one control connection. Handlers read and change it. */
export class Session implements EventSession {
  /** Name given by USER, waiting for PASS or logged in. */
  user: string | null = null
  /** The host the client named with HOST before logging in (RFC 7151), for the authorizer. */
  host: string | null = null
  account: Account | null = null
  loginAttempts = 0
  cwd = "/"
  /** TYPE A (the RFC 959 default) or TYPE I. */
  ascii = true
  restOffset = 0
  /** The REST offset the running RETR or STOR took (REST applies to the next transfer only). */
  transferOffset = 0
  renameFrom: FtpPath | null = null
  data: PendingData | null = null
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
  /** Replaced (never changed in place) by `OPTS MLST`; until then every session shares the default set. */
  mlstFacts: ReadonlySet<string> = DEFAULT_FACTS
  /** The algorithm of HASH, chosen with `OPTS HASH`. */
  hashAlgorithm: ChecksumAlgorithm = DEFAULT_CHECKSUM
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
  /** The session's span, when it is traced. */
  span: Tracer.Span | undefined = undefined
  private sessionId: string | undefined
  private annotations: { readonly user: string | null; readonly value: Readonly<Record<string, unknown>> } | undefined

  constructor(readonly conn: ControlConnection, readonly server: ServerContext) {}

  get options(): ResolvedOptions {
    return this.server.options
  }

  get remoteAddress(): string {
    return this.conn.endpoints.remoteAddress
  }

  get remotePort(): number {
    return this.conn.endpoints.remotePort
  }

  /** A short random id, made when first asked for (structured logs, spans, webhooks). */
  get id(): string {
    return this.sessionId ??= crypto.randomUUID().slice(0, 8)
  }

  /** pyftpdlib's log prefix: `ip:port-[user]`. */
  get prefix(): string {
    const { remoteAddress, remotePort } = this.conn.endpoints
    return `${remoteAddress}:${remotePort}-[${this.account?.user ?? this.user ?? ""}]`
  }

  get hookSession(): HookSession {
    const { remoteAddress, remotePort } = this.conn.endpoints
    return { id: this.id, remoteAddress, remotePort, user: this.account?.user ?? null, host: this.host }
  }

  /** The annotations of this session's log lines: pyftpdlib's prefix, and the fields of structured formats. */
  get logAnnotations(): Readonly<Record<string, unknown>> {
    const user = this.account?.user ?? this.user
    // Made again only when the user changes: a session logs several lines per login.
    if (this.annotations !== undefined && this.annotations.user === user) return this.annotations.value
    const { remoteAddress, remotePort } = this.conn.endpoints
    const fields: SessionFields = { id: this.id, client: `${remoteAddress}:${remotePort}`, user }
    const value = { [SESSION_ANNOTATION]: this.prefix, [SESSION_FIELDS_ANNOTATION]: fields }
    this.annotations = { user, value }
    return value
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
    return logAnnotated("Info", message, this.logAnnotations)
  }

  warn(message: string): Effect.Effect<void> {
    return logAnnotated("Warn", message, this.logAnnotations)
  }

  debug(message: string): Effect.Effect<void> {
    return logAnnotated("Debug", message, this.logAnnotations)
  }

  /** Resolve a client's path argument (relative to the current directory) inside the user's home. */
  resolve(arg: string): Effect.Effect<FtpPath, FilesystemError> {
    const account = this.account!
    return this.server.fs.resolve(account.home, resolveVirtual(this.cwd, arg), account.identity)
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
    const pending = this.data
    this.data = null
    return pending === null ? Effect.void : DataChannel.release(pending)
  }

  /** TLS for this session's data connections under PROT P, or `null` under PROT C. */
  get dataTls(): DataTls | null {
    const context = this.server.tls
    if (!this.protP || context === null) return null
    const { options } = this
    return {
      context,
      handshakeTimeoutMs: options.tlsHandshakeTimeout * 1000,
      requestClientCert: options.tls?.requestClientCert ?? false,
      requireSessionReuse: options.requireSessionReuse,
    }
  }

  /**
   * Count a login of `account` against its user's session limit (its own, else the server's
   * `maxSessionsPerUser`); `false` (nothing counted) when the user is at the limit. The session
   * holds no slot then: logout, REIN and a second USER gave it back.
   */
  claimUserSlot(account: Account): Effect.Effect<boolean> {
    return Effect.map(this.server.admission.login(account.user, account.limits?.maxSessions), (claimed) => {
      if (claimed) this.slotUser = account.user
      return claimed
    })
  }

  /** Give back the slot of the logged-in user: on logout, REIN, a second USER, and the session's end. */
  releaseUserSlot(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const user = this.slotUser
      this.slotUser = null
      return user === null ? Effect.void : this.server.admission.logout(user)
    })
  }

  /** Count a failed login (or a command flood) against the client's address, and report the ban it causes. */
  recordFailure(): Effect.Effect<void> {
    return Effect.flatMap(
      this.server.bans.recordFailure(this.remoteAddress),
      (banned) =>
        banned ? this.server.events.emit({ type: "banned", session: this, ip: this.remoteAddress }) : Effect.void,
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

  /** Wait until the running transfer (if any) has ended. A getter: an idle session holds no Effect for it. */
  get awaitTransfer(): Effect.Effect<void> {
    const fiber = this.transfer?.fiber
    return fiber === undefined ? Effect.void : Effect.asVoid(Fiber.await(fiber))
  }

  /** Wait until the latest transfer has ended and sent its final reply. */
  get awaitLatestTransfer(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const fiber = this.latest?.fiber
      return fiber === undefined ? Effect.void : Effect.asVoid(Fiber.await(fiber))
    })
  }

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
    // A wake-up that comes after the line resolves a settled promise: harmless, so no `finally` clears it.
    return new Promise<Framed | null | typeof WOKEN>((resolve) => {
      this.wake = () => resolve(WOKEN)
      read.then(resolve)
    })
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
