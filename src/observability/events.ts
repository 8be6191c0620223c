/**
 * The one owner of what a server reports about itself. Admission, sessions, the command loop,
 * transfers, passive ports and TLS handshakes each hand it a typed {@link FtpEvent}; from each
 * event it writes the log line (pyftpdlib text, with the event's name and fields for structured
 * formats), the metrics (when {@link FtpMetrics} is provided), the xferlog line (with an
 * `xferlog` file) and the hooks (upload actions among them). It also wraps a session, each
 * command and each transfer in a span when the program has a tracer that exports spans.
 *
 * What is off costs nothing: without metrics or a tracer, a command that is not logged is run as
 * it is, with no wrapper and no event; the other events cost a switch and a null check.
 *
 * @module
 */
import * as Effect from "effect/Effect"
import type * as Tracer from "effect/Tracer"
import type { HookPath, HookSession, HooksShape } from "../hooks.ts"
import { EVENT_ANNOTATION, type EventFields, logAnnotated } from "../log.ts"
import type { LogFile } from "./log_file.ts"
import type {
  LoginResult,
  MetricsRecorder,
  PassivePortEvent,
  RefusalReason,
  TlsChannel,
  TransferResult,
} from "./metrics.ts"
import { xferlogLine } from "./xferlog.ts"

/** What events need to know of a session. */
export interface EventSession {
  /** A short id, the same in every log line, span and webhook event of the session. */
  readonly id: string
  readonly remoteAddress: string
  readonly remotePort: number
  /** Annotations of the session's log lines (its prefix and its fields). */
  readonly logAnnotations: Readonly<Record<string, unknown>>
  readonly hookSession: HookSession
  /** The session's span, when it is traced; user names are added to it at login. */
  span: Tracer.Span | undefined
}

/** A transfer that ended. */
export interface TransferRecord {
  readonly command: string
  readonly direction: "send" | "receive" | "listing"
  readonly path: HookPath
  /** The file hooks are told about: for a cut atomic upload, the (removed) temporary file. */
  readonly file: string
  /** Bytes moved; for an upload, the bytes that reached the file. */
  readonly bytes: number
  readonly seconds: number
  readonly result: TransferResult
  readonly ascii: boolean
  /** Milliseconds the transfer waited for bandwidth limits. */
  readonly throttledMs: number
  /** The logged-in user. */
  readonly user: string
}

/** Everything a server reports. */
export type FtpEvent =
  | { readonly type: "connectionAccepted" }
  | {
    readonly type: "connectionRefused"
    readonly ip: string
    readonly reason: RefusalReason
    /** The warning logged, if any. */
    readonly text?: string
  }
  | { readonly type: "sessionOpened"; readonly session: EventSession }
  | { readonly type: "sessionClosed"; readonly session: EventSession }
  | {
    readonly type: "login"
    readonly session: EventSession
    readonly user: string
    readonly result: LoginResult
    /** Why a login failed, for the log only (the client gets the same 530 whatever it is). */
    readonly reason?: string
  }
  | { readonly type: "banned"; readonly session: EventSession; readonly ip: string }
  | {
    readonly type: "command"
    readonly session: EventSession
    /** A name from the command table, or `unknown`. */
    readonly command: string
    /** The command line for the log (arguments of logged commands only). */
    readonly line: string
    readonly code: number
    readonly logged: boolean
  }
  | { readonly type: "transfer"; readonly session: EventSession; readonly transfer: TransferRecord }
  | {
    readonly type: "fileChanged"
    readonly session: EventSession
    readonly change: "deleted" | "renamed" | "directoryCreated" | "directoryRemoved"
    readonly path: HookPath
    /** The new name of a rename. */
    readonly to?: HookPath
  }
  | { readonly type: "tlsHandshake"; readonly channel: TlsChannel; readonly ok: boolean; readonly version: string }
  | { readonly type: "passivePort"; readonly event: PassivePortEvent }

/** What the events of one server feed. */
export interface EventsOptions {
  readonly metrics: MetricsRecorder | null
  /** The transfer log, when there is one. */
  readonly xferlog: LogFile | null
  readonly hooks: HooksShape
  /** Run a hook without waiting for it. */
  readonly runHook: (hook: Effect.Effect<void> | undefined) => Effect.Effect<void>
  /** Whether sessions, commands and transfers are wrapped in spans. */
  readonly tracing: boolean
  /** Count the bans in force again (after a new ban). */
  readonly refreshBans?: Effect.Effect<void>
}

