/**
 * Typed errors that clients can cause, and the one place that turns each into an FTP reply
 * ({@link replyFor}).
 *
 * The classes extend `Data.Error` with an explicit `_tag` (rather than `Data.TaggedError(...)`),
 * which keeps their types explicit for JSR.
 *
 * @module
 */
import * as Data from "effect/Data"

/** Why a filesystem operation failed; each reason has exactly one FTP reply. */
export type FilesystemErrorReason =
  | "NotFound"
  | "PermissionDenied"
  | "OutsideHome"
  | "AlreadyExists"
  | "NotADirectory"
  | "IsADirectory"
  | "NotEmpty"
  | "BadName"
  | "NoSpace"
  | "QuotaExceeded"
  | "InvalidOffset"
  | "Unavailable"
  | "Other"

/**
 * A filesystem operation failed. `path` is the virtual (client-visible) path.
 *
 * @example
 * ```ts
 * import { FilesystemError } from "@ftpd/server"
 * const e = new FilesystemError({ path: "/a.txt", reason: "NotFound" })
 * console.log(e.reason) // "NotFound"
 * ```
 */
export class FilesystemError extends Data.Error<{
  readonly path: string
  readonly reason: FilesystemErrorReason
  readonly detail?: string
  readonly cause?: unknown
}> {
  /** Discriminator for `Effect.catchTag`. */
  readonly _tag = "FilesystemError" as const
  override get message(): string {
    return this.detail ?? defaultFilesystemText[this.reason]
  }
}

const defaultFilesystemText: Record<FilesystemErrorReason, string> = {
  NotFound: "No such file or directory.",
  PermissionDenied: "Permission denied.",
  OutsideHome: "Not allowed: path is outside the home directory.",
  AlreadyExists: "File exists.",
  NotADirectory: "Not a directory.",
  IsADirectory: "Is a directory.",
  NotEmpty: "Directory not empty.",
  BadName: "File name not allowed.",
  NoSpace: "Insufficient storage space.",
  QuotaExceeded: "Storage allocation exceeded.",
  InvalidOffset: "Invalid REST parameter.",
  Unavailable: "Storage temporarily unavailable: try again later.",
  Other: "Filesystem error.",
}

/**
 * Login was refused: wrong password, unknown user, or a user the authorizer rejects. `message` is
 * the text of the 530 the client gets; `reason`, when given, goes to the log only (a client is not
 * told that the password was right but the account is disabled, say).
 *
 * @example
 * ```ts
 * import { AuthenticationFailed } from "@ftpd/server"
 * const e = new AuthenticationFailed({ user: "bob", message: "Authentication failed.", reason: "account disabled" })
 * console.log(e._tag)
 * ```
 */
export class AuthenticationFailed extends Data.Error<{
  readonly user: string
  readonly message: string
  readonly reason?: string
}> {
  /** Discriminator for `Effect.catchTag`. */
  readonly _tag = "AuthenticationFailed" as const
}

/**
 * An authorizer was configured wrongly (duplicate user, missing home, unknown permission letter).
 *
 * @example
 * ```ts
 * import { AuthorizerError } from "@ftpd/server"
 * console.log(new AuthorizerError({ message: "no such user" }).message)
 * ```
 */
export class AuthorizerError extends Data.Error<{ readonly message: string }> {
  /** Discriminator for `Effect.catchTag`. */
  readonly _tag = "AuthorizerError" as const
}

/**
 * A data connection could not be set up: no passive port, a failed active connect, no connection
 * from the client in time, too many data connections, or a TLS rule that refuses it.
 *
 * @example
 * ```ts
 * import { DataConnectionError } from "@ftpd/server"
 * console.log(new DataConnectionError({ message: "Can't open data connection." }).message)
 * ```
 */
export class DataConnectionError extends Data.Error<{
  readonly message: string
  readonly cause?: unknown
  /** The reply code: 425 unless said otherwise (522 for a refused TLS data connection, RFC 4217). */
  readonly code?: 425 | 522
  /** Set when the connection was not made in time: the seconds waited. */
  readonly timeoutSeconds?: number
}> {
  /** Discriminator for `Effect.catchTag`. */
  readonly _tag = "DataConnectionError" as const
}

/**
 * A TLS handshake did not complete (an error, the peer leaving, or the handshake timeout).
 *
 * @example
 * ```ts
 * import { TlsHandshakeError } from "@ftpd/server"
 * console.log(new TlsHandshakeError({ message: "TLS handshake timed out after 30000 ms" })._tag)
 * ```
 */
export class TlsHandshakeError extends Data.Error<{ readonly message: string; readonly cause?: unknown }> {
  /** Discriminator for `Effect.catchTag`. */
  readonly _tag = "TlsHandshakeError" as const
}

/**
 * A transfer's data connection moved no byte for `seconds` (the data timeout).
 *
 * @example
 * ```ts
 * import { TransferStalled } from "@ftpd/server"
 * console.log(new TransferStalled({ seconds: 300 }).seconds)
 * ```
 */
