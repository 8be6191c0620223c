#!/usr/bin/env -S deno run --allow-net --allow-read=. --allow-ffi
import "./_no_async_hooks.ts"
/**
 * `ftpd`: pyftpdlib's command line (`python3 -m pyftpdlib`) under Deno's permission sandbox.
 *
 * ```sh
 * deno run --allow-net --allow-read=. --allow-write=. src/cli.ts -w -p 2121
 * ```
 *
 * Before it binds anything it checks, with `Deno.permissions.query`, that the process may listen
 * on the control and passive ports and read (and with `-w` write) the shared directory, and
 * prints one line per missing grant naming the flag that gives it. With `--tls` it also needs to
 * read the certificate and key, and to listen on `--implicit-tls-port`; a certificate or key that
 * is missing, does not parse or does not match the other stops it there too (exit 2).
 *
 * ```sh
 * deno run --allow-net --allow-read=. src/cli.ts --tls --certfile cert.pem --keyfile key.pem --tls-control-required
 * ```
 *
 * `-d memory:` serves an empty tree in memory, `-d s3://BUCKET[/PREFIX]` a bucket (with
 * `--s3-endpoint`, `--s3-region`, `--s3-path-style`, and the credentials of `AWS_ACCESS_KEY_ID`,
 * `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`), and `--mount AT=STORAGE[:ro]` adds more at
 * other paths:
 *
 * ```sh
 * deno run --allow-net --allow-read=/srv/pub --allow-env=AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY,AWS_SESSION_TOKEN \
 *   src/cli.ts -d s3://uploads/ftp --mount /pub=/srv/pub:ro
 * ```
 *
 * Users come from `-u`/`-P` (one user), `--users FILE` (a file of hashed passwords, managed with
 * `ftpd users add|passwd|del|list`) or `--unix-users` (the machine's accounts; root and
 * `--allow-ffi`).
 *
 * @module
 */
import * as Effect from "effect/Effect"
import { checkLogFiles, loadTls, missingPermissions, TlsFilesError, tracingFromEnvironment } from "./_cli_checks.ts"
import { type CliConfig, parseCli } from "./_cli_parse.ts"
import { checkS3, type MountSpec, s3Credentials, storageName } from "./_cli_storage.ts"
import { usersMain } from "./_users_cli.ts"
import type { DummyAuthorizer } from "./auth/dummy.ts"
import { AuthorizerError } from "./errors.ts"
import { availableJail } from "./fs/local.ts"
import type { TlsSettings } from "./net/tls.ts"
import type { OtlpSettings } from "./observability/tracing.ts"
import { runMain } from "./runtime.ts"
import { FtpServer } from "./server.ts"
import { runWorkers } from "./workers/coordinator.ts"
import { cliLogger, cliServices, type CliServicesData, dummyAuthorizer } from "./_cli_services.ts"

export {
  checkLogFiles,
  loadTls,
  missingPermissions,
  TlsFilesError,
  type TracingCheck,
  tracingFromEnvironment,
} from "./_cli_checks.ts"
export { type CliConfig, type CliParse, parseCli, type TlsFiles, type UnixUsers } from "./_cli_parse.ts"
export { parseUsers, type UsersCommand } from "./_users_cli.ts"

const usageError = (message: string): never => {
  console.error(`ftpd: error: ${message}`)
  console.error("Try 'ftpd --help'.")
  return Deno.exit(2)
}

/** A failure that is not a usage mistake (the port taken, a file that is wrong): one line, no hint. */
const startupError = (message: string): never => {
  console.error(`ftpd: error: ${message}`)
  return Deno.exit(2)
}

const serve = (config: CliConfig, authorizer: DummyAuthorizer | undefined, tracing: OtlpSettings | null) =>
  (config.workers === 1
    ? FtpServer.serve(config.options).pipe(Effect.provide(cliServices({ config, tracing }, { authorizer })))
    : Effect.scoped(
      Effect.andThen(
        runWorkers({
          workers: config.workers,
          module: new URL("./workers/cli_worker.ts", import.meta.url),
          options: config.options,
          data: { config, tracing } satisfies CliServicesData,
          // Each worker records its metrics; the main thread serves their sum.
          metrics: config.metrics,
        }),
        Effect.never,
      ),
    ).pipe(Effect.provide(cliLogger(config)))).pipe(
      // Every failure here is one to start (the server runs until interrupted): the port in use, an
      // address this machine does not have, a privileged port.
      Effect.catch((error) => Effect.sync(() => startupError(error.message))),
    )