/** The pyftpdlib user name of anonymous logins. */
const ANONYMOUS = "anonymous"

const sessionLog = (
  level: "Info" | "Warn",
  session: EventSession,
  text: string,
  fields: EventFields,
): Effect.Effect<void> => logAnnotated(level, text, { ...session.logAnnotations, [EVENT_ANNOTATION]: fields })

const LOGIN_TEXT: Record<LoginResult, (user: string, reason?: string) => string> = {
  ok: (user) => `USER '${user}' logged in.`,
  failed: (user, reason) => `USER '${user}' failed login${reason === undefined ? "" : `: ${reason}`}.`,
  too_many_sessions: (user) => `USER '${user}' refused: too many sessions for this user.`,
  banned: (user) => `USER '${user}' refused: address banned.`,
}

const LOGIN_EVENT: Record<LoginResult, string> = {
  ok: "login",
  failed: "login_failed",
  too_many_sessions: "login_refused",
  banned: "login_refused",
}

/** The events of one server. */
export class Events {
  readonly tracing: boolean
  /** Whether metrics are recorded. */
  readonly metrics: boolean
  /** Whether every command is an event (for metrics or spans), or only the logged ones. */
  private readonly everyCommand: boolean

  constructor(private readonly options: EventsOptions) {
    this.tracing = options.tracing
    this.metrics = options.metrics !== null
    this.everyCommand = options.metrics !== null || options.tracing
  }

  private hook<A extends ReadonlyArray<unknown>>(
    session: EventSession,
    hook: ((session: HookSession, ...args: A) => Effect.Effect<void>) | undefined,
    ...args: A
  ): Effect.Effect<void> {
    return hook === undefined ? Effect.void : this.options.runHook(hook(session.hookSession, ...args))
  }

  /** Report `event`: log line, metrics, xferlog, hooks, span attributes, as each applies. */
  emit(event: FtpEvent): Effect.Effect<void> {
    const { metrics, hooks } = this.options
    switch (event.type) {
      case "connectionAccepted":
        metrics?.connectionAccepted()
        return Effect.void
      case "connectionRefused":
        metrics?.connectionRefused(event.reason)
        if (event.text === undefined) return Effect.void
        return Effect.logWarning(event.text).pipe(
          Effect.annotateLogs(EVENT_ANNOTATION, { event: "connection_refused", ip: event.ip, reason: event.reason }),
        )
      case "sessionOpened":
        metrics?.sessionOpened()
        return Effect.andThen(
          sessionLog("Info", event.session, "FTP session opened (connect)", { event: "session_opened" }),
          this.hook(event.session, hooks.onConnect),
        )
      case "sessionClosed":
        metrics?.sessionClosed()
        return Effect.andThen(
          sessionLog("Info", event.session, "FTP session closed (disconnect).", { event: "session_closed" }),
          this.hook(event.session, hooks.onDisconnect),
        )
      case "login":
        return this.login(event.session, event.user, event.result, event.reason)
      case "banned":
        metrics?.banned()
        return Effect.andThen(
          sessionLog(
            "Warn",
            event.session,
            `${event.ip} banned: too many failed logins or command floods.`,
            { event: "ban", ip: event.ip },
          ),
          this.options.refreshBans ?? Effect.void,
        )
      case "command":
        metrics?.command(event.command, event.code)
        return Effect.andThen(
          this.tracing ? Effect.annotateCurrentSpan("ftp.reply.code", event.code) : Effect.void,
          event.logged
            ? sessionLog("Info", event.session, `${event.line} ${event.code}`, {
              event: "command",
              command: event.command,
              code: event.code,
            })
            : Effect.void,
        )
      case "transfer":
        return this.transfer(event.session, event.transfer)
      case "fileChanged": {
        const { session, path } = event
        switch (event.change) {
          case "deleted":
            return this.hook(session, hooks.onFileDeleted, path)
          case "renamed":
            return this.hook(session, hooks.onRenamed, path, event.to!)
          case "directoryCreated":
            return this.hook(session, hooks.onDirectoryCreated, path)
          case "directoryRemoved":
            return this.hook(session, hooks.onDirectoryRemoved, path)
        }
        return Effect.void
      }
      case "tlsHandshake":
        metrics?.tlsHandshake(event.channel, event.ok, event.version)
        return Effect.void
      case "passivePort":
        metrics?.passivePort(event.event)
        return Effect.void
    }
  }

