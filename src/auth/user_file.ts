/**
 * `UserFileAuthorizer`: users from a file of hashed passwords (the format is in
 * `_user_file_format.ts` and the README), managed with `ftpd users`, reloaded on SIGHUP and,
 * when watched, whenever the file changes.
 *
 * Every login checks its password in a worker ({@link makePasswordVerifier}): the hash libraries
 * compute synchronously, and a session's check must not hold up the others. A user who does not
 * exist costs the same as a wrong password: the password is checked against a dummy hash made,
 * at each load, with the scheme and parameters most users of the file have. Whatever refuses a
 * login (wrong password, unknown user, disabled, expired, address not allowed), the client gets
 * the same `530 Authentication failed.`; the log says which.
 *
 * @module
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { AuthenticationFailed, AuthorizerError } from "../errors.ts"
import { Hangup } from "../runtime.ts"
import { type Account, Authorizer, type AuthorizerShape } from "./authorizer.ts"
import { mostSpecificFirst, type Override, permitted } from "./_overrides.ts"
import { type FileEntry, parseUserFile, UserFileError } from "./_user_file_format.ts"
import { makePasswordVerifier, type PasswordVerifier } from "./passwords.ts"

export { UserFileError }

/** Options of {@link UserFileAuthorizer}. */
export interface UserFileOptions {
  /** The user file. */
  readonly path: string
  /** Also reload when the file changes (`Deno.watchFs`); SIGHUP under `runMain` always reloads. Default false. */
  readonly watch?: boolean
  /** Password workers (default: one fewer than the cores, at least one). */
  readonly workers?: number
}

/** A user ready for logins: the file's entry with its directories resolved. */
interface Entry {
  readonly file: FileEntry
  readonly home: string
  readonly overrides: ReadonlyArray<Override>
}

/** One load of the file. */
interface Table {
  readonly users: ReadonlyMap<string, Entry>
  readonly anonymous: Entry | undefined
  /** Checked for users that do not exist: see the module comment. */
  readonly dummy: string
}

/** The user file authorizer: the {@link Authorizer} and what else a program may ask of it. */
export interface UserFileAuthorizerShape extends AuthorizerShape {
  /** Read the file again; a file that can't be used fails with its reason and changes nothing. */
  readonly reload: Effect.Effect<void, AuthorizerError>
  /** The names of the users in force (the anonymous entry as `anonymous`). */
  readonly users: () => ReadonlyArray<string>
}

const FAILED = "Authentication failed."

/** The canonical path of `path`, or of its nearest existing parent with the rest appended. */
const canonical = async (path: string): Promise<string> => {
  try {
    return await Deno.realPath(path)
  } catch (error) {
    const i = path.lastIndexOf("/")
    if (!(error instanceof Deno.errors.NotFound) || i <= 0) throw error
    return `${await canonical(path.slice(0, i))}${path.slice(i)}`
  }
}

/** Resolve an entry's home (which must exist) and override directories (which need not). */
const resolveEntry = async (file: FileEntry, field: string): Promise<Entry> => {
  let home: string
  try {
    home = await Deno.realPath(file.home)
    if (!(await Deno.stat(home)).isDirectory) throw new Deno.errors.NotADirectory(file.home)
  } catch (error) {
    throw new UserFileError(`${field}.home: no such directory: '${file.home}' (${(error as Error).name})`)
  }
  const overrides = await Promise.all(
    file.overrides.map(async ({ dir, perm, recursive }) => ({
      dir: await canonical(home + dir),
      perm,
      recursive,
    })),
  )
  return { file, home, overrides: mostSpecificFirst(overrides) }
}

/** The part of a hash that says how costly it is: its scheme and parameters, without salt and digest. */
const costOf = (hash: string): string => {
  if (/^\$2[aby]\$/.test(hash)) return hash.slice(0, 7)
  const fields = hash.split("$")
  return fields.slice(0, -2).join("$")
}

/** The hash most users share the cost of: the dummy's model. */
const commonest = (hashes: ReadonlyArray<string>): string | undefined => {
  const counts = new Map<string, { hash: string; count: number }>()
  for (const hash of hashes) {
    const seen = counts.get(costOf(hash))
    if (seen === undefined) counts.set(costOf(hash), { hash, count: 1 })
    else seen.count++
  }
  return [...counts.values()].sort((a, b) => b.count - a.count)[0]?.hash
}

const load = async (path: string, verifier: PasswordVerifier): Promise<Table> => {
  let text: string
  try {
    text = await Deno.readTextFile(path)
  } catch (error) {
    throw new UserFileError(`can't read it: ${(error as Error).message}`)
  }
  const contents = parseUserFile(text)
  const users = new Map<string, Entry>()
  for (const [name, file] of contents.users) users.set(name, await resolveEntry(file, `users.${name}`))
  const anonymous = contents.anonymous === undefined ? undefined : await resolveEntry(contents.anonymous, "anonymous")
  const model = commonest([...contents.users.values()].map((user) => user.password!))
  const dummy = model === undefined ? await verifier.hash(crypto.randomUUID()) : await verifier.dummyLike(model)
  return { users, anonymous, dummy }
}

const toAccount = (name: string, entry: Entry): Account => ({
  user: name,
  home: entry.home,
  msgLogin: entry.file.msgLogin,
  msgQuit: entry.file.msgQuit,
  ...(entry.file.limits === undefined ? {} : { limits: entry.file.limits }),
})