/** The `ftpd` command: serve as `argv` says, or run `ftpd users`. */
export const main = async (argv: ReadonlyArray<string>): Promise<void> => {
  if (argv[0] === "users") return await usersMain(argv.slice(1))
  const parsed = parseCli(argv)
  if (parsed.kind === "error") return usageError(parsed.message)
  if (parsed.kind !== "run") return console.log(parsed.text)
  const { config } = parsed
  let tracing: Awaited<ReturnType<typeof tracingFromEnvironment>>
  try {
    tracing = await tracingFromEnvironment()
  } catch (error) {
    if (!(error instanceof RangeError)) throw error
    // A bad OTEL_* variable: not a flag, so no "Try 'ftpd --help'" hint.
    console.error(`ftpd: error: ${error.message}`)
    return Deno.exit(2)
  }
  const missing = [...await missingPermissions(config), ...tracing.missing]
  if (missing.length > 0) {
    for (const line of missing) console.error(line)
    return Deno.exit(2)
  }
  const badLogFile = checkLogFiles(config)
  if (badLogFile !== undefined) {
    console.error(`ftpd: error: ${badLogFile}`)
    return Deno.exit(2)
  }
  if (config.jail === "descriptor" && availableJail() !== "descriptor") {
    return usageError(`argument --jail: the descriptor jail needs Linux on x86_64 or aarch64 with glibc or musl`)
  }
  const workers = config.workers === "auto" ? navigator.hardwareConcurrency : config.workers
  const jail = config.jail === "auto" ? availableJail() : config.jail
  const local = [config.storage, ...config.mounts.map((mount) => mount.storage)].some((spec) => spec.kind === "local")
  if (workers > 1 && local && jail === "path") {
    return usageError(
      "argument --workers: the path jail keeps renames exclusive within one worker only; " +
        "workers need the descriptor jail (--allow-ffi, on Linux)",
    )
  }
  const mounts: MountSpec[] = []
  for (const mount of config.mounts) {
    if (mount.storage.kind !== "local") {
      mounts.push(mount)
      continue
    }
    // Stored canonical, as homes are: the jail compares real paths.
    const path = await Deno.realPath(mount.storage.path).catch(() => undefined)
    if (path === undefined || !(await Deno.stat(path)).isDirectory) {
      return usageError(`argument --mount: no such directory: '${mount.storage.path}'`)
    }
    mounts.push({ ...mount, storage: { kind: "local", path } })
  }
  const s3 = [config.storage, ...mounts.map((m) => m.storage)].filter((spec) => spec.kind === "s3")
  const credentials = s3.length > 0 ? s3Credentials() : undefined
  if (s3.length > 0 && credentials === undefined) {
    console.error("ftpd: error: s3:// storage needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment")
    return Deno.exit(2)
  }
  for (const spec of s3) {
    const problem = await checkS3(spec, { jail: config.jail, s3: config.s3, credentials })
    if (problem !== undefined) {
      console.error(`ftpd: error: ${storageName(spec)}: ${problem}`)
      return Deno.exit(2)
    }
  }
  let tls: TlsSettings | undefined
  try {
    tls = config.tls === null ? undefined : await loadTls(config.tls)
  } catch (error) {
    if (!(error instanceof TlsFilesError)) throw error
    return startupError(error.message)
  }
  // Users of -u/-P (or anonymous) are checked now: a -d that is not a directory is a usage mistake. A
  // user file or the system's users are read as the server starts (a bad file: one line, exit 2).
  let authorizer: DummyAuthorizer | undefined
  try {
    authorizer = config.users === null && config.unix === null ? dummyAuthorizer(config) : undefined
  } catch (error) {
    // The directory is the only thing here a user can get wrong: "no such directory: '/srv/ftp'".
    if (error instanceof AuthorizerError) return usageError(`argument -d/--directory: ${error.message}`)
    throw error
  }
  runMain(serve({ ...config, mounts, options: { ...config.options, tls } }, authorizer, tracing.settings))
}

if (import.meta.main) await main(Deno.args)
