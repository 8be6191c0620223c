/**
 * The `Filesystem` service: what a session may do to files, over paths a client sees.
 *
 * A client names files with virtual paths (`/docs/a.txt`) rooted at its home. `resolve` turns
 * one into a {@link FtpPath} (virtual and real path) or refuses it; every other operation takes
 * a resolved path, so a jail check cannot be skipped by accident.
 *
 * @module
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { FilesystemError } from "../errors.ts"
import type { FileInfo } from "../protocol/file_info.ts"
import type { Identity } from "../sys/identity.ts"

export type { FileInfo }

/** A path as the client sees it (`virtual`, always absolute and normalized) and as the OS sees it (`real`). */
export interface FtpPath {
  readonly virtual: string
  readonly real: string
}

/** An open file being read; `readable` streams it from the offset given to `openRead`. */
export interface ReadHandle {
  readonly size: number
  readonly readable: ReadableStream<Uint8Array>
}

/**
 * An open file being written. `write` resolves once every byte of `chunk` is taken (the chunk's
 * memory may be reused as soon as it resolves).
 *
 * Storage that keeps an upload aside until it is whole (object storage, memory) stores it in
 * `complete`, which the server calls once the client has sent every byte; a failure there fails the
 * transfer. When the scope closes without `complete` having succeeded (a failed, aborted or cut
 * transfer), such storage discards the upload: an upload that does not finish changes nothing.
 */
export interface WriteHandle {
  readonly write: (chunk: Uint8Array) => Promise<void>
  /** Bytes that reached the file so far: a write that failed may have stored part of its chunk. */
  readonly written: () => number
  /** Store what was written, now that the client sent it all (see above); absent: every write is stored as it goes. */
  readonly complete?: () => Promise<void>
}

/** How `openWrite` opens its file. */
export interface WriteOptions {
  /**
   * `truncate` (STOR: replace the content), `append` (APPE), `resume` (STOR after REST: keep the
   * content, write at `offset`).
   *
   * `truncate` must leave an existing file unchanged until the first byte is written: the file is
   * emptied by the handle's first `write()` with bytes in it, or, for an upload that completes
   * with no byte at all (an empty file), when the scope closes with success (the release of an
   * `Effect.acquireRelease` gets the `Exit`). A transfer that fails before its first byte (the
   * client never opened the data connection: 425) closes the scope with a failure, and the old
   * file stays as it was.
   */
  readonly mode: "truncate" | "append" | "resume"
  readonly offset?: number
  /** Fail with `AlreadyExists` instead of replacing (STOU). */
  readonly exclusive?: boolean
}

/** A directory read lazily, in batches, so that a huge directory is never held in memory. */
export type DirectoryListing = AsyncIterable<ReadonlyArray<FileInfo>>

/**
 * What a filesystem can do beyond storing and reading whole files. Session code asks these, never
 * a backend's name: a command a filesystem can't serve gets a clear refusal, and FEAT and the MLSx
 * facts stop advertising it.
 */
export interface Capabilities {
  /** APPE: add to the end of an existing file. */
  readonly append: boolean
  /** STOR after REST: write into an existing file at an offset. */
  readonly resume: boolean
  /** SITE CHMOD. */
  readonly chmod: boolean
  /** MFMT (and SITE UTIME): set a file's modification time. */
  readonly setMtime: boolean
  /** The `unix.mode`, `unix.uid` and `unix.gid` MLSx facts (Unix permission bits and owners). */
  readonly unixFacts: boolean
  /**
   * An upload's bytes reach the file as they arrive, so others may see a partial file: the
   * `atomicUploads` option then writes to a temporary file and renames it. Storage whose uploads
   * appear only whole (see `WriteHandle.complete`) says `false`, and gets no temporary file.
   */
  readonly partialUploads: boolean
  /**
   * What it promises still holds when several workers serve it at once, each with its own
   * instance (see `runWorkers`). `false` for the path jail, whose renames are exclusive only within
   * one worker, and for memory storage, which each worker would hold apart: a server started as one
   * of several workers refuses such a filesystem.
   */
  readonly workers: boolean
}

/** What a filesystem that declares nothing can do: everything. */
export const ALL_CAPABILITIES: Capabilities = {
  append: true,
  resume: true,
  chmod: true,
  setMtime: true,
  unixFacts: true,
  partialUploads: true,
  workers: true,
}

/**
 * The capabilities of `fs`: what it declares, everything else assumed.
 *
 * @example
 * ```ts
 * import { capabilitiesOf, LocalFilesystem } from "@ftpd/server"
 * console.log(capabilitiesOf(LocalFilesystem.make()).append) // true
 * ```
 */
