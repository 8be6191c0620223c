/**
 * `UnixAuthorizer`: the machine's own users log in with their system passwords (pyftpdlib's
 * `UnixAuthorizer`, vsftpd's `local_enable`).
 *
 * - Passwords are checked against the shadow database (`getspnam_r`) with the system's own crypt
 *   (libxcrypt's `crypt_rn`: yescrypt, SHA-crypt, ...), off the event loop. A user who does not
 *   exist, or whose password field is locked, costs the same: the password is hashed with a fresh
 *   setting of the system's default scheme. An account past its shadow expiry date is refused.
 * - Homes come from the passwd database. Without `jail` (pyftpdlib's `UnixFilesystem`) a user
 *   starts in their home and sees the whole tree; with it, the home is their `/`.
 * - Every file access of a session runs with the user's identity (uid, primary group, every
 *   supplementary group): the filesystem must honour `Account.identity` (the descriptor jail
 *   does, by switching its thread's file identity around each operation), so that the kernel
 *   grants each user exactly what it would grant them on the machine.
 *
 * Needs root (reading the shadow database, acting as each user) and `--allow-ffi`, on Linux.
 *
 * @module
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { AuthenticationFailed, AuthorizerError } from "../errors.ts"
import { groupsOf, shadowEntry, systemUser, validShells } from "../sys/accounts.ts"
import { systemCrypt } from "../sys/crypt.ts"
import { identities } from "../sys/identity.ts"
import { type Account, ALL_PERMISSIONS, Authorizer, type AuthorizerShape } from "./authorizer.ts"
import { samePassword } from "./_compare.ts"

/** What `overrideUsers` may change for one user (pyftpdlib's `override_user`). */
export interface UnixUserOverride {
  /** A password that replaces the system's for this user (kept in memory, compared in constant time). */
  readonly password?: string
  /** A home that replaces the passwd database's. */
  readonly home?: string
  /** Permission letters instead of `globalPerm` (`elr` for `anonymous`). */
  readonly perm?: string
  readonly msgLogin?: string
  readonly msgQuit?: string
}

/** Options of {@link UnixAuthorizer}, with pyftpdlib's defaults. */
export interface UnixAuthorizerOptions {
  /** Permission letters of every user. Default `"elradfmwMT"`: what a user may do is the system's to say. */
  readonly globalPerm?: string
  /** Only these may log in (default: anyone not rejected). */
  readonly allowedUsers?: ReadonlyArray<string>
  /** These may not log in. Default `["root"]` (none when `allowedUsers` is given); not with `allowedUsers`. */
  readonly rejectedUsers?: ReadonlyArray<string>
  /** Refuse users whose shell is not listed in `/etc/shells`. Default true (not applied to anonymous). */
  readonly requireValidShell?: boolean
  /** The system user `anonymous` logs in as (any password, `elr`); without it, no anonymous login. */
  readonly anonymousUser?: string
  /** Default `"Login successful."`. */
  readonly msgLogin?: string
  /** Default `"Goodbye."`. */
  readonly msgQuit?: string
  /** Keep each user inside their home (it is their `/`). Default false: they see the whole tree. */
  readonly jail?: boolean
  /** Settings of single users (or `anonymous`) that replace the system's or the defaults. */
  readonly overrideUsers?: Readonly<Record<string, UnixUserOverride>>
}

const FAILED = "Authentication failed."
const DAY_MS = 86_400_000

const checkLetters = (perm: string, what: string) => {
  const bad = [...perm].find((letter) => !ALL_PERMISSIONS.includes(letter))
  if (bad !== undefined) throw new AuthorizerError({ message: `${what}: no such permission '${bad}'` })
}

/** Why this process can't be a Unix authorizer, or nothing. */
const missingForUnixUsers = (): string | undefined => {
  const acting = identities()
  if ("missing" in acting) return acting.missing
  if (systemCrypt() === null) return "the system's crypt library (libcrypt.so.1)"
  return undefined
}

