/**
 * The life of a transfer, which every transfer (RETR, STOR, APPE, STOU and the listings) goes
 * through: 150, then in a child fiber the data connection (`DataChannel.open`) and the byte loop,
 * then the transfer's event (log line, xferlog, metrics, hooks) and 226 or the error's reply.
 *
 * Bandwidth limits (`readLimit`, `userReadLimit`, `globalReadLimit` and the `write` ones) are
 * token buckets from `data/throttle.ts`, one set per server, chosen here per transfer.
 *
 * Atomic uploads (`atomicUploads`): an upload may write to a temporary file, which `finish`
 * renames over the target before replying 226, or removes when the transfer fails, is aborted, or
 * its session or server ends.
 *
 * @module
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { DataChannel, PASSIVE_ACCEPT_TIMEOUT, type PendingData } from "../data/channel.ts"
import { finishConnection, type LoopOptions } from "../data/loops.ts"
import {
  type CommandError,
  DataConnectionLost,
  FilesystemError,
  LOCAL_ERROR,
  replyFor,
  TransferStalled,
} from "../errors.ts"
import type { FtpPath } from "../fs/filesystem.ts"
import { TlsConn } from "../net/tls.ts"
import type { Transport } from "../net/transport.ts"
import type { TransferResult } from "../observability/metrics.ts"
import type { ActiveTransfer, Session } from "./session.ts"

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

/**
 * Reply 425 unless a PASV/EPSV/PORT/EPRT prepared a data connection that the current protection
 * level can use (checked before any file is opened).
 */
export const needData = (session: Session): Effect.Effect<boolean> => {
  const pending = session.data
  const refusal = pending === null ? "Use PORT or PASV first." : DataChannel.unusable(pending, session.protP)
  return refusal === undefined ? Effect.succeed(true) : Effect.as(session.reply(425, refusal), false)
}

/** Open what a transfer needs in a fresh scope, closed if opening fails; the transfer closes it when it ends. */
export const opened = <A, E>(open: Effect.Effect<A, E, Scope.Scope>): Effect.Effect<readonly [Scope.Closeable, A], E> =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const value = yield* Scope.provide(scope)(open).pipe(
      Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause))),
    )
    return [scope, value] as const
  })

/**
 * The log line of a data timeout (each timeout is logged as one), or `undefined` when the transfer
 * failed for another reason. The reply alone does not reach the server's log.
 */
const timeoutLine = (session: Session, plan: TransferPlan, error: CommandError): string | undefined => {
  const what = `${plan.command} ${plan.path.virtual}`
  if (error._tag === "TransferStalled") {
    return `${what}: data connection timed out after ${session.options.dataTimeout} s without progress (426)`
  }
  if (error._tag === "DataConnectionError" && error.timeoutSeconds !== undefined) {
    return `${what}: data connection timed out: the client did not connect within ${error.timeoutSeconds} s (425)`
  }
  return undefined
}

/**
 * End an atomic upload: rename the temporary file over the target after a complete upload, or
 * remove it. A failed rename fails the transfer (451) and removes the temporary file too.
 */
const settle = (
  session: Session,
  temporary: FtpPath,
  target: FtpPath,
  exit: Exit.Exit<void, CommandError>,
): Effect.Effect<Exit.Exit<void, CommandError>> =>
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

const finish = (
  session: Session,
  plan: TransferPlan,
  pending: PendingData,
  active: ActiveTransfer,
  exit: Exit.Exit<void, CommandError>,
): Effect.Effect<void> =>
  Effect.gen(function* () {
    yield* Scope.close(plan.scope, exit)
    const outcome = plan.temporary === undefined ? exit : yield* settle(session, plan.temporary, plan.path, exit)
    yield* DataChannel.release(pending)
    session.transferEnded()
    const completed = Exit.isSuccess(outcome)
    const { bytes, stored } = active.progress
    yield* session.server.events.emit({
      type: "transfer",
      session,
      transfer: {
        command: plan.command,
        direction: plan.direction,
        path: plan.path,
        file: completed || plan.direction !== "receive" ? plan.path.real : plan.temporary?.real ?? plan.path.real,
        bytes: stored ?? bytes,
        seconds: (Date.now() - active.started) / 1000,
        result: resultOf(outcome),
        ascii: active.ascii,
        throttledMs: active.throttle?.throttledMs ?? 0,
        user: session.account?.user ?? "",
      },
    })
    if (completed) {
      yield* session.reply(226, "Transfer complete.")
    } else {
      // An interrupted transfer (ABOR, shutdown) is answered by whoever interrupted it.
      const failure = Cause.findErrorOption(outcome.cause)
      if (failure._tag === "Some") {
        const timedOut = timeoutLine(session, plan, failure.value)
        if (timedOut !== undefined) yield* session.log(timedOut)
        const { code, text } = replyFor(failure.value, "transfer")
        yield* session.reply(code, text)
      } else if (!Cause.hasInterruptsOnly(outcome.cause)) {
        yield* Effect.logError(`${plan.command} failed unexpectedly`, outcome.cause)
        yield* session.reply(LOCAL_ERROR.code, LOCAL_ERROR.text)
      }
    }
  })

