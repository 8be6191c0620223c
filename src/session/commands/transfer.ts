/**
 * File transfers: RETR, STOR, APPE, STOU, and {@link startTransfer}, which every transfer
 * (listings included) goes through: 150, then the data connection in a child fiber, then 226
 * or the error's reply, the log line and the hook.
 *
 * Bandwidth limits (`readLimit`, `userReadLimit`, `globalReadLimit` and the `write` ones) are
 * token buckets from `data/throttle.ts`, one set per server, chosen here per transfer.
 *
 * Atomic uploads (`atomicUploads`): STOR and STOU write to a hidden temporary file in the target's
 * directory, which `finish` renames over the target before replying 226, or removes when the
 * transfer fails, is aborted, or its session or server ends. Hooks get the target's real path
 * on success and the (removed) temporary file's on failure. REST+STOR is refused with 550 and APPE
 * appends in place (see `ServerOptions.atomicUploads`).
 *
 * @module
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { acceptPassive, type DataSetup, PASSIVE_ACCEPT_TIMEOUT, releaseSetup } from "../../data/data_channel.ts"
import { Bandwidth } from "../../data/throttle.ts"
import { finishConnection, type LoopOptions, receiveFile, sendFile, TransferStalled } from "../../data/transfer.ts"
import { DataConnectionError, FilesystemError } from "../../errors.ts"
import type { FtpPath, WriteOptions } from "../../fs/filesystem.ts"
import { basename, dirname } from "../../protocol/path.ts"
import { endpointsOf } from "../../net/connection.ts"
import { handshakeNative, TlsConn, type Transport } from "../../net/tls.ts"
import type { ActiveTransfer, CommandSpec, Handler, ServerContext, Session } from "../session.ts"

/** What one transfer does once its data connection is open. */
export interface TransferPlan {
  readonly command: string
  readonly path: FtpPath
  /** `file` transfers are logged and reported to hooks; listings are not. */
  readonly direction: "send" | "receive" | "listing"
  /** Text of the 150 reply. */
  readonly preliminary: string
  /** Owns what `run` uses (the open file); closed when the transfer ends, before its reply. */
  readonly scope: Scope.Closeable
  readonly run: (conn: Transport, options: LoopOptions) => Promise<void>
  /** Atomic upload: the temporary file `run` writes, renamed over `path` on success and removed otherwise. */
  readonly temporary?: FtpPath
}

/** Each server's bandwidth buckets, made at its first transfer. */
const bandwidths = new WeakMap<ServerContext, Bandwidth>()

const bandwidthOf = (server: ServerContext): Bandwidth => {
  let bandwidth = bandwidths.get(server)
  if (bandwidth === undefined) {
    const o = server.options
    bandwidth = new Bandwidth(
      { read: o.readLimit, write: o.writeLimit },
      { read: o.userReadLimit, write: o.userWriteLimit },
      { read: o.globalReadLimit, write: o.globalWriteLimit },
    )
    bandwidths.set(server, bandwidth)
  }
  return bandwidth
}

/**
 * Reply 425 unless a PASV/EPSV/PORT/EPRT prepared a data connection that the current protection
 * level can use (checked before any file is opened). A passive port opened under PROT P with
 * native TLS speaks only TLS, so after a PROT C the client must ask for a new one; the other way
 * round works (the TLS handshake then runs over the plain connection).
 */
export const needData = (session: Session): Effect.Effect<boolean> => {
  const data = session.data
  if (data === null) return Effect.as(session.reply(425, "Use PORT or PASV first."), false)
  if (data.kind === "passive" && data.tls && !session.protP) {
    return Effect.as(
      session.reply(425, "The passive port was opened for PROT P: send PASV or EPSV again after PROT C."),
      false,
    )
  }
  return Effect.succeed(true)
}

const failureReply = (cause: Cause.Cause<unknown>): readonly [number, string] => {
  const error = Cause.squash(cause)
  if (error instanceof DataConnectionError) return [error.code ?? 425, error.message]
  if (error instanceof TransferStalled) return [426, "Transfer aborted: data connection timed out."]
  if (error instanceof FilesystemError) {
    return error.reason === "NoSpace"
      ? [452, "Transfer aborted: insufficient storage space."]
      : [451, `Transfer aborted: ${error.message}`]
  }
  return [426, "Transfer aborted: data connection closed."]
}

/**
 * The log line of a data timeout (issue 4: each timeout is logged as one), or `undefined` when the
 * transfer failed for another reason. The reply alone does not reach the server's log.
 */