export const capabilitiesOf = (fs: FilesystemShape): Capabilities =>
  fs.capabilities === undefined ? ALL_CAPABILITIES : { ...ALL_CAPABILITIES, ...fs.capabilities }

/**
 * The operations a session performs; implementations are {@link LocalFilesystem},
 * {@link UnixFilesystem}, {@link MemoryFilesystem}, {@link S3Filesystem} and {@link MountFilesystem}.
 */
export interface FilesystemShape {
  /** What the server's start banner says of this filesystem, e.g. `"local disk, descriptor jail"`. */
  readonly description?: string
  /** What it can't do (see {@link Capabilities}); absent: it can do everything. */
  readonly capabilities?: Partial<Capabilities>
  /**
   * Whether every operation on a path resolved with an `identity` runs with that system user's
   * file access rights (the descriptor jail's do). A server refuses the login of an account that
   * carries an identity on a filesystem without it, rather than serve it with the server's rights.
   */
  readonly userIdentity?: boolean
  /**
   * Map a normalized absolute virtual path under `home` to a real path, or fail with
   * `OutsideHome` when it (after resolving symlinks) would leave `home`. With `identity`, the path
   * and every operation on it are checked with that user's rights (see {@link userIdentity}).
   */
  readonly resolve: (home: string, virtual: string, identity?: Identity) => Effect.Effect<FtpPath, FilesystemError>
  /** Information about a path; symlinks are followed. */
  readonly stat: (path: FtpPath) => Effect.Effect<FileInfo, FilesystemError>
  /**
   * `stat` of a directory about to become the current one (CWD), failing when the user may not
   * enter it (a system user without search permission on it). Absent: `stat` is used.
   */
  readonly enter?: (path: FtpPath) => Effect.Effect<FileInfo, FilesystemError>
  /** Information about a path; symlinks are not followed. */
  readonly lstat: (path: FtpPath) => Effect.Effect<FileInfo, FilesystemError>
  /**
   * The entries of a directory (symlinks reported as such), in batches; what the listing holds
   * open (the directory) is released when the scope closes.
   */
  readonly list: (path: FtpPath) => Effect.Effect<DirectoryListing, FilesystemError, Scope.Scope>
  /** Open a regular file for reading from `offset`; closed when the scope closes. */
  readonly openRead: (path: FtpPath, offset: number) => Effect.Effect<ReadHandle, FilesystemError, Scope.Scope>
  /**
   * Open a file for writing, creating it if missing; closed when the scope closes, which the
   * transfer closes with its outcome. `truncate` empties an existing file only at the first byte
   * written or at a successful close (see {@link WriteOptions.mode}).
   */
  readonly openWrite: (path: FtpPath, options: WriteOptions) => Effect.Effect<WriteHandle, FilesystemError, Scope.Scope>
  readonly mkdir: (path: FtpPath) => Effect.Effect<void, FilesystemError>
  readonly rmdir: (path: FtpPath) => Effect.Effect<void, FilesystemError>
  readonly remove: (path: FtpPath) => Effect.Effect<void, FilesystemError>
  readonly rename: (from: FtpPath, to: FtpPath) => Effect.Effect<void, FilesystemError>
  readonly chmod: (path: FtpPath, mode: number) => Effect.Effect<void, FilesystemError>
  readonly setMtime: (path: FtpPath, mtime: Date) => Effect.Effect<void, FilesystemError>
  /**
   * Bytes the server may still store in the directory `path` (AVBL): the free space an
   * unprivileged process sees on its filesystem. Absent where storage can't tell: AVBL then
   * replies 550 and FEAT leaves it out.
   */
  readonly available?: (path: FtpPath) => Effect.Effect<number, FilesystemError>
}

/**
 * The filesystem service a server uses. Provide {@link LocalFilesystem.layer} (the jail) or
 * {@link UnixFilesystem.layer} (no jail), or your own implementation.
 *
 * @example
 * ```ts
 * import { Filesystem, LocalFilesystem } from "@ftpd/server"
 * import { Effect } from "effect"
 * const program = Effect.gen(function* () {
 *   const fs = yield* Filesystem
 *   const path = yield* fs.resolve(Deno.cwd(), "/")
 *   return (yield* fs.stat(path)).kind
 * }).pipe(Effect.provide(LocalFilesystem.layer))
 * ```
 */
export const Filesystem: Context.Service<Filesystem, FilesystemShape> = Context.Service<Filesystem, FilesystemShape>(
  "@ftpd/server/Filesystem",
)
/** The filesystem service's shape. */
export type Filesystem = FilesystemShape
