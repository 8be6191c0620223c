/**
 * The command loop of one control connection: read a line, look the command up in the table,
 * check what its row asks (login, argument, guard, path and permission letter), run the handler,
 * and answer its error with the one reply `errors.ts` has for it.
 *
 * A transfer runs in a child fiber, so that ABOR, STAT, NOOP and QUIT are answered while it runs
 * (RFC 959 4.1.3); any other command waits for the transfer to end, which keeps replies in order.
 *
 * A graceful server close drains a session: waiting for a command, it gets 421 and is closed at
 * once; with a transfer running, it still answers ABOR, STAT, NOOP and QUIT, and gets 421 once the
 * transfer's final reply is sent; any other command is not run.
 *
 * The waits of this loop are plain promises, not Effect timeouts or Deferreds: the read of the
 * next line is a promise over the connection, the drain wake-up resolves a promise made per wait
 * (`Session.nextLine`), and the idle and login timeouts are one sweep per server
 * (`Session.checkIdle`), not a timer per command. Measured (20,000 NOOPs per run, median of 5,
 * two alternating pairs, in memory): waiting with `Effect.raceFirst` on the read and a `Deferred`
 * for the drain answered 71,000 and 66,000 commands/s, the promise wait 76,000 and 68,000 (3-7%
 * more); over TCP 31,600 against 34,000. The command wait is the hottest path a session has.
 *
 * @module
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as References from "effect/References"
import type * as Scope from "effect/Scope"
import { LOCAL_ERROR, replyFor, type TlsHandshakeError } from "../errors.ts"
import { endpointsOf } from "../net/address.ts"
import type { ProxyHeader } from "../net/proxy.ts"
import { TlsConn } from "../net/tls.ts"
import type { Transport } from "../net/transport.ts"
import { commandAfterSynch, parseCommand } from "../protocol/command.ts"
import type { Framed } from "../protocol/framer.ts"
import { ControlConnection } from "./control.ts"
import type { CommandSpec } from "./table.ts"
import { LOG_IN_FIRST, type ServerContext, Session, SHUTTING_DOWN, WOKEN } from "./session.ts"

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

const masked = (name: string, line: string) => (name === "PASS" ? "PASS ******" : line)

/**
 * Run one command through its row of the table: login, argument rule, guard, path and permission,
 * handler; an error the handler fails with gets its reply from `replyFor`, a defect a 451. The
 * server's events count it, log it (the logged commands) and trace it, as they are configured.
 */
export const dispatch = (session: Session, name: string, arg: string): Effect.Effect<void> => {
  const spec = session.server.commands.get(name)
  const logged = spec !== undefined && LOGGED_COMMANDS.has(name)
  return session.server.events.command(
    session,
    spec === undefined ? "unknown" : name,
    logged ? `${name} ${arg}`.trim() : name,
    logged,
    () => session.lastReplyCode,
    run(session, spec, name, arg),
  )
}

const run = (session: Session, spec: CommandSpec | undefined, name: string, arg: string): Effect.Effect<void> => {
  if (spec === undefined) {
    // Echo only printable ASCII, and not much of it: the reply must not carry a client's control
    // characters (terminal escapes) into other tools' output or the log.
    return session.reply(500, `Command "${name.replace(/[^\x21-\x7e]/g, "?").slice(0, 40)}" not understood.`)
  }
  if (spec.needsLogin && session.account === null) return session.reply(530, LOG_IN_FIRST)
  if (spec.arg === "required" && arg === "") return session.reply(501, "Syntax error: command needs an argument.")
  if (spec.arg === "none" && arg !== "") {
    return session.reply(501, "Syntax error: command does not accept arguments.")
  }
  return checked(session, spec, arg).pipe(
    Effect.catch((error) => {
      const { code, text } = replyFor(error)
      return session.reply(code, text)
    }),
    Effect.catchDefect((defect) =>
      Effect.andThen(
        Effect.logError(`${name} failed unexpectedly`, defect).pipe(Effect.annotateLogs(session.logAnnotations)),
        session.reply(LOCAL_ERROR.code, LOCAL_ERROR.text),
      )
    ),
  )
}

/** The row's guard, then its path and permission, then its handler (most rows have neither: no extra step). */
const checked = (session: Session, spec: CommandSpec, arg: string) =>
  spec.guard === undefined && spec.perm === undefined
    ? spec.handler(session, arg, undefined)
    : Effect.gen(function* () {
      if (spec.guard !== undefined && !(yield* spec.guard(session, arg))) return
      const target = spec.perm === undefined ? undefined : spec.path === undefined ? arg : spec.path(arg)
      const path = target === undefined ? undefined : yield* session.resolve(target)
      if (path !== undefined) yield* session.requirePerm(spec.perm!, path)
      yield* spec.handler(session, arg, path)
    })

