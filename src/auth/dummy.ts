/**
 * `DummyAuthorizer`: virtual users kept in memory, pyftpdlib's `DummyAuthorizer` in Effect form.
 * (Over 400 lines: one public class, most of it the JSDoc and example of each method.)
 *
 * @module
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { AuthenticationFailed, AuthorizerError } from "../errors.ts"
import { type Account, ALL_PERMISSIONS, Authorizer, type AuthorizerShape, WRITE_PERMISSIONS } from "./authorizer.ts"
import { existingDirectory, isDirectory, isSubpath, mostSpecificFirst, type Override, permitted } from "./_overrides.ts"
import { samePassword } from "./_compare.ts"

/** What `addUser` and `addAnonymous` accept besides the name, password and home. */
export interface UserOptions {
  /** Permission letters (see {@link ALL_PERMISSIONS}); default `"elr"` (read only). */
  readonly perm?: string
  /** Text of the 230 reply after a successful login; default `"Login successful."`. */
  readonly msgLogin?: string
  /** Text of the 221 reply to QUIT; default `"Goodbye."`. */
  readonly msgQuit?: string
}

interface UserEntry {
  readonly password: string
  readonly home: string
  readonly perm: string
  readonly msgLogin: string
  readonly msgQuit: string
  /** Real directory → override. */
  readonly overrides: Map<string, Override>
  /** The overrides, most specific first (see `permitted`). */
  sorted: Override[]
}

/** Options of a {@link DummyAuthorizer}. */
export interface DummyAuthorizerOptions {
  /**
   * Whether homes and override directories are directories on the local disk (the default): each
   * must exist, and is stored canonical. Set it to `false` for storage that is not the local disk
   * (`memory:/alice`, `s3://bucket/alice`): they are then names in that storage, taken as given,
   * and a non-recursive override also covers the subdirectories directly in its directory (the
   * disk is not asked which entries are directories).
   */
  readonly localHomes?: boolean
}

const ANONYMOUS = "anonymous"
/** Users named in {@link DummyAuthorizer.description}; a banner line stays a line. */
const DESCRIBED_USERS = 5
const FAILED = "Authentication failed."

/**
 * In-memory virtual users with pyftpdlib's permission letters and per-directory overrides.
 *
 * The builder methods validate as pyftpdlib does and throw {@link AuthorizerError}; they return
 * `this`, so a configuration reads as one chain. Users may be added and removed while a server runs
 * (keep the instance and provide it with {@link DummyAuthorizer.toLayer}).
 *
 * @example
 * ```ts
 * import { DummyAuthorizer } from "@ftpd/server"
 * const auth = new DummyAuthorizer()
 *   .addUser("user", "12345", Deno.cwd(), { perm: "elradfmwMT" })
 *   .addAnonymous(Deno.cwd())
 * console.log(auth.hasPerm("anonymous", "w", Deno.cwd())) // false
 * ```
 */
export class DummyAuthorizer {
  /**
   * A layer that builds a fresh authorizer with `build`; a validation error thrown while building
   * fails the layer with {@link AuthorizerError}. Warnings are logged when the layer is built.
   *
   * @example
   * ```ts
   * import { DummyAuthorizer } from "@ftpd/server"
   * const users = DummyAuthorizer.layer((a) =>
   *   a.addUser("user", "12345", Deno.cwd(), { perm: "elradfmwMT" }).addAnonymous(Deno.cwd())
   * )
   * ```
   */
  static layer(
    build: (authorizer: DummyAuthorizer) => DummyAuthorizer,
    options: DummyAuthorizerOptions = {},
  ): Layer.Layer<Authorizer, AuthorizerError> {
    return Layer.unwrap(
      Effect.try({
        try: () => build(new DummyAuthorizer(options)).toLayer(),
        catch: (e) => e instanceof AuthorizerError ? e : new AuthorizerError({ message: String(e) }),
      }),
    )
  }

