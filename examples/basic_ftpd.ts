/**
 * A basic FTP server: pyftpdlib's demo/basic_ftpd.py on ftpd.
 *
 * Shares a directory with two virtual users: "user" (password "12345") may do everything, and
 * "anonymous" may only list and download. It sets a banner, a passive port range (open it in the
 * firewall; add `masqueradeAddress` when behind a NAT) and connection limits, and stops cleanly
 * on Ctrl-C.
 *
 * ```sh
 * deno run --allow-net --allow-read=. --allow-write=. examples/basic_ftpd.ts
 * curl ftp://user:12345@localhost:2121/          # list the current directory
 * ```
 *
 * Flags: `--host` (default: all interfaces), `--port` (2121), `--directory` (the current one),
 * `--passive-ports FROM-TO` (60000-60099).
 *
 * @module
 */
import { DummyAuthorizer, FtpLogger, FtpServer, LocalFilesystem, runMain, VERSION } from "../mod.ts"
import { Effect } from "effect"
import { parseArgs } from "node:util"

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    host: { type: "string" },
    port: { type: "string", default: "2121" },
    directory: { type: "string", default: "." },
    "passive-ports": { type: "string", default: "60000-60099" },
  },
})
const [from, to] = flags["passive-ports"].split("-").map(Number)

// A user with full read/write permissions and a read-only anonymous user, both in one directory.
const users = DummyAuthorizer.layer((authorizer) =>
  authorizer
    .addUser("user", "12345", flags.directory, { perm: "elradfmwMT" })
    .addAnonymous(flags.directory)
)

const server = FtpServer.serve({
  host: flags.host,
  port: Number(flags.port),
  // The greeting a client sees when it connects.
  banner: `ftpd ${VERSION} based ftpd ready.`,
  // Passive data connections use these ports; behind a NAT, also set masqueradeAddress: "151.25.42.11".
  passivePorts: [from, to],
  // At most 256 sessions in all and 5 from one address; the rest get a 421 reply.
  maxCons: 256,
  maxConsPerIp: 5,
})

runMain(
  server.pipe(
    Effect.provide([users, LocalFilesystem.layer]),
    // pyftpdlib's log format on standard error; outermost so the layers above log with it too.
    Effect.provide(FtpLogger.layer()),
  ),
)
