/**
 * Filesystems over Deno's path-based API: the path jail, and no jail at all (`UnixFilesystem`).
 *
 * The path jail resolves every symlink of a path (`realPath`), refuses what leads outside the
 * home, and then works on the resolved path only, never on `home + virtual path` again. Each
 * operation resolves its path once more, just before it runs, and refuses a path that no longer
 * resolves to what its command was checked against. Between that check and the operation itself
 * only a rename can redirect a path, so renames take a lock that excludes every other operation
 * of the filesystem while they run: no FTP client can win that race. A local process that swaps
 * symlinks in the tree while the server runs still can (Deno has no `openat`); the descriptor jail
 * (`--allow-ffi`) closes that too.
 *
 * @module
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { statfs } from "node:fs/promises"
import { FilesystemError, fromSystemError } from "../errors.ts"
import { closeQuietly } from "../net/transport.ts"
import { attemptSync, checkVirtual, kindOf, LIST_BATCH, nameOf, pauses, truncateOnFirstWrite } from "./_common.ts"
import { RenameLock } from "./_rename_lock.ts"
import {
  ALL_CAPABILITIES,
  type Capabilities,
  type DirectoryListing,
  type FileInfo,
  type FilesystemShape,
  type FtpPath,
  type ReadHandle,
  type WriteHandle,
  type WriteOptions,
} from "./filesystem.ts"

const attempt = <A>(path: string, f: () => Promise<A>): Effect.Effect<A, FilesystemError> =>
  Effect.tryPromise({ try: f, catch: (e) => fromSystemError(path, e) })

const join = (dir: string, virtual: string): string =>
  virtual === "/" ? dir : dir.endsWith("/") ? dir + virtual.slice(1) : dir + virtual

const toFileInfo = (name: string, info: Deno.FileInfo): FileInfo => ({
  name,
  kind: kindOf(info),
  size: info.size,
  mtime: info.mtime,
  mode: info.mode === null ? null : info.mode & 0o7777,
  nlink: info.nlink ?? 1,
  uid: info.uid,
  gid: info.gid,
  dev: info.dev,
  ino: info.ino,
})

/** Whether `lstat` sees the path (a dangling symlink exists; its target does not). */
const exists = async (path: string): Promise<boolean> => {
  try {
    await Deno.lstat(path)
    return true
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false
    throw e
  }
}

/**
 * `realPath` of `path`; for a path that does not exist, the `realPath` of its nearest existing
 * ancestor with the missing components appended. Any dangling symlink on the way is refused.
 */
const resolveMissing = async (path: string, virtual: string): Promise<string> => {
  const missing: string[] = []
  let current = path
  for (;;) {
    try {
      const real = await Deno.realPath(current)
      return missing.length === 0 ? real : join(real, "/" + missing.reverse().join("/"))
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e
    }
    if (await exists(current)) throw new FilesystemError({ path: virtual, reason: "OutsideHome" })
    const i = current.lastIndexOf("/")
    missing.push(current.slice(i + 1))
    current = i <= 0 ? "/" : current.slice(0, i)
  }
}

const inside = (root: string, real: string): boolean =>
  real === root || real.startsWith(root === "/" ? "/" : root + "/")

/**
 * The jail's resolution. `root` is the canonical home. The path's directory is resolved (every
 * symlink followed) and must lie in `root`; its last component is kept as named, so that DELE and
 * RNFR act on a symlink itself, but a symlink there must lead inside too. A dangling symlink is
 * refused, since where it leads can't be checked until it is created.
 */
const jail = async (root: string, virtual: string): Promise<FtpPath> => {
  const bad = checkVirtual(virtual)
  if (bad !== undefined) throw bad
  if (virtual === "/") return { virtual, real: root }
  const slash = virtual.lastIndexOf("/")
  const directory = await resolveMissing(join(root, virtual.slice(0, slash) || "/"), virtual)
  const real = directory === "/" ? virtual.slice(slash) : directory + virtual.slice(slash)
  if (!inside(root, directory) || !inside(root, await resolveMissing(real, virtual))) {
    throw new FilesystemError({ path: virtual, reason: "OutsideHome" })
  }
  return { virtual, real }
}