const make = (options: UnixAuthorizerOptions): Effect.Effect<AuthorizerShape, AuthorizerError> =>
  Effect.gen(function* () {
    const missing = missingForUnixUsers()
    if (missing !== undefined) {
      return yield* Effect.fail(new AuthorizerError({ message: `system users need ${missing}` }))
    }
    const crypt = systemCrypt()!
    const globalPerm = options.globalPerm ?? ALL_PERMISSIONS
    const allowed = new Set(options.allowedUsers ?? [])
    if (allowed.size > 0 && options.rejectedUsers !== undefined && options.rejectedUsers.length > 0) {
      return yield* Effect.fail(
        new AuthorizerError({ message: "rejectedUsers and allowedUsers options are mutually exclusive" }),
      )
    }
    const rejected = new Set(options.rejectedUsers ?? (allowed.size > 0 ? [] : ["root"]))
    const overrides = new Map(Object.entries(options.overrideUsers ?? {}))
    const requireValidShell = options.requireValidShell ?? true
    yield* Effect.try({
      try: () => {
        checkLetters(globalPerm, "globalPerm")
        for (const [name, override] of overrides) {
          if (override.perm !== undefined) checkLetters(override.perm, `overrideUsers.${name}.perm`)
          if (name === "anonymous" && override.password !== undefined) {
            throw new AuthorizerError({ message: "can't assign password to anonymous user" })
          }
        }
      },
      catch: (error) => error as AuthorizerError,
    })
    // pyftpdlib refuses names that do not exist in its lists; so do we, and the anonymous user's.
    const named = [...allowed, ...rejected, ...(options.anonymousUser === undefined ? [] : [options.anonymousUser])]
    for (const name of named) {
      if (name === "anonymous") {
        return yield* Effect.fail(new AuthorizerError({ message: 'invalid username "anonymous"' }))
      }
      if ((yield* Effect.promise(() => systemUser(name))) === undefined) {
        return yield* Effect.fail(new AuthorizerError({ message: `no such user ${name}` }))
      }
    }

    yield* Effect.logInfo(
      `system users: ${
        allowed.size > 0 ? `only ${[...allowed].join(", ")}` : `all but ${[...rejected].join(", ") || "none"}`
      }` +
        `; shell check ${requireValidShell ? "on" : "off"}; anonymous ${options.anonymousUser ?? "refused"}; ` +
        `${
          options.jail ? "each jailed in their home" : "each starting in their home"
        }; file access with each user's identity.`,
    )
    const fail = (user: string, reason: string, message = FAILED) =>
      Effect.fail(new AuthenticationFailed({ user, message, reason }))

    /** The account of system user `system`, logged in as `login`. */
    const accountOf = (login: string, system: string): Effect.Effect<Account, AuthenticationFailed> =>
      Effect.gen(function* () {
        const found = yield* Effect.promise(() => systemUser(system))
        if (found === undefined) return yield* fail(login, `no system user ${system}`)
        const override = overrides.get(login)
        const home = override?.home ?? found.home
        return {
          user: login,
          home: options.jail ? home : "/",
          ...(options.jail ? {} : { startDirectory: home }),
          msgLogin: override?.msgLogin ?? options.msgLogin ?? "Login successful.",
          msgQuit: override?.msgQuit ?? options.msgQuit ?? "Goodbye.",
          identity: { uid: found.uid, gid: found.gid, groups: groupsOf(found.name, found.gid) },
        }
      })

    /** The system's verdict on `password`: the same work whether the user exists, is locked or not. */
    const checkSystemPassword = (user: string, password: string) =>
      Effect.promise(async () => {
        const entry = await shadowEntry(user)
        const usable = entry !== undefined && entry.hash.startsWith("$")
        const hashed = await crypt.crypt(password, usable ? entry.hash : crypt.defaultSetting() ?? "$y$j9T$")
        if (!usable) return entry === undefined ? "no such user" : "account locked or without a password"
        if (hashed === null || !samePassword(hashed, entry.hash)) return "wrong password"
        if (entry.expireDay !== undefined && Date.now() >= entry.expireDay * DAY_MS) return "account expired"
        return undefined
      })

    const authenticate: AuthorizerShape["authenticate"] = (user, password) =>
      Effect.gen(function* () {
        if (user === "anonymous") {
          if (options.anonymousUser === undefined) {
            return yield* fail(user, "no anonymous user", "Anonymous access not allowed.")
          }
          return yield* accountOf(user, options.anonymousUser)
        }
        if ((allowed.size > 0 && !allowed.has(user)) || rejected.has(user)) {
          return yield* fail(user, "not allowed to log in (rejected or not among the allowed users)")
        }
        const override = overrides.get(user)
        const why = override?.password !== undefined
          ? (samePassword(password, override.password) ? undefined : "wrong password")
          : yield* checkSystemPassword(user, password)
        if (why !== undefined) return yield* fail(user, why)
        if (requireValidShell) {
          const shell = (yield* Effect.promise(() => systemUser(user)))?.shell ?? ""
          const shells = validShells()
          if (shells !== null && !shells.has(shell)) return yield* fail(user, `shell ${shell} is not in /etc/shells`)
        }
        return yield* accountOf(user, user)
      })

    return {
      authenticate,
      hasPerm: (user, perm) =>
        (overrides.get(user)?.perm ?? (user === "anonymous" ? "elr" : globalPerm)).includes(perm),
    }
  })

/**
 * The machine's users (see the module documentation).
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { FtpServer, LocalFilesystem, UnixAuthorizer } from "@ftpd/server"
 * // as root, with --allow-ffi
 * const users = UnixAuthorizer.layer({ rejectedUsers: ["root"], anonymousUser: "ftp" })
 * const server = FtpServer.layer({ port: 21 })
 * Layer.launch(server.pipe(Layer.provide([users, LocalFilesystem.layerWith({ jail: "descriptor" })])))
 *   .pipe(Effect.runFork)
 * ```
 */
export const UnixAuthorizer: {
  /** The authorizer as a layer; fails with an {@link AuthorizerError} when it can't work here or is misconfigured. */
  readonly layer: (options?: UnixAuthorizerOptions) => Layer.Layer<Authorizer, AuthorizerError>
  readonly make: (options?: UnixAuthorizerOptions) => Effect.Effect<AuthorizerShape, AuthorizerError>
  /** Why system users can't be served by this process (no FFI, not root, no libcrypt), or `undefined`. */
  readonly missing: () => string | undefined
} = {
  layer: (options = {}) => Layer.effect(Authorizer, make(options)),
  make: (options = {}) => make(options),
  missing: missingForUnixUsers,
}
