/**
 * An FTPS server: pyftpdlib's demo/tls_ftpd.py on ftpd, with implicit FTPS as well.
 *
 * Shares a directory with "user" (password "12345", every permission) and read-only anonymous
 * access. Clients secure the control connection with AUTH TLS on the control port (explicit FTPS)
 * or connect to the implicit port, where TLS starts at once. Logging in without TLS is refused
 * (`tlsControlRequired`); add `tlsDataRequired: true` to refuse clear data connections too.
 *
 * Make a self-signed certificate for a test (clients must then trust it, or skip the check):
 *
 * ```sh
 * openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
 *   -subj /CN=localhost -addext subjectAltName=DNS:localhost -addext basicConstraints=critical,CA:FALSE \
 *   -keyout key.pem -out cert.pem
 * deno run --allow-net --allow-read=. --allow-write=. examples/tls_ftpd.ts --certfile cert.pem --keyfile key.pem
 * curl --ssl-reqd --cacert cert.pem ftp://user:12345@localhost:2121/     # explicit FTPS (AUTH TLS)
 * curl --cacert cert.pem ftps://user:12345@localhost:2990/               # implicit FTPS
 * ```
 *
 * Flags: `--certfile PATH` (required), `--keyfile PATH` (default: the certfile, holding both),
 * `--host` (default: all interfaces), `--port` (2121), `--implicit-port` (2990; 990 is the usual
 * port, which needs privileges), `--directory` (the current one).
 *
 * @module
 */
import { DummyAuthorizer, FtpLogger, FtpServer, LocalFilesystem, runMain } from "../mod.ts"
import { Effect } from "effect"
import { parseArgs } from "node:util"

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    certfile: { type: "string" },
    keyfile: { type: "string" },
    host: { type: "string" },
    port: { type: "string", default: "2121" },
    "implicit-port": { type: "string", default: "2990" },
    directory: { type: "string", default: "." },
  },
})
if (flags.certfile === undefined) {
  console.error("tls_ftpd: --certfile PATH is required (a PEM certificate, and its key unless --keyfile is given)")
  Deno.exit(2)
}

const users = DummyAuthorizer.layer((authorizer) =>
  authorizer
    .addUser("user", "12345", flags.directory, { perm: "elradfmwMT" })
    .addAnonymous(flags.directory)
)

const server = FtpServer.serve({
  host: flags.host,
  port: Number(flags.port),
  // PEM text; a key that does not match the certificate stops the server here, not at the first AUTH TLS.
  tls: {
    cert: await Deno.readTextFile(flags.certfile),
    key: await Deno.readTextFile(flags.keyfile ?? flags.certfile),
  },
  implicitTlsPort: Number(flags["implicit-port"]),
  // USER and PASS only over TLS: passwords never cross the network in clear.
  tlsControlRequired: true,
})

runMain(
  server.pipe(
    Effect.provide([users, LocalFilesystem.layer]),
    Effect.provide(FtpLogger.layer()),
  ),
)
