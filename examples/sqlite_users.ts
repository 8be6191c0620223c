/**
 * A custom authorizer over a real database: users in SQLite (Deno's built-in `node:sqlite`), with
 * hashed passwords, checked in password workers so that a login never holds up other sessions.
 *
 * The table is `users(name TEXT PRIMARY KEY, hash TEXT, home TEXT, perm TEXT)`; `home` is relative
 * to `--directory`. On first start, with an empty table, it adds "user" (password "12345", every
 * permission, the directory itself). Users added to the database while the server runs can log in
 * at once: every login and every permission check reads the table. A program adding users makes
 * their hashes with `hashPassword` (argon2id) from the package.
 *
 * ```sh
 * deno run --allow-net --allow-read=. --allow-write=. examples/sqlite_users.ts --db users.db
 * curl ftp://user:12345@localhost:2121/
 * ```
 *
 * Flags: `--host` (default: all interfaces), `--port` (2121), `--directory` (the current one),
 * `--db` (`users.db`).
 *
 * @module
 */
import {
  type Account,
  AuthenticationFailed,
  Authorizer,
  type AuthorizerShape,
  FtpLogger,
  FtpServer,
  LocalFilesystem,
  makePasswordVerifier,
  runMain,
} from "../mod.ts"
import { Effect, Layer } from "effect"
import { DatabaseSync } from "node:sqlite"
import { resolve } from "node:path"
import { parseArgs } from "node:util"

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    host: { type: "string" },
    port: { type: "string", default: "2121" },
    directory: { type: "string", default: "." },
    db: { type: "string", default: "users.db" },
  },
})
const root = resolve(flags.directory)

interface Row {
  readonly hash: string
  readonly home: string
  readonly perm: string
}

const sqliteUsers = (path: string): Layer.Layer<Authorizer> =>
  Layer.effect(
    Authorizer,
    Effect.gen(function* () {
      const db = yield* Effect.acquireRelease(
        Effect.sync(() => new DatabaseSync(path)),
        (db) => Effect.sync(() => db.close()),
      )
      db.exec("CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, hash TEXT, home TEXT, perm TEXT)")
      const verifier = yield* makePasswordVerifier()
      const empty = (db.prepare("SELECT count(*) AS n FROM users").get() as { n: number }).n === 0
      if (empty) {
        const hash = yield* Effect.promise(() => verifier.hash("12345"))
        db.prepare("INSERT INTO users VALUES (?, ?, ?, ?)").run("user", hash, ".", "elradfmwMT")
        yield* Effect.logInfo(`added user "user" to ${path}`)
      }
      const find = db.prepare("SELECT hash, home, perm FROM users WHERE name = ?")
      // Checked for names that are not in the table, so that they cost what a wrong password does.
      const dummy = yield* Effect.promise(() => verifier.hash(crypto.randomUUID()))
      const row = (name: string) => find.get(name) as Row | undefined

      const authenticate: AuthorizerShape["authenticate"] = (user, password) =>
        Effect.gen(function* () {
          const found = row(user)
          const ok = yield* Effect.promise(() => verifier.verify(password, found?.hash ?? dummy))
          if (found === undefined || !ok) {
            return yield* Effect.fail(new AuthenticationFailed({ user, message: "Authentication failed." }))
          }
          const account: Account = {
            user,
            home: resolve(root, found.home),
            msgLogin: "Login successful.",
            msgQuit: "Goodbye.",
          }
          return account
        })
      return { authenticate, hasPerm: (user, perm) => row(user)?.perm.includes(perm) ?? false }
    }),
  )

runMain(
  FtpServer.serve({ host: flags.host, port: Number(flags.port) }).pipe(
    Effect.provide([sqliteUsers(resolve(flags.db)), LocalFilesystem.layer]),
    Effect.provide(FtpLogger.layer()),
  ),
)
