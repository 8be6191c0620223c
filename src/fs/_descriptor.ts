/**
 * The descriptor jail: every operation walks its path from an open descriptor of the user's home
 * (`_walk.ts`: one component at a time, `openat(O_PATH | O_NOFOLLOW)`, symlinks followed here and
 * confined to the home), then acts on the descriptor the walk reached (`openat`, `mkdirat`,
 * `unlinkat`, `renameat`, ...), never on a path. A walk can't leave the home however the tree
 * changes while it runs: this is what `chroot` gives vsftpd, without being root.
 *
 * Each operation walks again and compares the real path it reached with the one its command was
 * checked against (permissions are per real directory): a path that changed in between is refused,
 * never used.
 *
 * A path resolved with a system user's identity (`resolve(home, virtual, identity)`) is walked and
 * operated on with that user's file access rights: the walk and the operation are synchronous
 * system calls with no `await` between them, so they run between a switch of this thread's file
 * identity to the user's and back (`sys/identity.ts`). Reads and writes of file data run off the
 * event loop on descriptors opened that way: the kernel checked the user's rights when it opened
 * them.
 *
 * Needs the C library through FFI (`--allow-ffi`), Linux.
 *
 * @module
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { FilesystemError } from "../errors.ts"
import { identities, type Identity } from "../sys/identity.ts"
import {
  AT_EMPTY_PATH,
  AT_REMOVEDIR,
  AT_SYMLINK_NOFOLLOW,
  Errno,
  type Libc,
  S_IFDIR,
  S_IFREG,
  type Stat,
} from "../sys/libc.ts"
import type { DirectoryListing, FilesystemShape, FtpPath, ReadHandle, WriteHandle } from "./filesystem.ts"
import { attemptSync, checkVirtual, nameOf, truncateOnFirstWrite } from "./_common.ts"
import { byteStream, Descriptor, listing, toFileInfo } from "./_descriptor_io.ts"
import { changed, componentsOf, type Entry, failed, Walk } from "./_walk.ts"

/** Where a resolved path belongs: the home it was resolved in, and whose rights it is used with. */
interface Origin {
  readonly home: string
  readonly identity: Identity | undefined
}

/**
 * The jailed filesystem over descriptors. `origins` gives each resolved path's home and identity
 * (a path carries only its virtual and real form).
 */
