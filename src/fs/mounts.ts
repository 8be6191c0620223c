/**
 * `MountFilesystem`: filesystems combined by virtual path (SFTPGo's "virtual folders"): a base
 * filesystem serves each user's home, and each mount serves one directory of every user's tree
 * (`/pub` from a local directory, `/inbox` from a bucket), read-only if asked.
 *
 * A mount point shows as a directory in its parent's listing, even where the base has no such
 * directory. Renames stay within one filesystem: RNFR/RNTO across mounts is refused with 553
 * rather than copied. A mount point itself can't be removed or renamed. The real path of a file is
 * its own filesystem's (`/srv/pub/a.txt`, `s3://bucket/inbox/a.txt`). The capabilities are those
 * any member has; a member that can't do something refuses it on its own paths.
 *
 * @module
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { FilesystemError } from "../errors.ts"
import { basename } from "../protocol/path.ts"
import { LIST_BATCH } from "./_common.ts"
import {
  type Capabilities,
  capabilitiesOf,
  type DirectoryListing,
  type FileInfo,
  Filesystem,
  type FilesystemShape,
  type FtpPath,
} from "./filesystem.ts"

/** One filesystem mounted at a virtual path. */
export interface Mount {
  /** Where it appears in every user's tree: an absolute path other than `/`, e.g. `/pub`. */
  readonly at: string
  readonly filesystem: FilesystemShape
  /** The home its filesystem is given: the directory it shows (`/srv/pub`, `s3://bucket/inbox`). */
  readonly root: string
  /** Refuse every change under it (550). */
  readonly readOnly?: boolean
}

/** Options of {@link MountFilesystem}. */
export interface MountOptions {
  /** Serves each user's home, outside the mounts. */
  readonly base: FilesystemShape
  readonly mounts: ReadonlyArray<Mount>
}

interface Member {
  readonly filesystem: FilesystemShape
  readonly readOnly: boolean
  /** The mount, or `undefined` for the base. */
  readonly mount?: Mount
}

interface Resolved {
  readonly member: Member
  readonly inner: FtpPath
}

const normalized = (at: string) => (at.length > 1 ? at.replace(/\/+$/, "") : at)

/** `error`, about the client's path `virtual` rather than a member's own path. */
const about = (virtual: string, error: FilesystemError) =>
  new FilesystemError({ path: virtual, reason: error.reason, detail: error.detail, cause: error.cause })

const within = (virtual: string, at: string) => virtual === at || virtual.startsWith(`${at}/`)

const directoryInfo = (name: string): FileInfo => ({
  name,
  kind: "directory",
  size: 0,
  mtime: null,
  mode: null,
  nlink: 2,
  uid: null,
  gid: null,
  dev: null,
  ino: null,
})

/**
 * A filesystem that serves `mounts` over `base`. Throws a `RangeError` for a mount at `/` or two
 * at the same path.
 *
 * @example
 * ```ts
 * import { LocalFilesystem, makeMountFilesystem, MemoryFilesystem } from "@ftpd/server"
 * const fs = makeMountFilesystem({
 *   base: LocalFilesystem.make(),
 *   mounts: [{ at: "/scratch", filesystem: MemoryFilesystem.make(), root: "memory:/" }],
 * })
 * ```
 */