const timeoutLine = (session: Session, plan: TransferPlan, cause: Cause.Cause<unknown>): string | undefined => {
  const error = Cause.squash(cause)
  const what = `${plan.command} ${plan.path.virtual}`
  if (error instanceof TransferStalled) {
    return `${what}: data connection timed out after ${session.options.dataTimeout} s without progress (426)`
  }
  if (error instanceof DataConnectionError && error.timeoutSeconds !== undefined) {
    return `${what}: data connection timed out: the client did not connect within ${error.timeoutSeconds} s (425)`
  }
  return undefined
}

const finish = (
  session: Session,
  plan: TransferPlan,
  setup: DataSetup,
  active: ActiveTransfer,
  exit: Exit.Exit<unknown, unknown>,
): Effect.Effect<void> =>
  Effect.gen(function* () {
    yield* Scope.close(plan.scope, exit)
    const outcome = plan.temporary === undefined ? exit : yield* settle(session, plan.temporary, plan.path, exit)
    yield* releaseSetup(setup)
    session.transferEnded()
    const completed = Exit.isSuccess(outcome)
    if (plan.direction !== "listing") {
      const seconds = ((Date.now() - active.started) / 1000).toFixed(3)
      const { bytes, stored } = active.progress
      yield* session.log(
        `${plan.command} ${plan.path.virtual} completed=${completed ? 1 : 0} bytes=${
          stored ?? bytes
        } seconds=${seconds}`,
      )
    }
    if (completed) {
      yield* session.reply(226, "Transfer complete.")
    } else if (!Cause.hasInterruptsOnly(outcome.cause)) {
      // An interrupted transfer (ABOR, shutdown) is answered by whoever interrupted it.
      const timedOut = timeoutLine(session, plan, outcome.cause)
      if (timedOut !== undefined) yield* session.log(timedOut)
      const [code, text] = failureReply(outcome.cause)
      yield* session.reply(code, text)
    }
    const file = plan.path.real
    if (plan.direction === "send") {
      yield* completed ? session.hook((h) => h.onFileSent, file) : session.hook((h) => h.onIncompleteFileSent, file)
    } else if (plan.direction === "receive") {
      yield* completed
        ? session.hook((h) => h.onFileReceived, file)
        : session.hook((h) => h.onIncompleteFileReceived, plan.temporary?.real ?? file)
    }
  })

/**
 * End an atomic upload: rename the temporary file over the target after a complete upload, or
 * remove it. A failed rename fails the transfer (451) and removes the temporary file too.
 */
const settle = (
  session: Session,
  temporary: FtpPath,
  target: FtpPath,
  exit: Exit.Exit<unknown, unknown>,
): Effect.Effect<Exit.Exit<unknown, unknown>> =>
  Effect.gen(function* () {
    const fs = session.server.fs
    const renamed = Exit.isSuccess(exit) ? yield* Effect.exit(fs.rename(temporary, target)) : exit
    if (Exit.isFailure(renamed)) {
      const removed = yield* Effect.exit(fs.remove(temporary))
      if (Exit.isFailure(removed)) {
        yield* session.warn(`Could not remove the temporary upload ${temporary.real}: ${Cause.squash(removed.cause)}`)
      }
    }
    return renamed
  })

/**
 * Send 150 and run `plan` in the session's transfer fiber. The caller has checked that a data
 * connection is prepared ({@link needData}) and opened what the plan needs in `plan.scope`.
 */
export const startTransfer = (session: Session, plan: TransferPlan): Effect.Effect<void> =>
  Effect.gen(function* () {
    const setup = session.data!
    session.data = null
    const { options } = session
    const active: ActiveTransfer = {
      command: plan.command,
      path: plan.path.virtual,
      progress: { bytes: 0 },
      started: Date.now(),
      fiber: undefined,
    }
    session.transfer = active
    yield* session.reply(150, plan.preliminary)
    const dataTimeout = options.dataTimeout > 0 ? options.dataTimeout : Infinity
    const throttle = bandwidthOf(session.server).throttle(
      session,
      session.account?.user ?? null,
      plan.direction === "receive" ? "read" : "write",
    )
    const body = Effect.gen(function* () {
      const raw = setup.kind === "passive"
        ? yield* acceptPassive(
          setup.listener,
          setup.tls,
          session.remoteAddress,
          options.permitForeignAddresses,
          Math.min(PASSIVE_ACCEPT_TIMEOUT, dataTimeout),
          session.server.dataSockets,
          session,
        )
        : setup.conn
      const conn = setup.kind === "passive" && setup.tls
        ? yield* secureNative(session, raw as Deno.TlsConn)
        : session.protP
        ? yield* secureData(session, raw)
        : raw
      yield* untilSettled((signal) =>
        plan.run(conn, { signal, stallMs: options.dataTimeout * 1000, progress: active.progress, throttle })
          .then(() => finishConnection(conn))
      )
    }).pipe(
      Scope.provide(plan.scope),
      Effect.onExit((exit) => finish(session, plan, setup, active, exit)),
      Effect.exit,
      Effect.asVoid,
    )
    active.fiber = yield* Effect.forkIn(body, session.scope)
  })