  private login(session: EventSession, user: string, result: LoginResult, reason?: string): Effect.Effect<void> {
    this.options.metrics?.login(result)
    if (result === "ok") session.span?.attribute("enduser.id", user)
    const log = sessionLog(result === "banned" ? "Warn" : "Info", session, LOGIN_TEXT[result](user, reason), {
      event: LOGIN_EVENT[result],
      login: user,
      ...(result === "ok" ? {} : result === "failed" ? (reason === undefined ? {} : { reason }) : { reason: result }),
    })
    const hooks = this.options.hooks
    return result === "ok"
      ? Effect.andThen(log, this.hook(session, hooks.onLogin, user))
      : result === "failed"
      ? Effect.andThen(log, this.hook(session, hooks.onLoginFailed, user))
      : log
  }

  private transfer(session: EventSession, transfer: TransferRecord): Effect.Effect<void> {
    const { metrics, hooks, xferlog } = this.options
    const { command, direction, path, bytes, seconds, result } = transfer
    metrics?.transfer(
      command,
      direction === "send" ? "download" : direction === "receive" ? "upload" : "listing",
      result,
      bytes,
      seconds,
    )
    const span = this.tracing
      ? Effect.annotateCurrentSpan({
        "ftp.transfer.bytes": bytes,
        "ftp.transfer.result": result,
        "ftp.transfer.throttled_ms": Math.round(transfer.throttledMs),
      })
      : Effect.void
    if (direction === "listing") return span
    const completed = result === "ok"
    if (xferlog !== null) {
      xferlog.write(xferlogLine({
        end: new Date(),
        seconds,
        remoteAddress: session.remoteAddress,
        bytes,
        file: path.real,
        ascii: transfer.ascii,
        direction,
        user: transfer.user,
        anonymous: transfer.user === ANONYMOUS,
        completed,
      }))
    }
    const log = sessionLog(
      "Info",
      session,
      `${command} ${path.virtual} completed=${completed ? 1 : 0} bytes=${bytes} seconds=${seconds.toFixed(3)}`,
      { event: "transfer", command, path: path.virtual, bytes, seconds, result },
    )
    const details = { path: path.virtual, bytes, seconds }
    const hook = direction === "send"
      ? completed ? hooks.onFileSent : hooks.onIncompleteFileSent
      : completed
      ? hooks.onFileReceived
      : hooks.onIncompleteFileReceived
    return Effect.andThen(Effect.andThen(span, log), this.hook(session, hook, transfer.file, details))
  }

  /**
   * Run a command: as it is, or (with metrics or spans, or when it is a logged one) in its span,
   * followed by its event. `code` reads the reply code once the command has run.
   */
  command(
    session: EventSession,
    command: string,
    line: string,
    logged: boolean,
    code: () => number,
    run: Effect.Effect<void>,
  ): Effect.Effect<void> {
    if (!this.everyCommand && !logged) return run
    const observed = Effect.andThen(
      run,
      Effect.suspend(() => this.emit({ type: "command", session, command, line, code: code(), logged })),
    )
    return this.tracing
      ? this.span(command, { "ftp.command": command, "ftp.session.id": session.id }, observed)
      : observed
  }

  /** Run a session, in its root span when traced. */
  session<R>(session: EventSession, body: Effect.Effect<void, never, R>): Effect.Effect<void, never, R> {
    if (!this.tracing) return body
    return Effect.useSpan("ftp.session", {
      root: true,
      kind: "server",
      attributes: {
        "ftp.session.id": session.id,
        "client.address": session.remoteAddress,
        "client.port": session.remotePort,
      },
    }, (span) => {
      session.span = span
      return Effect.withParentSpan(body, span)
    })
  }

  /** Run a transfer, in its span when traced (a child of the span of the command that started it). */
  transferSpan<E>(command: string, path: string, body: Effect.Effect<void, E>): Effect.Effect<void, E> {
    return this.tracing ? this.span("ftp.transfer", { "ftp.command": command, "ftp.path": path }, body) : body
  }

  private span<E>(name: string, attributes: Record<string, unknown>, body: Effect.Effect<void, E>) {
    return Effect.useSpan(name, { attributes }, (span) => Effect.withParentSpan(body, span))
  }
}