/** The refusal of a path that no longer resolves to what its command was checked against. */
const changed = (virtual: string) =>
  new FilesystemError({
    path: virtual,
    reason: "PermissionDenied",
    detail: "The path changed while the command ran: try again.",
  })

/** How operations reach the disk: straight (no jail), or through the jail's checks. */
interface Guard {
  /** Run `op` once `path` is known to still resolve as it did. */
  readonly use: <A>(path: FtpPath, op: () => Promise<A>) => Promise<A>
  /** Run a rename of `from` to `to`, with no other operation running. */
  readonly rename: (from: FtpPath, to: FtpPath, op: () => Promise<void>) => Promise<void>
}

const unguarded: Guard = { use: (_path, op) => op(), rename: (_from, _to, op) => op() }

const jailGuard = (homes: WeakMap<FtpPath, string>, rootOf: (home: string) => Promise<string>): Guard => {
  const lock = new RenameLock()
  const verify = async (path: FtpPath) => {
    const home = homes.get(path)
    if (home === undefined) {
      throw new FilesystemError({
        path: path.virtual,
        reason: "PermissionDenied",
        detail: "Path not resolved by this filesystem.",
      })
    }
    if ((await jail(await rootOf(home), path.virtual)).real !== path.real) throw changed(path.virtual)
  }
  return {
    use: (path, op) =>
      lock.shared(async () => {
        await verify(path)
        return await op()
      }),
    rename: (from, to, op) =>
      lock.exclusive(async () => {
        await verify(from)
        await verify(to)
        await op()
      }),
  }
}

/**
 * A filesystem over Deno's API. `resolve` maps virtual paths; `guard` says how each operation
 * checks its path again before it runs.
 */
const makeFilesystem = (
  resolve: FilesystemShape["resolve"],
  guard: Guard,
  description: string,
  capabilities?: Capabilities,
): FilesystemShape => {
  const run = <A>(path: FtpPath, f: () => Promise<A>) => attempt(path.virtual, () => guard.use(path, f))
  const openFile = (path: FtpPath, options: Deno.OpenOptions) =>
    Effect.acquireRelease(
      run(path, () => Deno.open(path.real, options)),
      (file) => Effect.sync(() => closeQuietly(file)),
    )
  return {
    description,
    ...(capabilities === undefined ? {} : { capabilities }),
    resolve,
    stat: (path) => run(path, async () => toFileInfo(nameOf(path.virtual), await Deno.stat(path.real))),
    lstat: (path) => run(path, async () => toFileInfo(nameOf(path.virtual), await Deno.lstat(path.real))),
    list: (path) =>
      run(path, async () => {
        // The directory itself, symlinks resolved: each batch checks it still is.
        const directory = await Deno.realPath(path.real)
        if (!(await Deno.stat(directory)).isDirectory) {
          throw new FilesystemError({ path: path.virtual, reason: "NotADirectory" })
        }
        return listing(path, directory, guard)
      }),
    openRead: (path, offset) => openRead(path, offset, run, openFile),
    openWrite: (path, options) => openWrite(path, options, run, openFile),
    mkdir: (path) => run(path, () => Deno.mkdir(path.real)),
    rmdir: (path) =>
      run(path, async () => {
        if (!(await Deno.lstat(path.real)).isDirectory) {
          throw new FilesystemError({ path: path.virtual, reason: "NotADirectory" })
        }
        await Deno.remove(path.real)
      }),
    remove: (path) =>
      run(path, async () => {
        if ((await Deno.lstat(path.real)).isDirectory) {
          throw new FilesystemError({ path: path.virtual, reason: "IsADirectory" })
        }
        await Deno.remove(path.real)
      }),
    rename: (from, to) => attempt(from.virtual, () => guard.rename(from, to, () => Deno.rename(from.real, to.real))),
    chmod: (path, mode) => run(path, () => Deno.chmod(path.real, mode)),
    setMtime: (path, mtime) => run(path, () => Deno.utime(path.real, new Date(), mtime)),
    // Deno has no statvfs; node:fs's statfs is the same call, on the path checked just before.
    available: (path) =>
      run(path, async () => {
        if (!(await Deno.stat(path.real)).isDirectory) {
          throw new FilesystemError({ path: path.virtual, reason: "NotADirectory" })
        }
        const { bavail, bsize } = await statfs(path.real)
        return bavail * bsize
      }),
  }
}

