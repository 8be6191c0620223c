#!/usr/bin/env -S deno run --allow-net --allow-read=. --allow-write=.
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
 * Users come from `-u`/`-P` (one user), `--users FILE` (a file of hashed passwords, managed with
 * `ftpd users add|passwd|del|list`) or `--unix-users` (the machine's accounts; root and
 * `--allow-ffi`).
 *
 * @module
 */
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import { loadTls, missingPermissions, TlsFilesError } from "./_cli_checks.ts"
import { type CliConfig, parseCli } from "./_cli_parse.ts"
import { usersMain } from "./_users_cli.ts"
import { ALL_PERMISSIONS, type Authorizer, READ_PERMISSIONS } from "./auth/authorizer.ts"
import { DummyAuthorizer } from "./auth/dummy.ts"
import { UnixAuthorizer } from "./auth/unix.ts"
import { UserFileAuthorizer } from "./auth/user_file.ts"
import { AuthorizerError } from "./errors.ts"
import { availableJail, LocalFilesystem } from "./fs/local.ts"
import { FtpLogger } from "./log.ts"
import type { TlsSettings } from "./net/tls.ts"
import { runMain } from "./runtime.ts"
import { FtpServer } from "./server.ts"

export { loadTls, missingPermissions, TlsFilesError } from "./_cli_checks.ts"
export { type CliConfig, type CliParse, parseCli, type TlsFiles, type UnixUsers } from "./_cli_parse.ts"
export { parseUsers, type UsersCommand } from "./_users_cli.ts"

const usageError = (message: string): never => {
  console.error(`ftpd: error: ${message}`)
  console.error("Try 'ftpd --help'.")
  return Deno.exit(2)
}

/** Exit 2 with the message of an authorizer that can't start (a bad user file, an unknown system user). */
const refused = (error: AuthorizerError) =>
  Effect.sync(() => {
    console.error(`ftpd: error: ${error.message}`)
    return Deno.exit(2)
  })

const serve = (config: CliConfig, authorizer: Layer.Layer<Authorizer, AuthorizerError>) =>
  FtpServer.serve(config.options).pipe(
    Effect.provide([authorizer, LocalFilesystem.layerWith({ jail: config.jail })]),
    Effect.catchTag("AuthorizerError", refused),
    // Outermost, so that the authorizer's warnings, logged while its layer is built, use it too.
    Effect.provide(FtpLogger.layer({ debug: config.debug })),
  )

/** The authorizer the command line asks for; a usage error for a bad `-d`. */
const authorizerOf = (config: CliConfig): Layer.Layer<Authorizer, AuthorizerError> => {
  if (config.users !== null) return UserFileAuthorizer.layer({ path: config.users.file, watch: config.users.watch })
  if (config.unix !== null) {
    const { allowedUsers, rejectedUsers, anonymousUser, requireValidShell, jail } = config.unix
    return UnixAuthorizer.layer({
      allowedUsers,
      rejectedUsers,
      requireValidShell,
      jail,
      ...(anonymousUser === null ? {} : { anonymousUser }),
    })
  }
  const perm = config.write ? ALL_PERMISSIONS : READ_PERMISSIONS
  try {
    return (config.user === null
      ? new DummyAuthorizer().addAnonymous(config.directory, { perm })
      : new DummyAuthorizer().addUser(config.user.name, config.user.password, config.directory, { perm })).toLayer()
  } catch (error) {
    // The directory is the only thing here a user can get wrong: "no such directory: '/srv/ftp'".
    if (error instanceof AuthorizerError) return usageError(`argument -d/--directory: ${error.message}`)
    throw error
  }
}

const main = async (argv: ReadonlyArray<string>): Promise<void> => {
  if (argv[0] === "users") return await usersMain(argv.slice(1))
  const parsed = parseCli(argv)
  if (parsed.kind === "error") return usageError(parsed.message)
  if (parsed.kind !== "run") return console.log(parsed.text)
  const { config } = parsed
  const missing = await missingPermissions(config)
  if (missing.length > 0) {
    for (const line of missing) console.error(line)
    return Deno.exit(2)
  }
  if (config.jail === "descriptor" && availableJail() !== "descriptor") {
    return usageError(`argument --jail: the descriptor jail needs Linux on x86_64 or aarch64 with glibc or musl`)
  }
  let tls: TlsSettings | undefined
  try {
    tls = config.tls === null ? undefined : await loadTls(config.tls)
  } catch (error) {
    if (!(error instanceof TlsFilesError)) throw error
    // Not a usage mistake: the files are wrong, so no "Try 'ftpd --help'" hint.
    console.error(`ftpd: error: ${error.message}`)
    return Deno.exit(2)
  }
  runMain(serve({ ...config, options: { ...config.options, tls } }, authorizerOf(config)))
}

if (import.meta.main) await main(Deno.args)
