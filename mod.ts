/**
 * ftpd: an FTP server library for Deno, built on Effect.
 *
 * A server needs an {@link Authorizer} (who may log in, with which permissions) and a
 * {@link Filesystem} (what they see); both are services provided by layers.
 *
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { DummyAuthorizer, FtpServer, LocalFilesystem } from "@ftpd/server"
 *
 * const users = DummyAuthorizer.layer((a) =>
 *   a.addUser("user", "12345", Deno.cwd(), { perm: "elradfmwMT" }).addAnonymous(Deno.cwd())
 * )
 * const server = FtpServer.layer({ host: "127.0.0.1", port: 2121, passivePorts: [60000, 60099] })
 * Layer.launch(server.pipe(Layer.provide([users, LocalFilesystem.layer]))).pipe(Effect.runFork)
 * ```
 *
 * On Deno, import `@ftpd/server` before `effect` in your entry point: its first statement stops
 * Effect from retaining memory per fiber suspension through `node:async_hooks`, which long-lived
 * sessions would otherwise accumulate.
 *
 * @module
 */
import "./src/_no_async_hooks.ts"

export { FtpServer, FtpServerError, RunningServer, type RunningServerShape } from "./src/server.ts"
export {
  type ResolvedOptions,
  resolveOptions,
  type ServerOptions,
  type SiteCommand,
  type SiteCommandContext,
  VERSION,
} from "./src/options.ts"
export {
  type Account,
  ALL_PERMISSIONS,
  Authorizer,
  type AuthorizerShape,
  type Identity,
  type LoginContext,
  type Permission,
  READ_PERMISSIONS,
  type UserLimits,
  WRITE_PERMISSIONS,
} from "./src/auth/authorizer.ts"
export { DummyAuthorizer, type UserOptions } from "./src/auth/dummy.ts"
export {
  UserFileAuthorizer,
  type UserFileAuthorizerShape,
  UserFileError,
  type UserFileOptions,
} from "./src/auth/user_file.ts"
export { UnixAuthorizer, type UnixAuthorizerOptions, type UnixUserOverride } from "./src/auth/unix.ts"
export {
  defaultPasswordWorkers,
  hashPassword,
  type HashScheme,
  hashScheme,
  makePasswordVerifier,
  type PasswordVerifier,
  verifyPassword,
} from "./src/auth/passwords.ts"
export { type AddressRules, parseAddressRules } from "./src/auth/addresses.ts"
export {
  ALL_CAPABILITIES,
  type Capabilities,
  capabilitiesOf,
  type DirectoryListing,
  type FileInfo,
  Filesystem,
  type FilesystemShape,
  type FtpPath,
  type ReadHandle,
  type WriteHandle,
  type WriteOptions,
} from "./src/fs/filesystem.ts"
export {
  availableJail,
  type JailMode,
  LocalFilesystem,
  type LocalFilesystemOptions,
  makeLocalFilesystem,
  makeUnixFilesystem,
  UnixFilesystem,
} from "./src/fs/local.ts"
export {
  AuthenticationFailed,
  AuthorizerError,
  type CommandError,
  DataConnectionError,
  DataConnectionLost,
  FilesystemError,
  type FilesystemErrorReason,
  fromSystemError,
  type Reply,
  replyFor,
  TlsHandshakeError,
  TransferStalled,
} from "./src/errors.ts"
export {
  type Listener,
  type NativeTls,
  type NativeTlsTransport,
  Network,
  type NetworkShape,
} from "./src/net/network.ts"
export { makeMemoryNetwork, type MemoryNetwork, memoryPair } from "./src/net/memory.ts"
export type { Transport } from "./src/net/transport.ts"
export { type HookName, Hooks, type HookSession, type HooksShape } from "./src/hooks.ts"
export { type BanEntry, type BanPolicy, Bans, type BansShape } from "./src/bans.ts"
export { FtpLogger, type FtpLoggerOptions, SESSION_ANNOTATION } from "./src/log.ts"
export { GracefulShutdown, type GracefulShutdownShape, Hangup, type HangupShape, runMain } from "./src/runtime.ts"