/**
 * Entries in directory order, not sorted: sorting would hold a whole huge directory's details
 * before the first byte is sent. Names come from the asynchronous `Deno.readDir`; each batch of
 * them is `lstat`ed synchronously (far faster than one `await` per entry) once the jail has
 * checked that the directory still is what it was; an entry removed meanwhile is skipped.
 */
async function* listing(path: FtpPath, directory: string, guard: Guard): DirectoryListing {
  const prefix = directory.endsWith("/") ? directory : directory + "/"
  const stat = (names: ReadonlyArray<string>) =>
    guard.use(path, async () => {
      if ((await Deno.realPath(directory)) !== directory) throw changed(path.virtual)
      const batch: FileInfo[] = []
      for (const name of names) {
        try {
          batch.push(toFileInfo(name, Deno.lstatSync(prefix + name)))
        } catch (e) {
          if (!(e instanceof Deno.errors.NotFound)) throw fromSystemError(path.virtual, e)
        }
      }
      return batch
    })
  const pause = pauses()
  let names: string[] = []
  try {
    try {
      for await (const entry of Deno.readDir(directory)) {
        names.push(entry.name)
        if (names.length < LIST_BATCH) continue
        const batch = await stat(names)
        names = []
        if (batch.length > 0) yield batch
        await pause.between()
      }
    } catch (e) {
      throw fromSystemError(path.virtual, e)
    }
    const last = await stat(names).catch((e) => Promise.reject(fromSystemError(path.virtual, e)))
    if (last.length > 0) yield last
  } finally {
    pause.end()
  }
}

/** Refuse what cannot be streamed as a file: a directory, or a FIFO or device that could block forever. */
const notRegular = (path: FtpPath, info: Deno.FileInfo): FilesystemError | undefined =>
  info.isDirectory
    ? new FilesystemError({ path: path.virtual, reason: "IsADirectory" })
    : info.isFile
    ? undefined
    : new FilesystemError({ path: path.virtual, reason: "PermissionDenied", detail: "Not a regular file." })

/** `createNew` (STOU) refuses an existing file even if one appears after the check. */
const writeFlags = (mode: WriteOptions["mode"], offset: number, exclusive: boolean): Deno.OpenOptions => {
  const create = exclusive ? { createNew: true } : { create: true }
  switch (mode) {
    case "truncate":
      // Not `truncate: true`: the file is emptied at the upload's first byte (`truncateOnFirstWrite`).
      return { write: true, ...create }
    case "append":
      return { append: true, ...create }
    case "resume":
      // resuming at an offset needs the file to exist (pyftpdlib opens "r+"): never leave an empty one behind
      return offset === 0 ? { write: true, ...create } : { write: true }
  }
}

/** REST beyond the end of the file: pyftpdlib replies 554 "Invalid REST parameter.". */
const invalidRest = (path: FtpPath): FilesystemError =>
  new FilesystemError({ path: path.virtual, reason: "InvalidOffset" })

type Run = <A>(path: FtpPath, f: () => Promise<A>) => Effect.Effect<A, FilesystemError>
type OpenFile = (
  path: FtpPath,
  options: Deno.OpenOptions,
) => Effect.Effect<Deno.FsFile, FilesystemError, Scope.Scope>

