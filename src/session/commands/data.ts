/**
 * Data connection setup and control: PASV, EPSV (RFC 2428, with EPSV ALL), PORT, EPRT, REST, ABOR.
 *
 * @module
 */
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import { DataChannel, PASSIVE_ACCEPT_TIMEOUT } from "../../data/channel.ts"
import { isIPv4 } from "../../net/address.ts"
import { formatEpsv, formatPasv, parseEprt, parsePort } from "../../protocol/address.ts"
import type { Session } from "../session.ts"
import type { CommandSpec, Handler } from "../table.ts"

/** Replace any pending data connection by a fresh passive lease; returns the port. */
const openPassive = (session: Session) =>
  Effect.gen(function* () {
    yield* session.releaseData()
    // Under PROT P the listener itself speaks TLS when the server's settings allow native TLS.
    const tls = session.protP ? session.server.nativeTls : null
    const pending = yield* DataChannel.listen(session.server.passivePorts, session.conn.endpoints.localAddress, tls)
    session.data = pending
    return pending.listener.addr.port
  })

/** With `tlsDataRequired`, data connections may only be set up after PROT P (RFC 4217 9: 521). */
const refusedInClear = (session: Session): boolean => session.options.tlsDataRequired && !session.protP

const clearRefusal = (session: Session) => session.reply(521, "SSL/TLS required on the data channel: use PROT P first.")

const pasv: Handler = (session) =>
  Effect.gen(function* () {
    if (refusedInClear(session)) return yield* clearRefusal(session)
    if (session.epsvAll) return yield* session.reply(501, "PASV not allowed after EPSV ALL.")
    const facing = session.conn.facingAddress
    if (!isIPv4(facing)) return yield* session.reply(425, "PASV is IPv4 only: use EPSV on an IPv6 connection.")
    const port = yield* openPassive(session)
    const { masqueradeAddressMap, masqueradeAddress } = session.options
    const announced = masqueradeAddressMap[session.conn.endpoints.localAddress] ?? masqueradeAddress ?? facing
    yield* session.reply(227, `Entering passive mode (${formatPasv(announced, port)}).`)
  })

/** The address family of the connection the client made (to this server, or to its balancer). */
const familyOf = (session: Session): 1 | 2 => (isIPv4(session.conn.facingAddress) ? 1 : 2)

const epsv: Handler = (session, arg) =>
  Effect.gen(function* () {
    if (refusedInClear(session) && arg.trim().toUpperCase() !== "ALL") return yield* clearRefusal(session)
    const protocol = arg.trim().toUpperCase()
    if (protocol === "ALL") {
      // RFC 2428 3: from now on only EPSV may set up data connections.
      session.epsvAll = true
      return yield* session.reply(200, "EPSV ALL command successful.")
    }
    if (protocol !== "" && protocol !== "1" && protocol !== "2") {
      return yield* session.reply(501, "Invalid EPSV argument: use 1, 2 or ALL.")
    }
    const family = familyOf(session)
    if (protocol !== "" && Number(protocol) !== family) {
      return yield* session.reply(522, `Network protocol not supported, use (${family}).`)
    }
    const port = yield* openPassive(session)
    yield* session.reply(229, `Entering extended passive mode ${formatEpsv(port)}.`)
  })

/** Connect to an active-mode target after the bounce and privileged-port checks. */
const openActive = (session: Session, host: string, port: number) =>
  Effect.gen(function* () {
    const refusal = DataChannel.refusal(host, port, session.remoteAddress, session.options)
    if (refusal !== undefined) {
      yield* session.warn(refusal)
      return yield* session.reply(501, refusal)
    }
    yield* session.releaseData()
    const timeout = Math.min(PASSIVE_ACCEPT_TIMEOUT, session.options.dataTimeout || PASSIVE_ACCEPT_TIMEOUT)
    const { network, dataSockets } = session.server
    session.data = yield* DataChannel.connect(network, dataSockets, session, host, port, timeout).pipe(
      Effect.tapError((error) =>
        session.warn(
          error.timeoutSeconds === undefined
            ? `Active data connection to ${host}:${port} failed: ${String(error.cause)} (425)`
            : `Active data connection to ${host}:${port} timed out after ${error.timeoutSeconds} s (425)`,
        )
      ),
    )
    yield* session.reply(200, "Active data connection established.")
  })

const port: Handler = (session, arg) =>
  Effect.gen(function* () {
    if (refusedInClear(session)) return yield* clearRefusal(session)
    if (session.epsvAll) return yield* session.reply(501, "PORT not allowed after EPSV ALL.")
    if (familyOf(session) !== 1) {
      return yield* session.reply(425, "PORT is IPv4 only: use EPRT on an IPv6 connection.")
    }
    const target = parsePort(arg)
    if (target === undefined) return yield* session.reply(501, "Invalid PORT format.")
    yield* openActive(session, target.host, target.port)
  })

const eprt: Handler = (session, arg) =>
  Effect.gen(function* () {
    if (refusedInClear(session)) return yield* clearRefusal(session)
    if (session.epsvAll) return yield* session.reply(501, "EPRT not allowed after EPSV ALL.")
    const target = parseEprt(arg)
    if (target === "syntax") return yield* session.reply(501, "Invalid EPRT format.")
    const family = familyOf(session)
    if (target === "family" || target.family !== family) {
      return yield* session.reply(522, `Network protocol not supported, use (${family}).`)
    }
    yield* openActive(session, target.host, target.port)
  })

const rest: Handler = (session, arg) =>
  Effect.gen(function* () {
    if (!/^\d{1,15}$/.test(arg)) return yield* session.reply(501, "Invalid parameter: REST needs a byte offset.")
    if (session.ascii) return yield* session.reply(501, "Resuming transfers not allowed in ASCII mode.")
    session.restOffset = Number(arg)
    yield* session.reply(350, `Restarting at position ${session.restOffset}.`)
  })

const abor: Handler = (session) =>
  Effect.gen(function* () {
    const transfer = session.transfer
    const fiber = transfer?.fiber
    if (fiber !== undefined) {
      // RFC 959 4.1.3: 426 for the aborted transfer, then 226 for the ABOR itself.
      yield* Fiber.interrupt(fiber)
      yield* session.reply(426, transfer?.aborted ?? "Transfer aborted via ABOR.")
      return yield* session.reply(226, "ABOR command successful.")
    }
    if (session.data !== null) {
      yield* session.releaseData()
      return yield* session.reply(225, "ABOR command successful; data channel closed.")
    }
    yield* session.reply(225, "No transfer to abort.")
  })

/** The data connection commands. */
export const dataCommands: ReadonlyArray<CommandSpec> = [
  { name: "PASV", needsLogin: true, arg: "none", help: "Syntax: PASV (open passive data connection).", handler: pasv },
  {
    name: "EPSV",
    needsLogin: true,
    arg: "optional",
    help: 'Syntax: EPSV [<SP> proto/"ALL"] (open passive data connection).',
    handler: epsv,
  },
  {
    name: "PORT",
    needsLogin: true,
    arg: "required",
    help: "Syntax: PORT <sp> h,h,h,h,p,p (open active data connection).",
    handler: port,
  },
  {
    name: "EPRT",
    needsLogin: true,
    arg: "required",
    help: "Syntax: EPRT <SP> |proto|ip|port| (extended active mode).",
    handler: eprt,
  },
  {
    name: "REST",
    needsLogin: true,
    arg: "required",
    help: "Syntax: REST <SP> offset (set file offset).",
    handler: rest,
  },
  { name: "ABOR", needsLogin: true, arg: "none", help: "Syntax: ABOR (abort transfer).", handler: abor },
]