/**
 * Run a byte loop. Interrupted (ABOR, shutdown), it is aborted and waited for: what it received
 * is written and its counts are final before the transfer's scope closes the file and logs them.
 */
const untilSettled = <A>(run: (signal: AbortSignal) => Promise<A>): Effect.Effect<A, unknown> =>
  Effect.callback<A, unknown>((resume) => {
    const controller = new AbortController()
    const running = run(controller.signal)
    running.then((value) => resume(Effect.succeed(value)), (error) => resume(Effect.fail(error)))
    return Effect.promise(() => {
      controller.abort()
      return running.then(() => undefined, () => undefined)
    })
  })

const handshakeFailed = (cause: unknown) =>
  new DataConnectionError({ message: `Can't open data connection: ${(cause as Error).message}.`, cause })

/** PROT P on a passive port with native TLS: finish the handshake the listener started. */
const secureNative = (session: Session, conn: Deno.TlsConn): Effect.Effect<Transport, DataConnectionError> =>
  Effect.tryPromise({
    try: () => handshakeNative(conn, session.options.tlsHandshakeTimeout * 1000),
    catch: handshakeFailed,
  })

/**
 * PROT P: run the TLS handshake on a data connection (the client may have started it before the
 * transfer command, as curl does; its hello simply waits in the socket). With
 * `requireSessionReuse`, a connection that does not resume a TLS session is refused with 522.
 */
const secureData = (session: Session, raw: Deno.Conn): Effect.Effect<Transport, DataConnectionError, Scope.Scope> =>
  Effect.gen(function* () {
    const { options } = session
    const conn = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () =>
          TlsConn.accept(raw, session.server.tls!, {
            timeoutMs: options.tlsHandshakeTimeout * 1000,
            requestCert: options.tls?.requestClientCert ?? false,
          }),
        catch: handshakeFailed,
      }),
      (tls) => Effect.sync(() => tls.close()),
    )
    if (options.requireSessionReuse && !conn.sessionReused) {
      const { remoteAddress, remotePort } = endpointsOf(raw)
      // Deno's TLS server (rustls under node:tls) resumes TLS 1.3 sessions only, so under TLS 1.2
      // even a client that offers its session gets a full handshake: say so, or the admin would blame the client.
      const why = conn.protocol === "TLSv1.2"
        ? "This server can resume TLS 1.3 sessions only: the client must use TLS 1.3, or requireSessionReuse be off."
        : "The client does not support TLS session resumption, or the connection came from someone else."
      yield* session.warn(
        `Refused PROT P data connection from ${remoteAddress}:${remotePort} (${conn.protocol}): it did not resume ` +
          `the TLS session of the control connection and requireSessionReuse is on. ${why}`,
      )
      return yield* Effect.fail(
        new DataConnectionError({
          message: "Data connection must resume the TLS session of the control connection (RFC 4217 10.2).",
          code: 522,
        }),
      )
    }
    return conn
  })

/** Open what a transfer needs in a fresh scope, closed if opening fails; the transfer closes it when it ends. */
export const opened = <A>(open: Effect.Effect<A, FilesystemError, Scope.Scope>) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const value = yield* Scope.provide(scope)(open).pipe(Effect.onError(() => Scope.close(scope, Exit.void)))
    return [scope, value] as const
  })

const takeRestOffset = (session: Session): number => {
  const offset = session.restOffset
  session.restOffset = 0
  return offset
}

const retr: Handler = (session, arg) =>
  Effect.gen(function* () {
    const offset = takeRestOffset(session)
    const path = yield* session.resolve(arg)
    yield* session.requirePerm("r", path)
    if (!(yield* needData(session))) return
    const [scope, file] = yield* opened(session.server.fs.openRead(path, offset))
    const ascii = session.ascii
    yield* startTransfer(session, {
      command: "RETR",
      path,
      direction: "send",
      preliminary: "File status okay. About to open data connection.",
      scope,
      run: (conn, loop) => sendFile(conn, file, ascii, loop, file.size - offset),
    })
  })

const receive = (
  session: Session,
  command: string,
  path: FtpPath,
  options: WriteOptions,
  preliminary: string,
) =>
  Effect.gen(function* () {
    const atomic = session.options.atomicUploads && options.mode === "truncate"
    const temporary = atomic ? yield* temporaryFor(session, path, options.exclusive === true) : undefined
    const [scope, file] = yield* opened(
      temporary === undefined
        ? session.server.fs.openWrite(path, options)
        : session.server.fs.openWrite(temporary, { mode: "truncate", exclusive: true }),
    )
    const ascii = session.ascii
    yield* startTransfer(session, {
      command,
      path,
      direction: "receive",
      preliminary,
      scope,
      run: (conn, loop) => receiveFile(conn, file, ascii, loop),
      temporary,
    })
  })