const openRead = (
  path: FtpPath,
  offset: number,
  run: Run,
  openFile: OpenFile,
): Effect.Effect<ReadHandle, FilesystemError, Scope.Scope> =>
  Effect.gen(function* () {
    // stat before open: opening a FIFO for reading blocks until a writer appears
    const before = notRegular(path, yield* run(path, () => Deno.stat(path.real)))
    if (before !== undefined) return yield* before
    const file = yield* openFile(path, { read: true })
    return yield* attempt(path.virtual, async () => {
      const info = await file.stat()
      const after = notRegular(path, info)
      if (after !== undefined) throw after
      if (offset > info.size) throw invalidRest(path)
      if (offset > 0) await file.seek(offset, Deno.SeekMode.Start)
      return { size: info.size, readable: file.readable }
    })
  })

const openWrite = (
  path: FtpPath,
  options: WriteOptions,
  run: Run,
  openFile: OpenFile,
): Effect.Effect<WriteHandle, FilesystemError, Scope.Scope> =>
  Effect.gen(function* () {
    const existing = yield* run(path, async () => {
      try {
        return await Deno.stat(path.real)
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) return undefined
        throw e
      }
    })
    if (existing !== undefined) {
      const refused = options.exclusive
        ? new FilesystemError({ path: path.virtual, reason: "AlreadyExists" })
        : notRegular(path, existing)
      if (refused !== undefined) return yield* refused
    }
    const offset = options.offset ?? 0
    const file = yield* openFile(path, writeFlags(options.mode, offset, options.exclusive === true))
    if (options.mode === "resume" && offset > 0) {
      yield* attempt(path.virtual, async () => {
        if (offset > (await file.stat()).size) throw invalidRest(path)
        await file.seek(offset, Deno.SeekMode.Start)
      })
    }
    let stored = 0
    const write = async (chunk: Uint8Array) => {
      try {
        for (let written = 0; written < chunk.length;) {
          const n = await file.write(chunk.subarray(written))
          written += n
          stored += n
        }
      } catch (e) {
        throw fromSystemError(path.virtual, e)
      }
    }
    const truncate = () => file.truncate(0).catch((e) => Promise.reject(fromSystemError(path.virtual, e)))
    // A file made by this open (STOU) is new and empty: nothing of it to keep until the first byte.
    const replacing = options.mode === "truncate" && options.exclusive !== true
    return {
      write: replacing ? yield* truncateOnFirstWrite(path, truncate, write) : write,
      written: () => stored,
    }
  })

/** The path jail over `home`s, as described in the module comment. */
export const makePathJail = (): FilesystemShape => {
  const realHomes = new Map<string, string>()
  const homes = new WeakMap<FtpPath, string>()
  const rootOf = async (home: string): Promise<string> => {
    let real = realHomes.get(home)
    if (real === undefined) realHomes.set(home, real = await Deno.realPath(home))
    return real
  }
  const resolve: FilesystemShape["resolve"] = (home, virtual) =>
    attempt(virtual, async () => {
      const path = await jail(await rootOf(home).catch((e) => Promise.reject(fromSystemError("/", e))), virtual)
      homes.set(path, home)
      return path
    })
  return makeFilesystem(
    resolve,
    jailGuard(homes, rootOf),
    "local disk, path jail (realpath checks, renames serialized)",
    // Renames are serialized by a lock in this worker's memory: another worker's are not.
    { ...ALL_CAPABILITIES, workers: false },
  )
}

/** No jail: a virtual path is the home joined with it, and symlinks lead wherever they point. */
export const makeUnjailed = (): FilesystemShape =>
  makeFilesystem(
    (home, virtual) =>
      attemptSync(() => {
        const bad = checkVirtual(virtual)
        if (bad !== undefined) throw bad
        return { virtual, real: join(home, virtual) }
      }),
    unguarded,
    "local disk, no jail",
  )