  /**
   * Configuration warnings (write permissions given to the anonymous user), in the order they arose.
   *
   * @example
   * ```ts
   * import { DummyAuthorizer } from "@ftpd/server"
   * console.log(new DummyAuthorizer().addAnonymous(Deno.cwd(), { perm: "elrw" }).warnings)
   * ```
   */
  readonly warnings: string[] = []

  readonly #users = new Map<string, UserEntry>()
  readonly #localHomes: boolean

  /**
   * An authorizer with no users yet.
   *
   * @example
   * ```ts
   * import { DummyAuthorizer } from "@ftpd/server"
   * const users = new DummyAuthorizer({ localHomes: false }).addUser("bob", "pw", "memory:/bob")
   * ```
   */
  constructor(options: DummyAuthorizerOptions = {}) {
    this.#localHomes = options.localHomes ?? true
  }

  /** A home or override directory as stored: canonical on the local disk, else as given. */
  #directory(path: string): string {
    if (this.#localHomes) return existingDirectory(path)
    if (path === "") throw new AuthorizerError({ message: "a home must not be empty" })
    return path.length > 1 && !path.endsWith(":/") ? path.replace(/\/+$/, "") : path
  }

  /**
   * Add a virtual user. `home` must be an existing directory; it is stored canonical (symlinks
   * resolved). Throws {@link AuthorizerError} for a duplicate user, a missing home or an unknown
   * permission letter.
   *
   * @example
   * ```ts
   * import { DummyAuthorizer } from "@ftpd/server"
   * new DummyAuthorizer().addUser("bob", "secret", Deno.cwd(), { perm: "elrw", msgLogin: "Hi Bob." })
   * ```
   */
  addUser(name: string, password: string, home: string, options: UserOptions = {}): this {
    if (this.#users.has(name)) throw new AuthorizerError({ message: `user '${name}' already exists` })
    const realHome = this.#directory(home)
    const perm = options.perm ?? "elr"
    this.#checkPermissions(name, perm)
    this.#users.set(name, {
      password,
      home: realHome,
      perm,
      msgLogin: options.msgLogin ?? "Login successful.",
      msgQuit: options.msgQuit ?? "Goodbye.",
      overrides: new Map(),
      sorted: [],
    })
    return this
  }

  /**
   * Add the `anonymous` user, who logs in with any password. Write letters are allowed but
   * recorded in {@link DummyAuthorizer.warnings}.
   *
   * @example
   * ```ts
   * import { DummyAuthorizer } from "@ftpd/server"
   * new DummyAuthorizer().addAnonymous(Deno.cwd(), { msgLogin: "Welcome, guest." })
   * ```
   */
  addAnonymous(home: string, options: UserOptions = {}): this {
    return this.addUser(ANONYMOUS, "", home, options)
  }

  /**
   * Remove a user; sessions already logged in keep running. Throws for an unknown user.
   *
   * @example
   * ```ts
   * import { DummyAuthorizer } from "@ftpd/server"
   * new DummyAuthorizer().addUser("bob", "pw", Deno.cwd()).removeUser("bob")
   * ```
   */
  removeUser(name: string): this {
    this.#entry(name)
    this.#users.delete(name)
    return this
  }

  /**
   * Give `user` the permissions `perm` in `directory` (a real path inside the user's home, not the
   * home itself). Without `recursive` the override covers the directory and the files directly in
   * it, not its subdirectories; with it, the whole tree.
   *
   * @example
   * ```ts
   * import { DummyAuthorizer } from "@ftpd/server"
   * const home = Deno.makeTempDirSync()
   * Deno.mkdirSync(`${home}/upload`)
   * new DummyAuthorizer().addUser("bob", "pw", home).overridePerm("bob", `${home}/upload`, "elrw", true)
   * ```
   */
  overridePerm(user: string, directory: string, perm: string, recursive = false): this {
    const entry = this.#entry(user)
    this.#checkPermissions(user, perm)
    const dir = this.#directory(directory)
    if (dir === entry.home) throw new AuthorizerError({ message: "can't override home directory permissions" })
    if (!isSubpath(dir, entry.home)) throw new AuthorizerError({ message: "Path escapes user home directory" })
    entry.overrides.set(dir, { dir, perm, recursive })
    entry.sorted = mostSpecificFirst(entry.overrides.values())
    return this
  }

  /**
   * Whether a user of that name exists.
   *
   * @example
   * ```ts
   * import { DummyAuthorizer } from "@ftpd/server"
   * console.log(new DummyAuthorizer().hasUser("bob")) // false
   * ```
   */
  hasUser(name: string): boolean {
    return this.#users.has(name)
  }

  /**
   * The user's global permission letters. Throws for an unknown user.
   *
   * @example
   * ```ts
   * import { DummyAuthorizer } from "@ftpd/server"
   * console.log(new DummyAuthorizer().addUser("bob", "pw", Deno.cwd()).getPerms("bob")) // "elr"
   * ```
   */
  getPerms(name: string): string {
    return this.#entry(name).perm
  }

  /**
   * Whether `user` may do `perm` on the real path `path`; without a path, whether the user's global
   * letters include it. Overrides apply most specific directory first (pyftpdlib semantics); an
   * unknown user has no permission.
   *
   * @example
   * ```ts
   * import { DummyAuthorizer } from "@ftpd/server"
   * const auth = new DummyAuthorizer().addUser("bob", "pw", Deno.cwd())
   * console.log(auth.hasPerm("bob", "r", Deno.cwd()), auth.hasPerm("bob", "w")) // true false
   * ```
   */
  hasPerm(user: string, perm: string, path?: string): boolean {
    const entry = this.#users.get(user)
    // Homes elsewhere than this disk (memory, S3) are not looked up here: a path counts as a file.
    return entry !== undefined &&
      permitted(entry.perm, entry.sorted, perm, path, this.#localHomes ? isDirectory : () => false)
  }

  /**
   * The user's canonical home directory. Throws for an unknown user.
   *
   * @example
   * ```ts
   * import { DummyAuthorizer } from "@ftpd/server"
   * console.log(new DummyAuthorizer().addUser("bob", "pw", ".").getHomeDir("bob"))
   * ```
   */
  getHomeDir(name: string): string {
    return this.#entry(name).home
  }

  /**
   * The text sent after the user logs in. Throws for an unknown user.
   *
   * @example
   * ```ts
   * import { DummyAuthorizer } from "@ftpd/server"
   * console.log(new DummyAuthorizer().addUser("bob", "pw", ".").getMsgLogin("bob")) // "Login successful."
   * ```
   */
  getMsgLogin(name: string): string {
    return this.#entry(name).msgLogin
  }

  /**
   * The text sent when the user quits. Throws for an unknown user.
   *
   * @example
   * ```ts
   * import { DummyAuthorizer } from "@ftpd/server"
   * console.log(new DummyAuthorizer().addUser("bob", "pw", ".").getMsgQuit("bob")) // "Goodbye."
   * ```
   */
  getMsgQuit(name: string): string {
    return this.#entry(name).msgQuit
  }

  /**
   * Check a user name and password. `anonymous` accepts any password; the comparison takes the
   * same time whether the user exists or not and wherever the passwords differ.
   *
   * @example
   * ```ts
   * import * as Effect from "effect/Effect"
   * import { DummyAuthorizer } from "@ftpd/server"
   * const auth = new DummyAuthorizer().addUser("bob", "pw", Deno.cwd())
   * const account = await Effect.runPromise(auth.authenticate("bob", "pw"))
   * console.log(account.home)
   * ```
   */
  authenticate(user: string, password: string): Effect.Effect<Account, AuthenticationFailed> {
    return Effect.suspend(() => {
      const entry = this.#users.get(user)
      if (entry === undefined && user === ANONYMOUS) {
        return Effect.fail(new AuthenticationFailed({ user, message: "Anonymous access not allowed." }))
      }
      const account = (e: UserEntry): Account => ({
        user,
        home: e.home,
        msgLogin: e.msgLogin,
        msgQuit: e.msgQuit,
      })
      if (entry !== undefined && user === ANONYMOUS) return Effect.succeed(account(entry))
      const same = samePassword(password, entry?.password ?? "")
      return entry !== undefined && same
        ? Effect.succeed(account(entry))
        : Effect.fail(new AuthenticationFailed({ user, message: FAILED }))
    })
  }

  /**
   * Who may log in, where and with which letters, by home directory, as the start banner says it
   * (the first 5 users named, the rest counted).
   *
   * @example
   * ```ts
   * import { DummyAuthorizer } from "@ftpd/server"
   * const auth = new DummyAuthorizer().addAnonymous("/tmp").addUser("bob", "pw", "/tmp", { perm: "elradfmwMT" })
   * console.log(auth.description) // "/tmp: anonymous read-only (elr), user bob read-write (elradfmwMT)"
   * ```
   */
  get description(): string {
    if (this.#users.size === 0) return "no users"
    const byHome = new Map<string, string[]>()
    for (const [name, entry] of [...this.#users].slice(0, DESCRIBED_USERS)) {
      const who = name === ANONYMOUS ? name : `user ${name}`
      const access = [...WRITE_PERMISSIONS].some((p) => entry.perm.includes(p)) ? "read-write" : "read-only"
      const n = entry.overrides.size
      const overrides = n === 0 ? "" : `, other letters in ${n} ${n === 1 ? "directory" : "directories"}`
      const users = byHome.get(entry.home) ?? byHome.set(entry.home, []).get(entry.home)!
      users.push(`${who} ${access} (${entry.perm}${overrides})`)
    }
    const more = this.#users.size - DESCRIBED_USERS
    return [...byHome].map(([home, users]) => `${home}: ${users.join(", ")}`).join("; ") +
      (more > 0 ? `; and ${more} more ${more === 1 ? "user" : "users"}` : "")
  }

  /**
   * A layer providing this instance as the {@link Authorizer}; later `addUser`/`removeUser` calls
   * take effect for new logins. Warnings are logged when the layer is built.
   *
   * @example
   * ```ts
   * import { DummyAuthorizer } from "@ftpd/server"
   * const auth = new DummyAuthorizer().addUser("bob", "pw", Deno.cwd())
   * const layer = auth.toLayer()
   * auth.addUser("alice", "pw2", Deno.cwd()) // alice can log in too
   * ```
   */
  toLayer(): Layer.Layer<Authorizer> {
    const describe = () => this.description
    const shape: AuthorizerShape = {
      authenticate: (user, password) => this.authenticate(user, password),
      hasPerm: (user, perm, path) => this.hasPerm(user, perm, path),
      get description() {
        return describe()
      },
    }
    return Layer.effect(
      Authorizer,
      Effect.forEach(this.warnings, (w) => Effect.logWarning(w), { discard: true }).pipe(Effect.as(shape)),
    )
  }

  #entry(name: string): UserEntry {
    const entry = this.#users.get(name)
    if (entry === undefined) throw new AuthorizerError({ message: `no such user '${name}'` })
    return entry
  }

  #checkPermissions(user: string, perm: string): void {
    let warned = false
    for (const p of perm) {
      if (!ALL_PERMISSIONS.includes(p)) throw new AuthorizerError({ message: `no such permission '${p}'` })
      if (user === ANONYMOUS && WRITE_PERMISSIONS.includes(p) && !warned) {
        this.warnings.push("write permissions assigned to anonymous user.")
        warned = true
      }
    }
  }
}
