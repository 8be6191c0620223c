/**
 * Filesystems on the local disk: {@link LocalFilesystem} keeps every user inside their home (the
 * jail), {@link UnixFilesystem} does not.
 *
 * The jail comes in two kinds, chosen when the filesystem is made:
 * - `descriptor` (with `--allow-ffi`, on Linux): each operation walks its path from an open
 *   descriptor of the home, one component at a time, never following a symlink blindly, and acts
 *   on the descriptor it reached. No rename, symlink swap or race, by FTP clients or by local
 *   processes, makes an operation reach outside the home.
 * - `path` (without FFI): paths are resolved with `realPath`, checked, and used as resolved;
 *   each operation checks its path again just before it runs, and renames exclude every other
 *   operation meanwhile. This holds against FTP clients; a local process that swaps symlinks in
 *   the shared tree while the server runs can still win a race.
 *
 * @module
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { FilesystemError } from "../errors.ts"
import { libc } from "../sys/libc.ts"
import { makeDescriptorFilesystem } from "./_descriptor.ts"
import { makePathJail, makeUnjailed } from "./_paths.ts"
import { Filesystem, type FilesystemShape } from "./filesystem.ts"

/** How the jail keeps users in their home (see the module documentation). */
export type JailMode = "descriptor" | "path"

/** Options of {@link LocalFilesystem}. */
export interface LocalFilesystemOptions {
  /**
   * `auto` (the default): `descriptor` when the C library can be called (`--allow-ffi`, Linux
   * x86_64 or aarch64), else `path`. Asking for `descriptor` where it is not available fails.
   */
  readonly jail?: "auto" | JailMode
}

/** The jail `auto` picks in this process: `descriptor` when FFI to the C library works. */
export const availableJail = (): JailMode => (libc() === null ? "path" : "descriptor")

/**
 * A jailed filesystem over the local disk. Throws a `FilesystemError` when the `descriptor` jail
 * is asked for and can't be had.
 *
 * @example
 * ```ts
 * import { makeLocalFilesystem } from "@ftpd/server"
 * import { Effect } from "effect"
 * const fs = makeLocalFilesystem({ jail: "path" })
 * const path = await Effect.runPromise(fs.resolve(Deno.cwd(), "/"))
 * console.log(path.real)
 * ```
 */
export const makeLocalFilesystem = (options: LocalFilesystemOptions = {}): FilesystemShape => {
  const mode = options.jail ?? "auto"
  if (mode === "path") return makePathJail()
  const c = libc()
  if (c !== null) return makeDescriptorFilesystem(c)
  if (mode === "auto") return makePathJail()
  throw new FilesystemError({
    path: "/",
    reason: "Other",
    detail: "The descriptor jail needs the C library through FFI: grant --allow-ffi (Linux, x86_64 or aarch64).",
  })
}

/**
 * A filesystem over the local disk with no jail: a virtual path is the home joined with it, and
 * symlinks lead wherever they point (pyftpdlib's `UnixFilesystem`). Only Deno's permission flags
 * limit what a user reaches.
 *
 * @example
 * ```ts
 * import { UnixFilesystem } from "@ftpd/server"
 * import { Effect } from "effect"
 * const fs = UnixFilesystem.make()
 * console.log(await Effect.runPromise(fs.resolve("/srv/ftp", "/a.txt"))) // { virtual: "/a.txt", real: "/srv/ftp/a.txt" }
 * ```
 */
export const makeUnixFilesystem = (): FilesystemShape => makeUnjailed()

/**
 * The jailed local filesystem and its layers.
 *
 * @example
 * ```ts
 * import { Filesystem, LocalFilesystem } from "@ftpd/server"
 * import { Effect } from "effect"
 * const kind = Effect.gen(function* () {
 *   const fs = yield* Filesystem
 *   return (yield* fs.stat(yield* fs.resolve(Deno.cwd(), "/"))).kind
 * }).pipe(Effect.provide(LocalFilesystem.layer))
 * ```
 */
export const LocalFilesystem: {
  /** The jail `auto` picks. */
  readonly layer: Layer.Layer<Filesystem>
  /** The jail `options` ask for; fails when it can't be had. */
  readonly layerWith: (options: LocalFilesystemOptions) => Layer.Layer<Filesystem, FilesystemError>
  readonly make: (options?: LocalFilesystemOptions) => FilesystemShape
} = {
  layer: Layer.sync(Filesystem, () => makeLocalFilesystem()),
  layerWith: (options) =>
    Layer.effect(
      Filesystem,
      Effect.try({ try: () => makeLocalFilesystem(options), catch: (error) => error as FilesystemError }),
    ),
  make: makeLocalFilesystem,
}

/**
 * The unjailed local filesystem and its layer.
 *
 * @example
 * ```ts
 * import { UnixFilesystem } from "@ftpd/server"
 * const layer = UnixFilesystem.layer
 * ```
 */
export const UnixFilesystem: { readonly layer: Layer.Layer<Filesystem>; readonly make: () => FilesystemShape } = {
  layer: Layer.sync(Filesystem, makeUnixFilesystem),
  make: makeUnixFilesystem,
}
