/**
 * ftpd: an FTP server library for Deno, built on Effect.
 *
 * A server needs an {@link Authorizer} (who may log in, with which permissions) and a
 * {@link Filesystem} (what they see); both are services provided by layers. The filesystems:
 * {@link LocalFilesystem} (the local disk, jailed), {@link UnixFilesystem} (not jailed),
 * {@link MemoryFilesystem}, {@link S3Filesystem} (S3-compatible object storage) and
 * {@link MountFilesystem} (several of them by path).
 *
 * ```ts
 * import { DummyAuthorizer, FtpServer, LocalFilesystem } from "@ftpd/server"
 * import { Effect, Layer } from "effect"
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
export { DummyAuthorizer, type DummyAuthorizerOptions, type UserOptions } from "./src/auth/dummy.ts"
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
export { makeMemoryFilesystem, MemoryFilesystem, type MemoryFilesystemOptions } from "./src/fs/memory.ts"
export { makeMountFilesystem, type Mount, MountFilesystem, type MountOptions } from "./src/fs/mounts.ts"
export {
  makeS3Filesystem,
  type S3Credentials,
  type S3Endpoint,
  S3Filesystem,
  type S3FilesystemOptions,
} from "./src/fs/s3.ts"
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
export {
  type HookName,
  type HookPath,
  Hooks,
  type HookSession,
  type HooksShape,
  type TransferDetails,
} from "./src/hooks.ts"
export { type BanEntry, type BanPolicy, Bans, type BansShape } from "./src/bans.ts"
export {
  EVENT_ANNOTATION,
  type EventFields,
  FtpLogger,
  type FtpLoggerOptions,
  type LogFormat,
  SESSION_ANNOTATION,
  SESSION_FIELDS_ANNOTATION,
  type SessionFields,
} from "./src/log.ts"
export {
  type ActionName,
  type ActionResult,
  FtpMetrics,
  type LoginResult,
  type MetricsEndpoint,
  MetricsRecorder,
  type PassivePortEvent,
  type RefusalReason,
  type TlsChannel,
  type TransferResult,
} from "./src/observability/metrics.ts"
export { type OtlpSettings, otlpSettings, otlpTracing } from "./src/observability/tracing.ts"
export {
  type ActionLimits,
  UploadCommand,
  type UploadCommandOptions,
  Webhook,
  type WebhookEvent,
  type WebhookOptions,
} from "./src/observability/actions.ts"
export { type XferlogEntry, xferlogLine } from "./src/observability/xferlog.ts"
export { GracefulShutdown, type GracefulShutdownShape, Hangup, type HangupShape, runMain } from "./src/runtime.ts"
export { type RunningWorkers, runWorkers, type WorkersConfig } from "./src/workers/coordinator.ts"
export { forwardLog, serveInWorker, type WorkerStart } from "./src/workers/worker.ts"
export { Admission, type AdmissionLimits, type AdmissionShape, makeAdmission, type Refusal } from "./src/admission.ts"