/** How a transfer ended, for metrics and traces: a data timeout is a stall, ABOR and shutdown an abort. */
const resultOf = (exit: Exit.Exit<void, CommandError>): TransferResult => {
  if (Exit.isSuccess(exit)) return "ok"
  const failure = Cause.findErrorOption(exit.cause)
  if (failure._tag === "None") return Cause.hasInterruptsOnly(exit.cause) ? "aborted" : "failed"
  const error = failure.value
  return error._tag === "TransferStalled" ||
      (error._tag === "DataConnectionError" && error.timeoutSeconds !== undefined)
    ? "stalled"
    : "failed"
}

/** What a byte loop failed with: a file's or a stall's own error, else the data connection's loss. */
const asTransferError = (error: unknown): CommandError =>
  error instanceof FilesystemError || error instanceof TransferStalled
    ? error
    : new DataConnectionLost({ cause: error })

/**
 * Run a byte loop. Interrupted (ABOR, shutdown), it is aborted and waited for: what it received
 * is written and its counts are final before the transfer's scope closes the file and logs them.
 */
const untilSettled = (run: (signal: AbortSignal) => Promise<void>): Effect.Effect<void, CommandError> =>
  Effect.callback<void, CommandError>((resume) => {
    const controller = new AbortController()
    const running = run(controller.signal)
    running.then(() => resume(Effect.void), (error) => resume(Effect.fail(asTransferError(error))))
    return Effect.promise(() => {
      controller.abort()
      return running.then(() => undefined, () => undefined)
    })
  })

/**
 * Send 150 and run `plan` in the session's transfer fiber. The caller has checked that a data
 * connection is prepared ({@link needData}) and opened what the plan needs in `plan.scope`.
 */
export const startTransfer = (session: Session, plan: TransferPlan): Effect.Effect<void> =>
  Effect.gen(function* () {
    const pending = session.data!
    session.data = null
    const { options } = session
    const events = session.server.events
    const throttle = session.server.bandwidth.throttle(
      session,
      session.account,
      plan.direction === "receive" ? "read" : "write",
    )
    const active: ActiveTransfer = {
      command: plan.command,
      path: plan.path.virtual,
      progress: { bytes: 0 },
      started: Date.now(),
      ascii: session.ascii,
      throttle,
      fiber: undefined,
    }
    session.transfer = active
    yield* session.reply(150, plan.preliminary)
    const dataTimeout = options.dataTimeout > 0 ? options.dataTimeout : Infinity
    const tls = session.dataTls
    const body = Effect.gen(function* () {
      const conn = yield* DataChannel.open(pending, {
        client: session.remoteAddress,
        permitForeignAddresses: options.permitForeignAddresses,
        acceptTimeout: Math.min(PASSIVE_ACCEPT_TIMEOUT, dataTimeout),
        tls,
        sockets: session.server.dataSockets,
        owner: session,
        proxy: options.proxyProtocol
          ? { trusted: options.proxyTrusted, timeoutMs: Math.min(PASSIVE_ACCEPT_TIMEOUT, dataTimeout) * 1000 }
          : null,
      }).pipe(
        Effect.tapError((error) =>
          error._tag === "TlsHandshakeError"
            ? events.emit({ type: "tlsHandshake", channel: "data", ok: false, version: "none" })
            : Effect.void
        ),
      )
      if (tls !== null) {
        yield* events.emit({ type: "tlsHandshake", channel: "data", ok: true, version: tlsVersion(conn) })
      }
      yield* untilSettled((signal) =>
        plan.run(conn, { signal, stallMs: options.dataTimeout * 1000, progress: active.progress, throttle })
          .then(() => finishConnection(conn))
      )
    }).pipe(
      Scope.provide(plan.scope),
      Effect.onExit((exit) => finish(session, plan, pending, active, exit)),
      Effect.annotateLogs(session.logAnnotations),
      Effect.exit,
      Effect.asVoid,
    )
    // Started at once, so that its end (`finish`) is in place before anything can interrupt it: an
    // ABOR pipelined right behind the command would otherwise stop a fiber that never ran, leaving
    // the transfer shown as running, its file and data connection open.
    active.fiber = yield* Effect.forkIn(events.transferSpan(plan.command, plan.path.virtual, body), session.scope, {
      startImmediately: true,
    })
  })

/** A data connection's TLS version: `node:tls` tells it; Deno's native TLS does not (`unknown`). */
const tlsVersion = (conn: Transport): string => conn instanceof TlsConn ? conn.protocol : "unknown"