export class TransferStalled extends Data.Error<{ readonly seconds: number }> {
  /** Discriminator for `Effect.catchTag`. */
  readonly _tag = "TransferStalled" as const
  override get message(): string {
    return `Data connection timed out after ${this.seconds} s without progress.`
  }
}

/**
 * A transfer's data connection failed or was closed by the peer before the transfer ended.
 *
 * @example
 * ```ts
 * import { DataConnectionLost } from "@ftpd/server"
 * console.log(new DataConnectionLost({ cause: new Deno.errors.ConnectionReset() })._tag)
 * ```
 */
export class DataConnectionLost extends Data.Error<{ readonly cause?: unknown }> {
  /** Discriminator for `Effect.catchTag`. */
  readonly _tag = "DataConnectionLost" as const
  override get message(): string {
    return "Data connection closed."
  }
}

/** What can go wrong in a command; {@link replyFor} answers each. */
export type CommandError =
  | FilesystemError
  | DataConnectionError
  | TlsHandshakeError
  | TransferStalled
  | DataConnectionLost

/** The 451 of a command or transfer that failed through a bug of the server (a defect), not the client. */
export const LOCAL_ERROR: Reply = { code: 451, text: "Requested action aborted: local error in processing." }

/** A reply code and its text. */
export interface Reply {
  readonly code: number
  readonly text: string
}

/**
 * The one reply for each error. `during` says when it happened: in a command (before any data
 * connection is used), or in a transfer, after its 150 (RFC 959 4.2: 451 local error, 426
 * transfer aborted). Filesystem errors: 550 for most, 553 for a refused name, 452 for no space
 * (552 for a quota), 554 for a REST offset past the end of the file (RFC 1123 4.1.3.4), 451 for
 * storage that is unavailable for now (a remote store that keeps failing); in a transfer, 451 but
 * for space.
 *
 * @example
 * ```ts
 * import { FilesystemError, replyFor } from "@ftpd/server"
 * console.log(replyFor(new FilesystemError({ path: "/x", reason: "NotFound" })).code) // 550
 * console.log(replyFor(new FilesystemError({ path: "/x", reason: "Other" }), "transfer").code) // 451
 * ```
 */
export const replyFor = (error: CommandError, during: "command" | "transfer" = "command"): Reply => {
  switch (error._tag) {
    case "FilesystemError":
      return filesystemReply(error, during)
    case "DataConnectionError":
      return { code: error.code ?? 425, text: error.message }
    case "TlsHandshakeError":
      return { code: 425, text: `Can't open data connection: ${error.message}.` }
    case "TransferStalled":
      return { code: 426, text: "Transfer aborted: data connection timed out." }
    case "DataConnectionLost":
      return { code: 426, text: "Transfer aborted: data connection closed." }
  }
}

const filesystemReply = (error: FilesystemError, during: "command" | "transfer"): Reply => {
  switch (error.reason) {
    case "NoSpace":
      return {
        code: 452,
        text: during === "transfer" ? "Transfer aborted: insufficient storage space." : error.message,
      }
    case "QuotaExceeded":
      return { code: 552, text: during === "transfer" ? `Transfer aborted: ${error.message}` : error.message }
    case "BadName":
      return { code: during === "transfer" ? 451 : 553, text: message(error, during) }
    case "InvalidOffset":
      return { code: during === "transfer" ? 451 : 554, text: message(error, during) }
    case "Unavailable":
      return { code: 451, text: message(error, during) }
    default:
      return { code: during === "transfer" ? 451 : 550, text: message(error, during) }
  }
}

const message = (error: FilesystemError, during: "command" | "transfer") =>
  during === "transfer" ? `Transfer aborted: ${error.message}` : error.message

/**
 * Classify an error thrown by Deno's filesystem APIs.
 * `Deno.errors.NotCapable` (a path the process was not granted) is a permission error, never a crash.
 *
 * @example
 * ```ts
 * import { fromSystemError } from "@ftpd/server"
 * console.log(fromSystemError("/x", new Deno.errors.NotFound("x")).reason) // "NotFound"
 * ```
 */
export const fromSystemError = (path: string, cause: unknown): FilesystemError => {
  if (cause instanceof FilesystemError) return cause
  const code = errorCode(cause)
  const reason: FilesystemErrorReason = cause instanceof Deno.errors.NotFound
    ? "NotFound"
    : cause instanceof Deno.errors.PermissionDenied || cause instanceof Deno.errors.NotCapable
    ? "PermissionDenied"
    : cause instanceof Deno.errors.AlreadyExists
    ? "AlreadyExists"
    : cause instanceof Deno.errors.NotADirectory
    ? "NotADirectory"
    : cause instanceof Deno.errors.IsADirectory
    ? "IsADirectory"
    : code === "ENOTEMPTY"
    ? "NotEmpty"
    : code === "ENOSPC"
    ? "NoSpace"
    : code === "EDQUOT" || code === "EFBIG"
    ? "QuotaExceeded"
    : code === "ENAMETOOLONG" || code === "EINVAL"
    ? "BadName"
    : "Other"
  return new FilesystemError({ path, reason, cause })
}

const errorCode = (cause: unknown): string | undefined =>
  typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string"
    ? cause.code
    : undefined