export const makeDescriptorFilesystem = (c: Libc): FilesystemShape => {
  const realHomes = new Map<string, string>()
  const origins = new WeakMap<FtpPath, Origin>()
  const acting = identities()
  /** Run `f` with `identity`'s file access rights on this thread (the server's own without one). */
  const as = <A>(identity: Identity | undefined, virtual: string, f: () => A): A => {
    if (identity === undefined) return f()
    if ("missing" in acting) {
      throw new FilesystemError({
        path: virtual,
        reason: "PermissionDenied",
        detail: `Can't act as a system user here: needs ${acting.missing}.`,
      })
    }
    return acting.asIdentity(identity, f)
  }
  /** The canonical path of `home`, found once (with the server's rights: each walk checks the user's). */
  const rootOf = (home: string): Effect.Effect<string, FilesystemError> =>
    Effect.suspend(() => {
      const cached = realHomes.get(home)
      if (cached !== undefined) return Effect.succeed(cached)
      const real = c.realpath(home)
      if (typeof real === "number") return Effect.fail(failed("/", real))
      realHomes.set(home, real)
      return Effect.succeed(real)
    })

  /** Run `f` on a fresh walk of `path`'s home, with its identity; the walk's descriptors are closed afterwards. */
  const walking = <A>(path: FtpPath, f: (walk: Walk) => A): Effect.Effect<A, FilesystemError> =>
    Effect.suspend(() => {
      const origin = origins.get(path)
      if (origin === undefined) {
        return Effect.fail(
          new FilesystemError({
            path: path.virtual,
            reason: "PermissionDenied",
            detail: "Path not resolved by this filesystem.",
          }),
        )
      }
      return Effect.flatMap(rootOf(origin.home), (root) =>
        attemptSync(() =>
          as(origin.identity, path.virtual, () => {
            const walk = new Walk(c, root, path.virtual)
            try {
              return f(walk)
            } finally {
              walk.close()
            }
          })
        ))
    })

  /**
   * Walk to the directory holding `path`'s last component, and check that the real path reached
   * is the one the command was checked against.
   */
  const parentOf = (walk: Walk, path: FtpPath): string => {
    const names = componentsOf(path.virtual)
    if (names.length === 0) {
      if (walk.real !== path.real) throw changed(path.virtual)
      return ""
    }
    const name = names.pop()!
    if (walk.enter(names) !== -1) throw new FilesystemError({ path: path.virtual, reason: "NotFound" })
    if (walk.realOf(name) !== path.real) throw changed(path.virtual)
    return name
  }

  /** The entry at `path`, symlinks followed; `NotFound` when it does not exist. */
  const existing = (walk: Walk, path: FtpPath): Entry & { readonly stat: Stat; readonly fd: number } => {
    const entry = walk.entry(parentOf(walk, path))
    if (entry.stat === undefined) throw new FilesystemError({ path: path.virtual, reason: "NotFound" })
    return entry as Entry & { readonly stat: Stat; readonly fd: number }
  }

  const call = (virtual: string, result: number): number => {
    if (result < 0) throw failed(virtual, result)
    return result
  }

  /** Why `stat` can't be opened as a file (a directory, a FIFO or device that could block), if it can't. */
  const notRegular = (path: FtpPath, stat: Stat): FilesystemError | undefined =>
    stat.type === S_IFDIR
      ? new FilesystemError({ path: path.virtual, reason: "IsADirectory" })
      : stat.type !== S_IFREG
      ? new FilesystemError({ path: path.virtual, reason: "PermissionDenied", detail: "Not a regular file." })
      : undefined

  /**
   * Open the regular file `entry` (reached by a walk) with `flags`. Checked before (opening a FIFO
   * could block or fail oddly) and after (the name may have been swapped since): only a regular
   * file is kept open.
   */
  const openEntry = (path: FtpPath, entry: Entry, flags: number, mode = 0o666): number => {
    if (entry.name === "") throw new FilesystemError({ path: path.virtual, reason: "IsADirectory" })
    const before = entry.stat === undefined ? undefined : notRegular(path, entry.stat)
    if (before !== undefined) throw before
    const fd = c.openat(entry.dir, entry.name, flags | c.O.NOFOLLOW | c.O.NONBLOCK, mode)
    // ELOOP: the name became a symlink after the walk read it.
    if (fd === -Errno.ELOOP) throw changed(path.virtual)
    call(path.virtual, fd)
    const stat = c.statx(fd, "", AT_EMPTY_PATH)
    const after = typeof stat === "number" ? failed(path.virtual, stat) : notRegular(path, stat)
    if (after !== undefined) {
      c.close(fd)
      throw after
    }
    return fd
  }

  const scopedDescriptor = (open: Effect.Effect<number, FilesystemError>) =>
    Effect.acquireRelease(Effect.map(open, (fd) => new Descriptor(c, fd)), (d) => Effect.sync(() => d.close()))

  const resolve: FilesystemShape["resolve"] = (home, virtual, identity) =>
    Effect.flatMap(rootOf(home), (root) =>
      attemptSync(() => {
        const bad = checkVirtual(virtual)
        if (bad !== undefined) throw bad
        return as(identity, virtual, () => {
          const names = componentsOf(virtual)
          const walk = new Walk(c, root, virtual)
          try {
            if (names.length === 0) return { virtual, real: root }
            const name = names.pop()!
            const missing = walk.enter(names)
            if (missing !== -1) {
              // Missing directories: the path can't be used, but it can be named (the operation says NotFound).
              return { virtual, real: [walk.real === "/" ? "" : walk.real, ...names.slice(missing), name].join("/") }
            }
            const real = walk.realOf(name)
            // A symlink at the end is kept as such (DELE and RNFR act on the link), once it is known to lead inside.
            walk.entry(name)
            return { virtual, real }
          } finally {
            walk.close()
          }
        })
      }).pipe(Effect.tap((path) => Effect.sync(() => origins.set(path, { home, identity })))))

  const stat = (path: FtpPath) => walking(path, (walk) => toFileInfo(nameOf(path.virtual), existing(walk, path).stat))

  /** `stat`, and for a directory a lookup of `.` in it: the kernel's search check, as `chdir` makes it. */
  const enter = (path: FtpPath) =>
    walking(path, (walk) => {
      const entry = existing(walk, path)
      if (entry.stat.type === S_IFDIR) walk.own(call(path.virtual, c.openat(entry.fd, ".", c.O.PATH)))
      return toFileInfo(nameOf(path.virtual), entry.stat)
    })

  const lstat = (path: FtpPath) =>
    walking(path, (walk) => {
      const name = parentOf(walk, path)
      const stat = c.statx(walk.fd, name, AT_SYMLINK_NOFOLLOW | (name === "" ? AT_EMPTY_PATH : 0))
      if (typeof stat === "number") throw failed(path.virtual, stat)
      return toFileInfo(nameOf(path.virtual), stat)
    })

  const list = (path: FtpPath): Effect.Effect<DirectoryListing, FilesystemError, Scope.Scope> =>
    Effect.map(
      scopedDescriptor(walking(path, (walk) => {
        const entry = existing(walk, path)
        if (entry.stat.type !== S_IFDIR) throw new FilesystemError({ path: path.virtual, reason: "NotADirectory" })
        return call(path.virtual, c.openat(entry.fd, ".", c.O.RDONLY | c.O.DIRECTORY))
      })),
      (dir) => listing(c, dir, path, (f) => as(origins.get(path)?.identity, path.virtual, f)),
    )

  const openRead = (path: FtpPath, offset: number): Effect.Effect<ReadHandle, FilesystemError, Scope.Scope> =>
    Effect.flatMap(
      scopedDescriptor(walking(path, (walk) => openEntry(path, existing(walk, path), c.O.RDONLY))),
      (file) =>
        attemptSync(() => {
          const stat = c.statx(file.fd, "", AT_EMPTY_PATH)
          if (typeof stat === "number") throw failed(path.virtual, stat)
          if (offset > stat.size) throw new FilesystemError({ path: path.virtual, reason: "InvalidOffset" })
          if (offset > 0) call(path.virtual, c.seek(file.fd, offset))
          return { size: stat.size, readable: byteStream(c, file, path.virtual) }
        }),
    )

  const openWrite: FilesystemShape["openWrite"] = (path, options) =>
    Effect.gen(function* () {
      let replacing = false
      const file = yield* scopedDescriptor(walking(path, (walk) => {
        const entry = walk.entry(parentOf(walk, path))
        const { O } = c
        const append = options.mode === "append" ? O.APPEND : 0
        const offset = options.offset ?? 0
        if (entry.stat === undefined || options.exclusive) {
          if (entry.stat !== undefined) throw new FilesystemError({ path: path.virtual, reason: "AlreadyExists" })
          // Resuming at an offset needs the file to exist: never leave an empty one behind.
          if (options.mode === "resume" && offset > 0) {
            throw new FilesystemError({ path: path.virtual, reason: "NotFound" })
          }
          // O_EXCL: a name that appeared since the walk (a symlink, say) is refused, not followed.
          const fd = c.openat(entry.dir, entry.name, O.WRONLY | O.CREAT | O.EXCL | O.NOFOLLOW | append, 0o666)
          if (fd === -Errno.EEXIST && !options.exclusive) throw changed(path.virtual)
          return call(path.virtual, fd)
        }
        const fd = openEntry(path, entry, O.WRONLY | append)
        try {
          replacing = options.mode === "truncate"
          if (options.mode === "resume" && offset > 0) {
            const stat = c.statx(fd, "", AT_EMPTY_PATH)
            if (typeof stat === "number") throw failed(path.virtual, stat)
            if (offset > stat.size) throw new FilesystemError({ path: path.virtual, reason: "InvalidOffset" })
            call(path.virtual, c.seek(fd, offset))
          }
          return fd
        } catch (error) {
          c.close(fd)
          throw error
        }
      }))
      let stored = 0
      const write = async (chunk: Uint8Array) => {
        for (let written = 0; written < chunk.length;) {
          const n = await file.run((fd) => c.write(fd, chunk.subarray(written)))
          if (n < 0) throw failed(path.virtual, n)
          written += n
          stored += n
        }
      }
      const truncate = () =>
        file.run((fd) => {
          const result = c.ftruncate(fd, 0)
          return result < 0 ? Promise.reject(failed(path.virtual, result)) : Promise.resolve()
        })
      return {
        write: replacing ? yield* truncateOnFirstWrite(path, truncate, write) : write,
        written: () => stored,
      } satisfies WriteHandle
    })

  return {
    description: "local disk, descriptor jail (openat walks, no symlink followed blindly)",
    userIdentity: "asIdentity" in acting,
    resolve,
    stat,
    enter,
    lstat,
    list,
    openRead,
    openWrite,
    mkdir: (path) =>
      walking(path, (walk) => {
        const name = parentOf(walk, path)
        call(path.virtual, c.mkdirat(walk.fd, name, 0o777))
      }),
    rmdir: (path) =>
      walking(path, (walk) => {
        const name = parentOf(walk, path)
        const stat = c.statx(walk.fd, name, AT_SYMLINK_NOFOLLOW)
        if (typeof stat === "number") throw failed(path.virtual, stat)
        if (stat.type !== S_IFDIR) throw new FilesystemError({ path: path.virtual, reason: "NotADirectory" })
        call(path.virtual, c.unlinkat(walk.fd, name, AT_REMOVEDIR))
      }),
    remove: (path) =>
      walking(path, (walk) => {
        const name = parentOf(walk, path)
        const stat = c.statx(walk.fd, name, AT_SYMLINK_NOFOLLOW)
        if (typeof stat === "number") throw failed(path.virtual, stat)
        if (stat.type === S_IFDIR) throw new FilesystemError({ path: path.virtual, reason: "IsADirectory" })
        call(path.virtual, c.unlinkat(walk.fd, name, 0))
      }),
    rename: (from, to) =>
      walking(from, (source) => {
        const fromName = parentOf(source, from)
        // The source's descriptors stay open while the target is walked: both ends are checked now.
        const target = new Walk(c, source.root.real, to.virtual)
        try {
          const [a, b] = [origins.get(from), origins.get(to)]
          if (a?.home !== b?.home || a?.identity !== b?.identity) throw changed(to.virtual)
          const toName = parentOf(target, to)
          call(from.virtual, c.renameat(source.fd, fromName, target.fd, toName))
        } finally {
          target.close()
        }
      }),
    chmod: (path, mode) => walking(path, (walk) => void call(path.virtual, c.chmodFd(existing(walk, path).fd, mode))),
    setMtime: (path, mtime) =>
      walking(path, (walk) => void call(path.virtual, c.setMtimeFd(existing(walk, path).fd, mtime))),
    available: (path) =>
      walking(path, (walk) => {
        const entry = existing(walk, path)
        if (entry.stat.type !== S_IFDIR) throw new FilesystemError({ path: path.virtual, reason: "NotADirectory" })
        return call(path.virtual, c.availableBytes(entry.fd))
      }),
  }
}
