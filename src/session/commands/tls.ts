/**
 * FTPS commands (RFC 2228, RFC 4217): AUTH, PBSZ, PROT, CCC.
 *
 * @module
 */
import * as Effect from "effect/Effect"
import type { TlsHandshakeError } from "../../errors.ts"
import type { Session } from "../session.ts"
import type { CommandSpec, Handler } from "../table.ts"

const MECHANISMS = new Set(["TLS", "TLS-C", "SSL", "TLS-P"])

/** The control connection's TLS version (a function: a check in the caller would narrow the getter). */
const protocolOf = (session: Session): string => session.conn.tls?.protocol ?? "TLS"

const handshakeTimeoutMs = (session: Session) => session.options.tlsHandshakeTimeout * 1000

const auth: Handler = (session, arg) =>
  Effect.gen(function* () {
    const mechanism = arg.trim().toUpperCase()
    if (!MECHANISMS.has(mechanism)) return yield* session.reply(504, `AUTH ${mechanism} not supported: use AUTH TLS.`)
    const context = session.server.tls
    if (context === null) return yield* session.reply(502, "AUTH not available: TLS is not configured on this server.")
    if (session.conn.tls !== undefined) return yield* session.reply(503, "Already using TLS.")
    if (!session.conn.canUpgrade) {
      // Plaintext pipelined after AUTH would be read as if it had come over TLS (command injection).
      return yield* session.reply(503, "Send nothing after AUTH TLS until its reply arrives.")
    }
    yield* session.reply(234, `AUTH ${mechanism} successful.`)
    const result = yield* Effect.result(Effect.tryPromise({
      try: () =>
        session.conn.upgrade(context, {
          timeoutMs: handshakeTimeoutMs(session),
          requestCert: session.options.tls?.requestClientCert ?? false,
        }),
      catch: (error) => error as TlsHandshakeError,
    }))
    const events = session.server.events
    if (result._tag === "Failure") {
      yield* events.emit({ type: "tlsHandshake", channel: "control", ok: false, version: "none" })
      const error = result.failure
      yield* session.warn(`AUTH ${mechanism}: ${error._tag}: ${error.message}; closing the session.`)
      session.conn.close()
      session.closing = true
      return
    }
    yield* events.emit({ type: "tlsHandshake", channel: "control", ok: true, version: protocolOf(session) })
    // Legacy clients take AUTH SSL / TLS-P to mean that data connections are protected too.
    if (mechanism === "SSL" || mechanism === "TLS-P") session.protP = true
    yield* session.log(`AUTH ${mechanism} successful (${protocolOf(session)}).`)
  })

const pbsz: Handler = (session, arg) => {
  if (session.conn.tls === undefined) return session.reply(503, "PBSZ not allowed on an insecure control connection.")
  if (!/^\d+$/.test(arg.trim())) return session.reply(501, "PBSZ needs a number.")
  // RFC 4217 8: the buffer size of a stream protocol like TLS is always 0.
  session.pbsz = true
  return session.reply(200, "PBSZ=0 successful.")
}

const prot: Handler = (session, arg) => {
  if (session.conn.tls === undefined) return session.reply(503, "PROT not allowed on an insecure control connection.")
  if (!session.pbsz) return session.reply(503, "You must issue the PBSZ command prior to PROT.")
  const level = arg.trim().toUpperCase()
  switch (level) {
    case "C":
      session.protP = false
      return session.reply(200, "Protection set to Clear.")
    case "P":
      session.protP = true
      return session.reply(200, "Protection set to Private.")
    case "S":
    case "E":
      return session.reply(536, `PROT ${level} unsupported: use C or P.`)
    default:
      return session.reply(504, "Unrecognized PROT level: use C or P.")
  }
}

const ccc: Handler = (session) =>
  session.conn.tls === undefined
    ? session.reply(533, "The command channel is not protected.")
    // node:tls cannot hand the TCP connection back in clear after close_notify, so CCC is never allowed.
    : session.reply(534, "CCC refused: the command channel stays protected.")

/** The FTPS commands. */
export const tlsCommands: ReadonlyArray<CommandSpec> = [
  {
    name: "AUTH",
    needsLogin: false,
    tls: true,
    arg: "required",
    help: "Syntax: AUTH <SP> TLS (set up secure control channel).",
    handler: auth,
  },
  {
    name: "PBSZ",
    needsLogin: false,
    tls: true,
    arg: "required",
    help: "Syntax: PBSZ <SP> 0 (negotiate TLS buffer).",
    handler: pbsz,
  },
  {
    name: "PROT",
    needsLogin: false,
    tls: true,
    arg: "required",
    help: "Syntax: PROT <SP> [C|P] (set up un/secure data channel).",
    handler: prot,
  },
  {
    name: "CCC",
    needsLogin: false,
    tls: true,
    arg: "none",
    help: "Syntax: CCC (clear command channel; refused).",
    handler: ccc,
  },
]