const encoder = new TextEncoder()
/** Longest target name kept in a temporary name (bytes): the whole must stay under NAME_MAX (255). */
const MAX_NAME_IN_TEMPORARY = 200

/**
 * A fresh hidden name beside `path` for an atomic upload, after checking that the upload could
 * replace `path` at all (so a client does not send a whole file only to be refused at the rename).
 */
const temporaryFor = (session: Session, path: FtpPath, exclusive: boolean) =>
  Effect.gen(function* () {
    const found = yield* Effect.result(session.server.fs.stat(path))
    if (found._tag === "Success") {
      const kind = found.success.kind
      if (exclusive) return yield* new FilesystemError({ path: path.virtual, reason: "AlreadyExists" })
      if (kind === "directory") return yield* new FilesystemError({ path: path.virtual, reason: "IsADirectory" })
      if (kind !== "file") {
        return yield* new FilesystemError({
          path: path.virtual,
          reason: "PermissionDenied",
          detail: "Not a regular file.",
        })
      }
    } else if (found.failure.reason !== "NotFound") {
      return yield* found.failure
    }
    const name = basename(path.virtual)
    const tail = encoder.encode(name).length <= MAX_NAME_IN_TEMPORARY ? `-${name}` : ""
    return yield* session.resolve(`${dirname(path.virtual)}/.ftpd-upload-${crypto.randomUUID().slice(0, 8)}${tail}`)
  })

const stor: Handler = (session, arg) =>
  Effect.gen(function* () {
    const offset = takeRestOffset(session)
    if (offset > 0 && session.options.atomicUploads) {
      return yield* session.reply(
        550,
        "Can't resume an upload (REST before STOR): uploads are atomic here, so a cut one left nothing to resume.",
      )
    }
    const path = yield* session.resolve(arg)
    yield* session.requirePerm("w", path)
    yield* session.newName(path)
    if (!(yield* needData(session))) return
    const mode = offset > 0 ? { mode: "resume" as const, offset } : { mode: "truncate" as const }
    yield* receive(session, "STOR", path, mode, "File status okay. About to open data connection.")
  })

const appe: Handler = (session, arg) =>
  Effect.gen(function* () {
    if (session.restOffset > 0) {
      session.restOffset = 0
      return yield* session.reply(450, "Can't APPE while REST request is pending.")
    }
    const path = yield* session.resolve(arg)
    yield* session.requirePerm("a", path)
    yield* session.newName(path)
    if (!(yield* needData(session))) return
    yield* receive(session, "APPE", path, { mode: "append" }, "File status okay. About to open data connection.")
  })

const UNIQUE_TRIES = 20

/** STOU: store under a name the server picks (RFC 1123 4.1.2.9: the 150 reply names it). */
const stou: Handler = (session, arg) =>
  Effect.gen(function* () {
    if (session.restOffset > 0) {
      session.restOffset = 0
      return yield* session.reply(450, "Can't STOU while REST request is pending.")
    }
    const directory = yield* session.resolve("")
    yield* session.requirePerm("w", directory)
    if (!(yield* needData(session))) return
    const prefix = arg === "" ? "ftpd" : basename(arg)
    for (let i = 0; i < UNIQUE_TRIES; i++) {
      const name = `${prefix}.${crypto.randomUUID().slice(0, 8)}`
      const path = yield* session.resolve(name)
      yield* session.newName(path)
      const result = yield* Effect.result(
        receive(session, "STOU", path, { mode: "truncate", exclusive: true }, `FILE: ${name}`),
      )
      if (result._tag === "Success") return
      if (result.failure.reason !== "AlreadyExists") return yield* Effect.fail(result.failure)
    }
    yield* session.reply(450, "No usable unique file name found.")
  })

/** The transfer commands. */
export const transferCommands: ReadonlyArray<CommandSpec> = [
  {
    name: "RETR",
    needsLogin: true,
    arg: "required",
    help: "Syntax: RETR <SP> file-name (retrieve a file).",
    handler: retr,
  },
  {
    name: "STOR",
    needsLogin: true,
    arg: "required",
    help: "Syntax: STOR <SP> file-name (store a file).",
    handler: stor,
  },
  {
    name: "APPE",
    needsLogin: true,
    arg: "required",
    help: "Syntax: APPE <SP> file-name (append data to file).",
    handler: appe,
  },
  {
    name: "STOU",
    needsLogin: true,
    arg: "optional",
    help: "Syntax: STOU [<SP> name] (store a file with a unique name).",
    handler: stou,
  },
]