/** How long a closing TLS session waits for its last replies to leave (see `closeAfterFlush`). */
const CLOSE_FLUSH_MS = 1000

const closeSession = (session: Session, exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> =>
  Effect.gen(function* () {
    session.server.sessions.delete(session)
    if (exit._tag === "Failure" && Cause.hasInterruptsOnly(exit.cause) && !session.conn.isClosed) {
      yield* session.reply(421, SHUTTING_DOWN).pipe(Effect.timeoutOption("1 second"))
    }
    yield* session.releaseData()
    yield* session.releaseUserSlot()
    yield* Effect.promise(() => session.conn.closeAfterFlush(CLOSE_FLUSH_MS))
    yield* session.server.events.emit({ type: "sessionClosed", session })
  })

/**
 * Implicit FTPS: TLS from the first byte. A failed or stalled handshake (garbage, a plain FTP
 * client, a client that never finishes) costs this connection only; it is logged and closed.
 */
const implicitHandshake = (
  server: ServerContext,
  raw: Transport,
  facingAddress: string | undefined,
): Effect.Effect<ControlConnection | undefined> =>
  Effect.tryPromise({
    try: () =>
      TlsConn.accept(raw, server.tls!, {
        timeoutMs: server.options.tlsHandshakeTimeout * 1000,
        requestCert: server.options.tls?.requestClientCert ?? false,
      }),
    catch: (error) => error as TlsHandshakeError,
  }).pipe(
    Effect.tap((tls) =>
      server.events.emit({ type: "tlsHandshake", channel: "control", ok: true, version: tls.protocol })
    ),
    Effect.map((tls) => new ControlConnection(raw, tls, facingAddress)),
    Effect.catch((error) => {
      const { remoteAddress, remotePort } = endpointsOf(raw)
      return Effect.as(
        Effect.andThen(
          server.events.emit({ type: "tlsHandshake", channel: "control", ok: false, version: "none" }),
          server.events.emit({
            type: "connectionRefused",
            ip: remoteAddress,
            reason: "tls",
            text: `${remoteAddress}:${remotePort} implicit TLS: ${error._tag}: ${error.message}`,
          }),
        ),
        undefined,
      )
    }),
    Effect.onInterrupt(() => Effect.sync(() => raw.close())),
  )

/** Serve one control connection until QUIT, disconnect, timeout or interruption. */
export const runSession = (
  server: ServerContext,
  raw: Transport,
  implicitTls: boolean,
  proxied?: ProxyHeader,
): Effect.Effect<void> => {
  const facing = proxied?.destination?.address
  // No generator around the session: what a session holds while idle is its own loop and scope.
  if (!implicitTls) return sessionOver(server, new ControlConnection(raw, raw, facing))
  return Effect.flatMap(
    implicitHandshake(server, raw, facing),
    (conn) => conn === undefined ? Effect.void : sessionOver(server, conn),
  )
}

const sessionOver = (server: ServerContext, conn: ControlConnection): Effect.Effect<void> => {
  const session = new Session(conn, server)
  return Effect.scoped(server.events.session(session, serve(session)))
}

/** The life of a session: its finalizers, its greeting, and its command loop. */
const serve = (session: Session): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function* () {
    const server = session.server
    // Transfers forked into this scope later register their finalizers after this one, so they
    // close first: a running transfer is interrupted (data connection and file closed) before
    // the session says 421 and closes.
    yield* Effect.addFinalizer((exit) => closeSession(session, exit))
    session.scope = yield* Effect.scope
    server.sessions.add(session)
    // Connected (or finished its TLS handshake) while the server was already closing.
    if (server.closing()) session.drain()
    const level = yield* References.MinimumLogLevel
    session.debugLog = level === "Debug" || level === "Trace" || level === "All"
    yield* server.events.emit({ type: "sessionOpened", session })
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
      const parsed = parseCommand(framed.text)
      const { arg } = parsed
      const name = server.commands.has(parsed.name) ? parsed.name : commandAfterSynch(parsed.name)
      if (session.debugLog) yield* session.debug(`<- ${masked(name, framed.text)}`)
      if (session.draining && !DURING_TRANSFER.has(name)) {
        yield* session.awaitLatestTransfer
        yield* session.reply(421, SHUTTING_DOWN)
        break
      }
      if (session.transfer !== null && !DURING_TRANSFER.has(name)) yield* session.awaitTransfer
      yield* dispatch(session, name, arg)
    }
  })