export const makeMountFilesystem = (options: MountOptions): FilesystemShape => {
  const mounts = options.mounts.map((mount) => ({ ...mount, at: normalized(mount.at) }))
  for (const mount of mounts) {
    if (!mount.at.startsWith("/") || mount.at === "/") throw new RangeError(`can't mount at '${mount.at}'`)
    if (mounts.filter((m) => m.at === mount.at).length > 1) throw new RangeError(`two mounts at '${mount.at}'`)
  }
  // Longest first: a mount inside another mount's path wins there.
  mounts.sort((a, b) => b.at.length - a.at.length)
  const base: Member = { filesystem: options.base, readOnly: false }
  const members = new Map(mounts.map((mount) => [mount, {
    filesystem: mount.filesystem,
    readOnly: mount.readOnly ?? false,
    mount,
  } as Member]))
  const paths = new WeakMap<FtpPath, Resolved>()

  const resolved = (path: FtpPath): Effect.Effect<Resolved, FilesystemError> => {
    const found = paths.get(path)
    return found === undefined
      ? Effect.fail(
        new FilesystemError({ path: path.virtual, reason: "Other", detail: "Not a path of this filesystem." }),
      )
      : Effect.succeed(found)
  }

  /** The error of an inner filesystem, about the client's path. */
  const outer = <A, R>(path: FtpPath, effect: Effect.Effect<A, FilesystemError, R>) =>
    Effect.mapError(effect, (error) => about(path.virtual, error))

  const isMountPoint = (virtual: string) => mounts.some((m) => m.at === virtual)
  /** The names in the directory `virtual` that lead to a mount point (the mount point, or a directory above it). */
  const mountedIn = (virtual: string) => {
    const prefix = virtual === "/" ? "/" : `${virtual}/`
    const found = mounts.filter((m) => m.at.startsWith(prefix)).map((m) => m.at.slice(prefix.length).split("/")[0])
    return [...new Set(found)]
  }
  /** Whether `virtual` is a directory above some mount point (it exists, whatever the base says). */
  const aboveMount = (virtual: string) => mounts.some((m) => m.at.startsWith(virtual === "/" ? "/" : `${virtual}/`))

  const readOnly = (path: FtpPath) =>
    new FilesystemError({ path: path.virtual, reason: "PermissionDenied", detail: "Read-only mount." })

  /** Run `f` on the path's own filesystem, refusing it on a read-only one when it changes something. */
  const on = <A, R>(
    path: FtpPath,
    changes: boolean,
    f: (fs: FilesystemShape, inner: FtpPath) => Effect.Effect<A, FilesystemError, R>,
  ): Effect.Effect<A, FilesystemError, R> =>
    Effect.flatMap(
      resolved(path),
      ({ member, inner }) =>
        changes && member.readOnly ? Effect.fail(readOnly(path)) : outer(path, f(member.filesystem, inner)),
    )

  /** Refuse to remove or rename a mount point (550). */
  const notMountPoint = (path: FtpPath) =>
    isMountPoint(path.virtual)
      ? Effect.fail(new FilesystemError({ path: path.virtual, reason: "PermissionDenied", detail: "A mount point." }))
      : Effect.void

  const stat = (path: FtpPath, follow: boolean) =>
    on(path, false, (fs, inner) => follow ? fs.stat(inner) : fs.lstat(inner)).pipe(
      Effect.map((info) => isMountPoint(path.virtual) ? { ...info, name: basename(path.virtual) } : info),
      Effect.catchIf(
        (error) => error.reason === "NotFound" && aboveMount(path.virtual),
        () => Effect.succeed(directoryInfo(basename(path.virtual) || "/")),
      ),
    )

  const list = (path: FtpPath): Effect.Effect<DirectoryListing, FilesystemError, Scope.Scope> =>
    Effect.gen(function* () {
      const points = mountedIn(path.virtual)
      const own = yield* on(path, false, (fs, inner) => fs.list(inner)).pipe(
        Effect.catchIf(
          (error) => error.reason === "NotFound" && aboveMount(path.virtual),
          () => Effect.succeed<DirectoryListing>((async function* () {})()),
        ),
      )
      if (points.length === 0) return own
      const hidden = new Set(points)
      return (async function* () {
        for await (const batch of own) yield batch.filter((info) => !hidden.has(info.name))
        for (let i = 0; i < points.length; i += LIST_BATCH) {
          yield points.slice(i, i + LIST_BATCH).map(directoryInfo)
        }
      })()
    })

  const capabilities = [options.base, ...mounts.map((m) => m.filesystem)].map(capabilitiesOf).reduce(
    (all, one): Capabilities => ({
      append: all.append || one.append,
      resume: all.resume || one.resume,
      chmod: all.chmod || one.chmod,
      setMtime: all.setMtime || one.setMtime,
      unixFacts: all.unixFacts || one.unixFacts,
      partialUploads: all.partialUploads || one.partialUploads,
      workers: all.workers && one.workers,
    }),
  )

  return {
    description: [
      options.base.description ?? "custom filesystem",
      ...[...mounts].reverse().map((m) =>
        `${m.at} mounted from ${m.root} (${m.filesystem.description ?? "custom filesystem"}${
          m.readOnly ? ", read-only" : ""
        })`
      ),
    ].join("; "),
    capabilities,
    resolve: (home, virtual) =>
      Effect.gen(function* () {
        const mount = mounts.find((m) => within(virtual, m.at))
        const member = mount === undefined ? base : members.get(mount)!
        const inner = mount === undefined
          ? yield* options.base.resolve(home, virtual)
          : yield* mount.filesystem.resolve(mount.root, virtual.slice(mount.at.length) || "/")
        const path: FtpPath = { virtual, real: inner.real }
        paths.set(path, { member, inner })
        return path
      }).pipe(Effect.mapError((error) => about(virtual, error))),
    stat: (path) => stat(path, true),
    lstat: (path) => stat(path, false),
    list,
    openRead: (path, offset) => on(path, false, (fs, inner) => fs.openRead(inner, offset)),
    openWrite: (path, write) => on(path, true, (fs, inner) => fs.openWrite(inner, write)),
    mkdir: (path) =>
      isMountPoint(path.virtual)
        ? Effect.fail(new FilesystemError({ path: path.virtual, reason: "AlreadyExists" }))
        : on(path, true, (fs, inner) => fs.mkdir(inner)),
    rmdir: (path) => Effect.andThen(notMountPoint(path), on(path, true, (fs, inner) => fs.rmdir(inner))),
    remove: (path) => Effect.andThen(notMountPoint(path), on(path, true, (fs, inner) => fs.remove(inner))),
    rename: (from, to) =>
      Effect.gen(function* () {
        yield* notMountPoint(from)
        yield* notMountPoint(to)
        const source = yield* resolved(from)
        const target = yield* resolved(to)
        if (source.member !== target.member) {
          return yield* new FilesystemError({
            path: to.virtual,
            reason: "BadName",
            detail: "Can't rename across mounts: copy the file, then delete it.",
          })
        }
        if (source.member.readOnly) return yield* readOnly(from)
        yield* outer(from, source.member.filesystem.rename(source.inner, target.inner))
      }),
    chmod: (path, mode) => on(path, true, (fs, inner) => fs.chmod(inner, mode)),
    setMtime: (path, mtime) => on(path, true, (fs, inner) => fs.setMtime(inner, mtime)),
  }
}

/**
 * Filesystems combined by virtual path, and their layer.
 *
 * @example
 * ```ts
 * import { MountFilesystem, S3Filesystem, UnixFilesystem } from "@ftpd/server"
 * const storage = MountFilesystem.layer({
 *   base: UnixFilesystem.make(),
 *   mounts: [{
 *     at: "/inbox",
 *     root: "s3://uploads/inbox",
 *     filesystem: S3Filesystem.make({ bucket: "uploads", credentials: { accessKeyId: "...", secretAccessKey: "..." } }),
 *   }],
 * })
 * ```
 */
export const MountFilesystem: {
  readonly layer: (options: MountOptions) => Layer.Layer<Filesystem>
  readonly make: (options: MountOptions) => FilesystemShape
} = {
  layer: (options) => Layer.sync(Filesystem, () => makeMountFilesystem(options)),
  make: makeMountFilesystem,
}
