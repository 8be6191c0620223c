/**
 * Typed errors that clients can cause, and the one place that turns them into FTP replies.
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
  | "InvalidOffset"
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
  InvalidOffset: "Invalid REST parameter.",
  Other: "Filesystem error.",
}

/**
 * Login was refused: wrong password, unknown user, or a user the authorizer rejects.
 *
 * @example
 * ```ts
 * import { AuthenticationFailed } from "@ftpd/server"
 * const e = new AuthenticationFailed({ user: "bob", message: "Authentication failed." })
 * console.log(e._tag)
 * ```
 */
export class AuthenticationFailed extends Data.Error<{ readonly user: string; readonly message: string }> {
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

/** A reply code and its text. */
export interface Reply {
  readonly code: number
  readonly text: string
}

/**
 * The FTP reply for a filesystem error: 550 for most, 553 for a refused name, 552 for no space,
 * 554 for a REST offset past the end of the file (RFC 1123 4.1.3.4).
 *
 * @example
 * ```ts
 * import { FilesystemError, filesystemReply } from "@ftpd/server"
 * console.log(filesystemReply(new FilesystemError({ path: "/x", reason: "NotFound" })).code) // 550
 * ```
 */
export const filesystemReply = (error: FilesystemError): Reply => {
  switch (error.reason) {
    case "BadName":
      return { code: 553, text: error.message }
    case "NoSpace":
      return { code: 552, text: error.message }
    case "InvalidOffset":
      return { code: 554, text: error.message }
    default:
      return { code: 550, text: error.message }
  }
}

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
    : errorCode(cause) === "ENOTEMPTY"
    ? "NotEmpty"
    : errorCode(cause) === "ENOSPC" || errorCode(cause) === "EDQUOT"
    ? "NoSpace"
    : errorCode(cause) === "ENAMETOOLONG" || errorCode(cause) === "EINVAL"
    ? "BadName"
    : "Other"
  return new FilesystemError({ path, reason, cause })
}

const errorCode = (cause: unknown): string | undefined =>
  typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string"
    ? cause.code
    : undefined

/**
 * A data connection could not be set up: no passive port, a failed active connect, or no
 * connection from the client in time. Replied to with 425.
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
  readonly code?: number
  /** Set when the connection was not made in time: the seconds waited. */
  readonly timeoutSeconds?: number
}> {
  /** Discriminator for `Effect.catchTag`. */
  readonly _tag = "DataConnectionError" as const
}
