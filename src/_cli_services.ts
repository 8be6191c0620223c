/**
 * The services the command line serves with: an authorizer (its one user or anonymous, a user
 * file, or the system's users), the
 * storage of `-d` and `--mount` (the jailed local filesystem by default), metrics and traces when
 * asked for, and the logger. One place, so that a server and each of its workers build the same ones.
 *
 * @module
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { CliConfig } from "./_cli_parse.ts"
import { ALL_PERMISSIONS, type Authorizer, READ_PERMISSIONS } from "./auth/authorizer.ts"
import { DummyAuthorizer } from "./auth/dummy.ts"
import { UnixAuthorizer } from "./auth/unix.ts"
import { UserFileAuthorizer } from "./auth/user_file.ts"
import type { AuthorizerError, FilesystemError } from "./errors.ts"
import { Filesystem } from "./fs/filesystem.ts"
import { makeStorage, s3Credentials } from "./_cli_storage.ts"
import { FtpLogger } from "./log.ts"
import { FtpMetrics } from "./observability/metrics.ts"
import { type OtlpSettings, otlpTracing } from "./observability/tracing.ts"

/** What the services are built from (plain data: workers get a copy). */
export interface CliServicesData {
  readonly config: CliConfig
  /** Where traces go (`OTEL_*`), if anywhere. */
  readonly tracing: OtlpSettings | null
}

/**
 * The authorizer of `-u`/`-P`, or anonymous, with the permissions of `-w`. Throws
 * `AuthorizerError` when the shared directory does not exist.
 */
export const dummyAuthorizer = (config: CliConfig): DummyAuthorizer => {
  const perm = config.write ? ALL_PERMISSIONS : READ_PERMISSIONS
  // `memory:/` and `s3://...` homes are names in that storage, not directories on this disk.
  const users = new DummyAuthorizer({ localHomes: config.storage.kind === "local" })
  return config.user === null
    ? users.addAnonymous(config.directory, { perm })
    : users.addUser(config.user.name, config.user.password, config.directory, { perm })
}

/**
 * The authorizer `config` asks for: a user file (`--users`), the system's users (`--unix-users`),
 * or `dummy` (made by {@link dummyAuthorizer} if not given).
 */
export const cliAuthorizer = (
  config: CliConfig,
  dummy?: DummyAuthorizer,
): Layer.Layer<Authorizer, AuthorizerError> => {
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
  return Layer.unwrap(
    Effect.try({ try: () => (dummy ?? dummyAuthorizer(config)).toLayer(), catch: (error) => error as AuthorizerError }),
  )
}

/** The logger of `config`: its format and file, and `-D`. */
export const cliLogger = (config: CliConfig) =>
  FtpLogger.layer({ debug: config.debug, format: config.logFormat, file: config.logFile })

/**
 * The authorizer, filesystem, logger and monitoring of `config`, as one layer. The S3 credentials,
 * if its storage needs them, come from the environment (see `s3Credentials`). `serveMetrics`:
 * whether `--metrics` is served here too, or only recorded (a worker's: the main thread serves the
 * sum of all workers').
 */
export const cliServices = (
  { config, tracing }: CliServicesData,
  { authorizer, serveMetrics = true }: {
    readonly authorizer?: DummyAuthorizer
    readonly serveMetrics?: boolean
  } = {},
): Layer.Layer<Authorizer | Filesystem, AuthorizerError | FilesystemError | Error> =>
  Layer.mergeAll(
    cliAuthorizer(config, authorizer),
    Layer.effect(
      Filesystem,
      Effect.tryPromise({
        try: () =>
          makeStorage(config.storage, config.mounts, {
            jail: config.jail,
            s3: config.s3,
            // Read only for s3:// storage: the environment is not granted otherwise.
            credentials: [config.storage, ...config.mounts.map((m) => m.storage)].some((spec) => spec.kind === "s3")
              ? s3Credentials()
              : undefined,
          }),
        catch: (error) => error as FilesystemError,
      }),
    ),
    config.metrics === undefined ? Layer.empty : FtpMetrics.layer,
    config.metrics === undefined || !serveMetrics ? Layer.empty : FtpMetrics.layerPrometheus(config.metrics),
    tracing === null ? Layer.empty : otlpTracing(tracing),
  ).pipe(
    // Outermost, so that the authorizer's warnings, logged while its layer is built, use it too.
    Layer.provideMerge(cliLogger(config)),
  )
