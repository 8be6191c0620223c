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
 * Needs the C library through FFI (`--allow-ffi`), Linux.
 *
 * @module
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { FilesystemError, fromSystemError } from "../errors.ts"
import {
  AT_EMPTY_PATH,
  AT_REMOVEDIR,
  AT_SYMLINK_NOFOLLOW,
  direntNames,
  Errno,
  type Libc,
  S_IFDIR,
  S_IFREG,
  type Stat,
} from "../sys/libc.ts"
import type { DirectoryListing, FileInfo, FilesystemShape, FtpPath, ReadHandle, WriteHandle } from "./filesystem.ts"
import { attemptSync, checkVirtual, kindOfType, LIST_BATCH, nameOf, pause, truncateOnFirstWrite } from "./_common.ts"
import { changed, componentsOf, type Entry, failed, Walk } from "./_walk.ts"

const toFileInfo = (name: string, stat: Stat): FileInfo => ({
  name,
  kind: kindOfType(stat.type),
  size: stat.size,
  mtime: new Date(stat.mtimeMs),
  mode: stat.mode,
  nlink: stat.nlink,
  uid: stat.uid,
  gid: stat.gid,
  dev: stat.dev,
  ino: stat.ino,
})

/** A descriptor whose close waits for the call in flight on it: a number reused too early would be read by that call. */
class Descriptor {
  private busy: Promise<unknown> | undefined
  private closed = false

  constructor(private readonly c: Libc, readonly fd: number) {}

  run<A>(call: (fd: number) => Promise<A>): Promise<A> {
    if (this.closed) return Promise.reject(new Deno.errors.BadResource("file closed"))
    const pending = call(this.fd)
    this.busy = pending
    return pending.finally(() => {
      if (this.busy === pending) this.busy = undefined
    })
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    const busy = this.busy
    if (busy === undefined) this.c.close(this.fd)
    else busy.finally(() => this.c.close(this.fd)).catch(() => undefined)
  }
}

/**
 * The jailed filesystem over descriptors. `homes` gives each resolved path's home (a path carries
 * only its virtual and real form).
 */
export const makeDescriptorFilesystem = (c: Libc): FilesystemShape => {
  const realHomes = new Map<string, string>()
  const homes = new WeakMap<FtpPath, string>()
  /** The canonical path of `home`, found once. */
  const rootOf = (home: string): Effect.Effect<string, FilesystemError> =>
    Effect.suspend(() => {
      const cached = realHomes.get(home)
      if (cached !== undefined) return Effect.succeed(cached)
      return Effect.tryPromise({
        try: () => Deno.realPath(home),
        catch: (e) => fromSystemError("/", e),
      }).pipe(Effect.tap((real) => Effect.sync(() => realHomes.set(home, real))))
    })

  /** Run `f` on a fresh walk of `path`'s home; the walk's descriptors are closed afterwards. */
  const walking = <A>(path: FtpPath, f: (walk: Walk) => A): Effect.Effect<A, FilesystemError> =>
    Effect.flatMap(
      Effect.suspend(() => {
        const home = homes.get(path)
        return home === undefined
          ? Effect.fail(
            new FilesystemError({
              path: path.virtual,
              reason: "PermissionDenied",
              detail: "Path not resolved by this filesystem.",
            }),
          )
          : rootOf(home)
      }),
      (root) =>
        attemptSync(() => {
          const walk = new Walk(c, root, path.virtual)
          try {
            return f(walk)
          } finally {
            walk.close()
          }
        }),
    )

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

  const resolve = (home: string, virtual: string): Effect.Effect<FtpPath, FilesystemError> =>
    Effect.flatMap(rootOf(home), (root) =>
      attemptSync(() => {
        const bad = checkVirtual(virtual)
        if (bad !== undefined) throw bad
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
      }).pipe(Effect.tap((path) => Effect.sync(() => homes.set(path, home)))))

  const stat = (path: FtpPath) => walking(path, (walk) => toFileInfo(nameOf(path.virtual), existing(walk, path).stat))

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
      (dir) => listing(c, dir, path),
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
    resolve,
    stat,
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
          if (homes.get(to) !== homes.get(from)) throw changed(to.virtual)
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

/** The file behind `file` as a byte stream: BYOB reads go straight into the reader's buffer. */
const byteStream = (c: Libc, file: Descriptor, virtual: string): ReadableStream<Uint8Array> =>
  new ReadableStream({
    type: "bytes",
    autoAllocateChunkSize: 64 << 10,
    async pull(controller) {
      const request = controller.byobRequest!
      const view = request.view as Uint8Array
      const n = await file.run((fd) => c.read(fd, view))
      if (n < 0) return controller.error(failed(virtual, n))
      if (n === 0) {
        controller.close()
        request.respond(0)
        return
      }
      request.respond(n)
    },
  })

/**
 * The entries of the directory open as `dir`, in directory order: names read with `getdents64`
 * (32 KiB at a time), each `statx`ed relative to the directory, in batches of {@link LIST_BATCH},
 * with a pause for other sessions whenever a few milliseconds of work have passed.
 */
async function* listing(c: Libc, dir: Descriptor, path: FtpPath): DirectoryListing {
  const buffer = new Uint8Array(32 << 10)
  let batch: FileInfo[] = []
  let failure: number | undefined
  const names = direntNames(buffer, (into) => {
    const n = c.getdents(dir.fd, into)
    if (n < 0) failure = n
    return n
  })
  const yieldNow = pause()
  for (const name of names) {
    const stat = c.statx(dir.fd, name, AT_SYMLINK_NOFOLLOW)
    if (typeof stat !== "number") batch.push(toFileInfo(name, stat))
    else if (stat !== -Errno.ENOENT) throw failed(path.virtual, stat)
    if (batch.length === LIST_BATCH) {
      yield batch
      batch = []
      await yieldNow()
    }
  }
  if (failure !== undefined) throw failed(path.virtual, failure)
  if (batch.length > 0) yield batch
}
