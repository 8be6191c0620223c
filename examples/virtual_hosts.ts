/**
 * Virtual hosts: one server, two sites (RFC 7151's HOST command).
 *
 * A client that sends `HOST b.example` before logging in gets site B's users and home; one that
 * sends no HOST gets site A, the default. Each site is a `DummyAuthorizer` of its own, so the same
 * user name can have a different password, home and permissions on each; an `Authorizer` made
 * here picks the site by the host the server passes in `LoginContext.host`. Hooks see the host in
 * `HookSession.host`: this example logs every login with it.
 *
 * ```sh
 * deno run --allow-net --allow-read=. --allow-write=. examples/virtual_hosts.ts
 * curl ftp://user:12345@localhost:2121/      # site A (no HOST sent): lists ./a.example
 * python3 -c "import ftplib; f = ftplib.FTP(); f.connect('localhost', 2121); print(f.sendcmd('HOST b.example')); \
 *   f.login('user', '67890'); f.retrlines('LIST')"   # site B: lists ./b.example
 * ```
 *
 * Flags: `--host` (default: all interfaces), `--port` (2121), `--directory` (the current one): the
 * sites' homes are its `a.example` and `b.example` folders, made if missing.
 *
 * @module
 */
import {
  type Account,
  AuthenticationFailed,
  Authorizer,
  type AuthorizerShape,
  DummyAuthorizer,
  FtpLogger,
  FtpServer,
  Hooks,
  LocalFilesystem,
  runMain,
} from "../mod.ts"
import { Effect, Layer } from "effect"
import { parseArgs } from "node:util"

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    host: { type: "string" },
    port: { type: "string", default: "2121" },
    directory: { type: "string", default: "." },
  },
})

const DEFAULT_SITE = "a.example"

/** Each site's own users: the same name, another password and home. */
const sites = new Map<string, DummyAuthorizer>()
for (const [site, password] of [["a.example", "12345"], ["b.example", "67890"]]) {
  const home = `${flags.directory}/${site}`
  Deno.mkdirSync(home, { recursive: true })
  sites.set(site, new DummyAuthorizer().addUser("user", password, home, { perm: "elradfmwMT" }))
}

/**
 * Logs a user in on the site the client named (or the default), as `user@site`: the server then
 * asks the permissions of `user@site`, which this authorizer sends to that site's users.
 */
const byHost: AuthorizerShape = {
  servesHost: (host) => Effect.succeed(sites.has(host)),
  authenticate: (user, password, context) => {
    const site = context?.host ?? DEFAULT_SITE
    const users = sites.get(site)
    if (users === undefined) return Effect.fail(new AuthenticationFailed({ user, message: "Unknown host." }))
    return Effect.map(
      users.authenticate(user, password),
      (account): Account => ({ ...account, user: `${user}@${site}` }),
    )
  },
  hasPerm: (qualified, perm, path) => {
    const at = qualified.lastIndexOf("@")
    return sites.get(qualified.slice(at + 1))?.hasPerm(qualified.slice(0, at), perm, path) ?? false
  },
}

const hooks = Hooks.layer({
  onLogin: (session, user) => Effect.log(`${user} logged in to ${session.host ?? `${DEFAULT_SITE} (no HOST)`}`),
})

runMain(
  FtpServer.serve({ host: flags.host, port: Number(flags.port) }).pipe(
    Effect.provide([Layer.succeed(Authorizer, byHost), LocalFilesystem.layer, hooks]),
    Effect.provide(FtpLogger.layer()),
  ),
)
