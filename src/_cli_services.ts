/**
 * The services the command line serves with: an authorizer for its one user (or anonymous), the
 * jailed local filesystem, and the pyftpdlib-format logger. One place, so that a server and each
 * of its workers build the same ones.
 *
 * @module
 */
import * as Layer from "effect/Layer"
import type { CliConfig } from "./_cli_parse.ts"
import { ALL_PERMISSIONS, type Authorizer, READ_PERMISSIONS } from "./auth/authorizer.ts"
import { DummyAuthorizer } from "./auth/dummy.ts"
import type { AuthorizerError, FilesystemError } from "./errors.ts"
import type { Filesystem } from "./fs/filesystem.ts"
import { LocalFilesystem } from "./fs/local.ts"
import { FtpLogger } from "./log.ts"

/**
 * The authorizer of `config`: its `-u` user, or anonymous, with the permissions of `-w`. Throws
 * `AuthorizerError` when the shared directory does not exist.
 */
export const cliAuthorizer = (config: CliConfig): DummyAuthorizer => {
  const perm = config.write ? ALL_PERMISSIONS : READ_PERMISSIONS
  return config.user === null
    ? new DummyAuthorizer().addAnonymous(config.directory, { perm })
    : new DummyAuthorizer().addUser(config.user.name, config.user.password, config.directory, { perm })
}

/** The authorizer, filesystem and logger of `config`, as one layer. */
export const cliServices = (
  config: CliConfig,
  authorizer: DummyAuthorizer = cliAuthorizer(config),
): Layer.Layer<Authorizer | Filesystem, AuthorizerError | FilesystemError> =>
  Layer.mergeAll(authorizer.toLayer(), LocalFilesystem.layerWith({ jail: config.jail })).pipe(
    // Outermost, so that the authorizer's warnings, logged while its layer is built, use it too.
    Layer.provideMerge(FtpLogger.layer({ debug: config.debug })),
  )
