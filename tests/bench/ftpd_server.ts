/**
 * Bench-only launcher for ftpd with FTPS, used while `src/cli.ts` has no `--tls` flags: it takes
 * the CLI's own flags (parsed by the CLI's `parseCli`, so every setting is the same as
 * `src/cli.ts` would use) plus `--tls --certfile PATH --keyfile PATH`, and serves through
 * `../../mod.ts` the way the CLI does (DummyAuthorizer with one user, LocalFilesystem, FtpLogger,
 * runMain).
 *
 * ```sh
 * deno run -A tests/bench/ftpd_server.ts -i 127.0.0.1 -p 2121 -d /srv -u bench -P bench -w \
 *   --tls --certfile cert.pem --keyfile key.pem
 * ```
 *
 * @module
 */
import {
  ALL_PERMISSIONS,
  DummyAuthorizer,
  FtpLogger,
  FtpServer,
  LocalFilesystem,
  READ_PERMISSIONS,
  runMain,
} from "../../mod.ts"
import { parseCli } from "../../src/cli.ts"
import * as Effect from "effect/Effect"

const argv = [...Deno.args]
const take = (flag: string, hasValue: boolean): string | boolean | undefined => {
  const at = argv.indexOf(flag)
  if (at < 0) return undefined
  const value = hasValue ? argv[at + 1] : true
  argv.splice(at, hasValue ? 2 : 1)
  return value
}
const tls = take("--tls", false) === true
const certfile = take("--certfile", true)
const keyfile = take("--keyfile", true)

const parsed = parseCli(argv)
if (parsed.kind !== "run") {
  console.error(parsed.kind === "error" ? `ftpd_server: ${parsed.message}` : parsed.text)
  Deno.exit(2)
}
const { config } = parsed
if (tls && (typeof certfile !== "string" || typeof keyfile !== "string")) {
  console.error("ftpd_server: --tls needs --certfile PATH and --keyfile PATH")
  Deno.exit(2)
}
const options = tls
  ? {
    ...config.options,
    tls: { cert: Deno.readTextFileSync(certfile as string), key: Deno.readTextFileSync(keyfile as string) },
  }
  : config.options
const perm = config.write ? ALL_PERMISSIONS : READ_PERMISSIONS
const authorizer = config.user === null
  ? new DummyAuthorizer().addAnonymous(config.directory, { perm })
  : new DummyAuthorizer().addUser(config.user.name, config.user.password, config.directory, { perm })

runMain(
  FtpServer.serve(options).pipe(
    Effect.provide([authorizer.toLayer(), LocalFilesystem.layer]),
    Effect.provide(FtpLogger.layer({ debug: config.debug })),
  ),
)