/** Why `entry` may not log in now from `address`, if it may not. */
const refusal = (entry: Entry, address: string | undefined): string | undefined => {
  const { enabled, expires, allow } = entry.file
  if (!enabled) return "account disabled"
  if (expires !== undefined && Date.now() >= expires.getTime()) return `account expired on ${expires.toISOString()}`
  if (allow !== undefined && (address === undefined || !allow.allows(address))) {
    return `address ${address ?? "(unknown)"} not allowed`
  }
  return undefined
}

const make = (options: UserFileOptions): Effect.Effect<UserFileAuthorizerShape, AuthorizerError, Scope.Scope> =>
  Effect.gen(function* () {
    const verifier = yield* makePasswordVerifier(options.workers)
    const read = Effect.tryPromise({
      try: () => load(options.path, verifier),
      catch: (error) =>
        new AuthorizerError({
          message: `user file ${options.path}: ${error instanceof UserFileError ? error.message : String(error)}`,
        }),
    })
    const counted = (t: Table) => `${t.users.size + (t.anonymous === undefined ? 0 : 1)} users`
    let table = yield* read
    yield* Effect.logInfo(`user file ${options.path}: ${counted(table)}.`)
    const reload = Effect.flatMap(read, (fresh) =>
      Effect.suspend(() => {
        table = fresh
        return Effect.logInfo(`user file ${options.path} reloaded: ${counted(fresh)}.`)
      }))
    /** Reload, or say in one line why the file was refused and that the previous users stay. */
    const reloadOrKeep = reload.pipe(
      Effect.catch((error) => Effect.logError(`${error.message}; refused, the previous users stay in force.`)),
    )
    yield* (yield* Hangup).onHangup(reloadOrKeep)
    if (options.watch) yield* Effect.forkScoped(watch(options.path, reloadOrKeep))

    const authenticate: AuthorizerShape["authenticate"] = (user, password, context) =>
      Effect.gen(function* () {
        const current = table
        const fail = (reason?: string) => Effect.fail(new AuthenticationFailed({ user, message: FAILED, reason }))
        if (user === "anonymous") {
          const entry = current.anonymous
          if (entry === undefined) {
            return yield* Effect.fail(new AuthenticationFailed({ user, message: "Anonymous access not allowed." }))
          }
          const why = refusal(entry, context?.remoteAddress)
          return why === undefined ? toAccount(user, entry) : yield* fail(why)
        }
        const entry = current.users.get(user)
        const matches = yield* Effect.promise(() => verifier.verify(password, entry?.file.password ?? current.dummy))
        if (entry === undefined) return yield* fail("no such user")
        if (!matches) return yield* fail()
        const why = refusal(entry, context?.remoteAddress)
        return why === undefined ? toAccount(user, entry) : yield* fail(why)
      })

    return {
      authenticate,
      hasPerm: (user, perm, path) => {
        const entry = user === "anonymous" ? table.anonymous : table.users.get(user)
        return entry !== undefined && permitted(entry.file.perm, entry.overrides, perm, path)
      },
      reload,
      users: () => [...table.users.keys(), ...(table.anonymous === undefined ? [] : ["anonymous"])],
    }
  })

/**
 * Reload whenever `path` changes. The file itself is watched, not its directory (which would need
 * read access to the whole directory); a file replaced by a rename (`ftpd users`, most editors)
 * leaves the old file's watch behind, so the watch starts anew after every change.
 */
const watch = (path: string, reload: Effect.Effect<void>): Effect.Effect<never> =>
  Effect.forever(
    Effect.gen(function* () {
      const changed = yield* Effect.acquireUseRelease(
        Effect.try(() => Deno.watchFs(path, { recursive: false })),
        (watcher) =>
          Effect.tryPromise(async () => {
            // Reading the file (a reload does) is an "access": only a change counts.
            for await (const event of watcher) if (event.kind !== "access") return true
            return false
          }),
        (watcher) => Effect.sync(() => watcher.close()),
      ).pipe(Effect.orElseSucceed(() => false))
      // Let a burst of writes settle (an editor writes, renames and sets modes in a row).
      yield* Effect.sleep(Duration.millis(changed ? 100 : 1000))
      if (changed) yield* reload
    }),
  )

/**
 * Users from a file of hashed passwords.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { FtpServer, LocalFilesystem, UserFileAuthorizer } from "@ftpd/server"
 * const users = UserFileAuthorizer.layer({ path: "/etc/ftpd/users.toml", watch: true })
 * const server = FtpServer.layer({ port: 2121 })
 * Layer.launch(server.pipe(Layer.provide([users, LocalFilesystem.layer]))).pipe(Effect.runFork)
 * ```
 */
export const UserFileAuthorizer: {
  /** The authorizer as a layer; a file that can't be used fails it with an {@link AuthorizerError}. */
  readonly layer: (options: UserFileOptions) => Layer.Layer<Authorizer, AuthorizerError>
  /** The authorizer, with `reload`, for as long as the scope is open. */
  readonly make: (options: UserFileOptions) => Effect.Effect<UserFileAuthorizerShape, AuthorizerError, Scope.Scope>
} = {
  layer: (options) => Layer.effect(Authorizer, make(options)),
  make,
}
