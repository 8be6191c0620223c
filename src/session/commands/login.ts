/**
 * Login and logout: HOST (RFC 7151), USER, PASS, QUIT, REIN, ACCT.
 *
 * @module
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { BANNED_TEXT } from "../../bans.ts"
import { parseHost } from "../../protocol/host.ts"
import type { Session } from "../session.ts"
import type { CommandSpec } from "../table.ts"

/** Forget the logged-in user (a second USER, REIN): pyftpdlib's `flush_account`. */
const logout = (session: Session): Effect.Effect<void> =>
  Effect.gen(function* () {
    const account = session.account
    // Fired first, so that the hook still sees who is leaving.
    if (account !== null) yield* session.hook((h) => h.onLogout, account.user)
    yield* session.releaseData()
    yield* session.releaseUserSlot()
    session.loginStarted = Date.now()
    session.account = null
    session.user = null
    session.cwd = "/"
    session.ascii = true
    session.restOffset = 0
    session.renameFrom = null
    session.epsvAll = false
  })

/** The address is banned: 421 and close (RFC 959: 421 is the reply of a server closing the connection). */
const banned = (session: Session, name: string): Effect.Effect<void> => {
  session.user = null
  session.closing = true
  return Effect.andThen(
    session.server.events.emit({ type: "login", session, user: name, result: "banned" }),
    session.reply(421, BANNED_TEXT),
  )
}

/**
 * HOST (RFC 7151): the virtual host the client wants, before USER. The authorizer gets it with
 * every login of the session (`LoginContext.host`), hooks with every event (`HookSession.host`).
 * Replies (RFC 7151): 220 accepted; 501 not a host name or address literal; 503 after USER
 * or once logged in; 504 a host the authorizer does not serve (when it says, `servesHost`).
 */
const host: CommandSpec = {
  name: "HOST",
  needsLogin: false,
  arg: "required",
  help: "Syntax: HOST <SP> host-name (choose the virtual host, before USER).",
  handler: (session, arg) =>
    Effect.gen(function* () {
      if (session.account !== null) return yield* session.reply(503, "HOST not allowed after login: use REIN first.")
      if (session.user !== null) return yield* session.reply(503, "HOST must come before USER.")
      const name = parseHost(arg)
      if (name === undefined) return yield* session.reply(501, "Invalid host name.")
      const serves = session.server.auth.servesHost
      if (serves !== undefined && !(yield* serves(name))) return yield* session.reply(504, "Unknown host.")
      session.host = name
      yield* session.reply(220, `Host ${name} accepted.`)
    }),
}

const user: CommandSpec = {
  name: "USER",
  needsLogin: false,
  arg: "required",
  help: "Syntax: USER <SP> user-name (set username).",
  handler: (session, arg) =>
    Effect.gen(function* () {
      if (session.options.tlsControlRequired && session.conn.tls === undefined) {
        return yield* session.reply(530, "SSL/TLS required on the control channel: use AUTH TLS first.")
      }
      if (session.account !== null) yield* logout(session)
      session.user = arg
      // The same reply for every name: no user enumeration (RFC 2577).
      yield* session.reply(331, "Username ok, send password.")
    }),
}

const pass: CommandSpec = {
  name: "PASS",
  needsLogin: false,
  arg: "optional",
  help: "Syntax: PASS [<SP> password] (set user password).",
  handler: (session, arg) =>
    Effect.gen(function* () {
      if (session.account !== null) return yield* session.reply(503, "User already authenticated.")
      const name = session.user
      if (name === null) return yield* session.reply(503, "Login with USER first.")
      // A session opened before its address was banned gets no more guesses.
      if (yield* session.server.bans.isBanned(session.remoteAddress)) return yield* banned(session, name)
      const result = yield* Effect.result(
        session.server.auth.authenticate(name, arg, { remoteAddress: session.remoteAddress, host: session.host }),
      )
      if (result._tag === "Success") {
        const account = result.success
        if (account.identity !== undefined && session.server.fs.userIdentity !== true) {
          // Serving a system user with the server's own rights would give them root's: refuse instead.
          session.user = null
          yield* session.warn(
            `USER '${account.user}' refused: the filesystem can't act with a system user's identity (use the descriptor jail).`,
          )
          return yield* session.reply(530, "Login not possible: the server is misconfigured.")
        }
        if (!(yield* session.claimUserSlot(account))) {
          yield* session.server.events.emit({ type: "login", session, user: account.user, result: "too_many_sessions" })
          session.user = null
          return yield* session.reply(530, "Too many sessions for this user.")
        }
        session.account = account
        session.loginAttempts = 0
        session.cwd = account.startDirectory ?? "/"
        yield* session.reply(230, account.msgLogin)
        return yield* session.server.events.emit({ type: "login", session, user: account.user, result: "ok" })
      }
      const { message: text, reason } = result.failure
      yield* session.server.events.emit({ type: "login", session, user: name, result: "failed", reason })
      session.user = null
      session.loginAttempts++
      // Counted before the delay, so that guesses from parallel sessions all count at once.
      yield* session.recordFailure()
      // Slow down password guessing (RFC 2577); only this session waits.
      if (session.options.authFailedTimeout > 0) {
        yield* Effect.sleep(Duration.seconds(session.options.authFailedTimeout))
      }
      if (yield* session.server.bans.isBanned(session.remoteAddress)) return yield* banned(session, name)
      if (session.loginAttempts >= session.options.maxLoginAttempts) {
        session.closing = true
        return yield* session.reply(530, `${text} Too many failed logins: disconnecting.`)
      }
      yield* session.reply(530, text)
    }),
}

const quit: CommandSpec = {
  name: "QUIT",
  needsLogin: false,
  arg: "none",
  help: "Syntax: QUIT (quit current session).",
  handler: (session) =>
    Effect.gen(function* () {
      // RFC 959: a running transfer finishes (and gets its reply) before the 221.
      yield* session.awaitTransfer
      const account = session.account
      yield* session.reply(221, account?.msgQuit ?? "Goodbye.")
      if (account !== null) yield* session.hook((h) => h.onLogout, account.user)
      session.closing = true
    }),
}

const rein: CommandSpec = {
  name: "REIN",
  needsLogin: true,
  arg: "none",
  help: "Syntax: REIN (flush account).",
  handler: (session) =>
    Effect.gen(function* () {
      yield* session.awaitTransfer
      yield* logout(session)
      // RFC 7151: REIN forgets the virtual host too; the next login may name another.
      session.host = null
      // RFC 959 5.4: REIN answers 220 (pyftpdlib's 230 is a deviation).
      yield* session.reply(220, "Ready for new user.")
    }),
}

const acct: CommandSpec = {
  name: "ACCT",
  needsLogin: false,
  arg: "optional",
  help: "Syntax: ACCT (not implemented: accounts are not used).",
  handler: (session) => session.reply(502, "Command not implemented: accounts are not used."),
}

/** The login commands. */
export const loginCommands: ReadonlyArray<CommandSpec> = [host, user, pass, quit, rein, acct]
