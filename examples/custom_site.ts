/**
 * Custom SITE commands: `SITE UPTIME` and `SITE WHOAMI` added through `siteCommands`.
 *
 * A SITE command is a row of data (name, help text, login and permission rule) plus a handler
 * that returns the reply; the server checks the login and the permission letter before the handler
 * runs, and lists the command with its help text in `SITE HELP`, next to the built-in CHMOD.
 *
 * ```sh
 * deno run --allow-net --allow-read=. --allow-write=. examples/custom_site.ts
 * curl -Q "SITE UPTIME" -Q "SITE HELP" -v ftp://user:12345@localhost:2121/
 * ```
 *
 * Flags: `--host` (default: all interfaces), `--port` (2121), `--directory` (the current one).
 *
 * @module
 */
import { DummyAuthorizer, FtpLogger, FtpServer, LocalFilesystem, runMain, type SiteCommand } from "../mod.ts"
import { Effect } from "effect"
import { parseArgs } from "node:util"

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    host: { type: "string" },
    port: { type: "string", default: "2121" },
    directory: { type: "string", default: "." },
  },
})

const startedAt = Date.now()

const uptime: SiteCommand = {
  name: "UPTIME",
  help: "Syntax: SITE UPTIME (show how long the server has been running).",
  handler: () => Effect.sync(() => ({ code: 200, text: `Up ${Math.floor((Date.now() - startedAt) / 1000)} seconds.` })),
}

const whoami: SiteCommand = {
  name: "WHOAMI",
  help: "Syntax: SITE WHOAMI (show your user name, address and directory).",
  // Only for users with the "l" (list) permission on their current directory; others get 550.
  perm: "l",
  handler: ({ user, remoteAddress, cwd }) =>
    Effect.succeed({ code: 200, text: `You are ${user} from ${remoteAddress}, in ${cwd}.` }),
}

const users = DummyAuthorizer.layer((authorizer) =>
  authorizer.addUser("user", "12345", flags.directory, { perm: "elradfmwMT" })
)

runMain(
  FtpServer.serve({ host: flags.host, port: Number(flags.port), siteCommands: [uptime, whoami] }).pipe(
    Effect.provide([users, LocalFilesystem.layer]),
    Effect.provide(FtpLogger.layer()),
  ),
)
