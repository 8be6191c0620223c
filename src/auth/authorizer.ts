/**
 * The `Authorizer` service: who may log in, where their home is, and what they may do where.
 *
 * Permission letters are pyftpdlib's:
 * - read: `e` change directory (CWD, CDUP), `l` list (LIST, NLST, STAT, MLSD, MLST, SIZE, MDTM),
 *   `r` retrieve (RETR, and the checksums HASH, XCRC, XMD5, XSHA1, XSHA256, XSHA512);
 * - write: `a` append (APPE), `d` delete (DELE, RMD), `f` rename (RNFR, RNTO), `m` make directory
 *   (MKD), `w` store (STOR, STOU, and AVBL's free space), `M` change mode (SITE CHMOD), `T` change
 *   modification time (MFMT, SITE UTIME).
 *
 * @module
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type { AuthenticationFailed } from "../errors.ts"
import type { Identity } from "../sys/identity.ts"

export type { Identity }

/** One permission letter. */
export type Permission = "e" | "l" | "r" | "a" | "d" | "f" | "m" | "w" | "M" | "T"

/** Every permission letter, in pyftpdlib's order. */
export const ALL_PERMISSIONS = "elradfmwMT"
/** The read-only letters. */
export const READ_PERMISSIONS = "elr"
/** The letters that let a user change the filesystem. */
export const WRITE_PERMISSIONS = "adfmwMT"

/**
 * Limits of one user that take the place of the server's (`maxSessionsPerUser`, `userReadLimit`,
 * `userWriteLimit`) for that user; absent ones leave the server's in force, 0 is no limit.
 */
export interface UserLimits {
  /** Most sessions logged in as this user at once. */
  readonly maxSessions?: number
  /** Upload bandwidth (client to server) of all of this user's sessions together, bytes/s. */
  readonly readLimit?: number
  /** Download bandwidth (server to client) of all of this user's sessions together, bytes/s. */
  readonly writeLimit?: number
}

/** A user who has logged in. */
export interface Account {
  readonly user: string
  /** The real directory the user sees as `/`. */
  readonly home: string
  readonly msgLogin: string
  readonly msgQuit: string
  /** The virtual directory the session starts in (default `/`): a system user's home when `home` is `/`. */
  readonly startDirectory?: string
  /** Limits of this user that replace the server's. */
  readonly limits?: UserLimits
  /**
   * The system user whose file access rights every operation of the session runs with. Only a
   * filesystem that declares `userIdentity` honours it; the server refuses such a login on any other.
   */
  readonly identity?: Identity
}

/** What an authorizer may look at besides the name and the password. */
export interface LoginContext {
  /** The client's address, as the server sees it. */
  readonly remoteAddress: string
  /** The host the client named with HOST (RFC 7151) before logging in, if it did. */
  readonly host: string | null
}

/** What a server asks of an authorizer. */
export interface AuthorizerShape {
  /**
   * Check a user name and password; fail with `AuthenticationFailed` to refuse. The server always
   * passes `context`; other callers (tests, tools) may leave it out.
   */
  readonly authenticate: (
    user: string,
    password: string,
    context?: LoginContext,
  ) => Effect.Effect<Account, AuthenticationFailed>
  /** Whether `user` may do `perm` on the real path `path` (its override rules applied). */
  readonly hasPerm: (user: string, perm: Permission, path: string) => boolean
  /**
   * Whether this authorizer serves the virtual host a client names with HOST (RFC 7151): a host it
   * does not serve gets 504 at once. Absent: every well-formed host is accepted, and `authenticate`
   * decides at login (`LoginContext.host`).
   */
  readonly servesHost?: (host: string) => Effect.Effect<boolean>
  /**
   * What the server's start banner says is served to whom, after `serving `: e.g.
   * `"/srv/ftp: anonymous read-only (elr)"`. Absent: the banner says `custom authorizer`.
   */
  readonly description?: string
}

/**
 * The authorizer service a server uses; {@link DummyAuthorizer} is the in-memory one.
 *
 * @example
 * ```ts
 * import { Authorizer, DummyAuthorizer } from "@ftpd/server"
 * import { Effect } from "effect"
 * const program = Effect.gen(function* () {
 *   const auth = yield* Authorizer
 *   return yield* auth.authenticate("user", "12345")
 * }).pipe(Effect.provide(DummyAuthorizer.layer((a) => a.addUser("user", "12345", Deno.cwd()))))
 * ```
 */
export const Authorizer: Context.Service<Authorizer, AuthorizerShape> = Context.Service<Authorizer, AuthorizerShape>(
  "@ftpd/server/Authorizer",
)
/** The authorizer service's shape. */
export type Authorizer = AuthorizerShape
