/**
 * A walk of a virtual path from a descriptor of the user's home, one component at a time, with
 * `openat(O_PATH | O_NOFOLLOW)`: symlinks are read and followed here, never by the kernel on a
 * whole path, and `..` steps back to the directory the walk came from (never above the home).
 * The descriptor jail (`_descriptor.ts`) runs every operation on where a walk ends.
 *
 * @module
 */
import { FilesystemError, type FilesystemErrorReason } from "../errors.ts"
import { AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW, Errno, type Libc, S_IFDIR, S_IFLNK, type Stat } from "../sys/libc.ts"

/** Symlinks followed in one walk before it is refused (Linux's own limit). */
const MAX_LINKS = 40

/**
 * A user's home during one walk: an `O_PATH` descriptor of it, opened for the walk (nothing stays
 * open between operations), and its canonical path.
 */
interface Root {
  readonly fd: number
  readonly real: string
}

/** What a walk reached: the directory holding the entry, the entry's name in it, and the real path. */
export interface Entry {
  /** Descriptor of the directory holding `name`. */
  readonly dir: number
  /** The entry's name in `dir`; `""` when the entry is `dir` itself (the home, or a link to a directory). */
  readonly name: string
  /** An `O_PATH` descriptor of the entry, when it exists (owned by the walk). */
  readonly fd: number | undefined
  readonly stat: Stat | undefined
}

const reasonOf = (errno: number): FilesystemErrorReason => {
  switch (errno) {
    case Errno.ENOENT:
      return "NotFound"
    case Errno.EACCES:
    case Errno.EPERM:
    case Errno.EROFS:
      return "PermissionDenied"
    case Errno.EEXIST:
      return "AlreadyExists"
    case Errno.ENOTDIR:
      return "NotADirectory"
    case Errno.EISDIR:
      return "IsADirectory"
    case Errno.ENOTEMPTY:
      return "NotEmpty"
    case Errno.ENOSPC:
      return "NoSpace"
    case Errno.EDQUOT:
    case Errno.EFBIG:
      return "QuotaExceeded"
    case Errno.ENAMETOOLONG:
    case Errno.EINVAL:
      return "BadName"
    case Errno.ELOOP:
    case Errno.EXDEV:
      return "OutsideHome"
    default:
      return "Other"
  }
}

/** The error for a failed call (`result` is `-errno`). */
export const failed = (virtual: string, result: number): FilesystemError =>
  new FilesystemError({ path: virtual, reason: reasonOf(-result) })

const outside = (virtual: string) => new FilesystemError({ path: virtual, reason: "OutsideHome" })

/** A refusal for a path that changed between its command's check and the operation. */
export const changed = (virtual: string): FilesystemError =>
  new FilesystemError({
    path: virtual,
    reason: "PermissionDenied",
    detail: "The path changed while the command ran: try again.",
  })

/**
 * One walk from a root. It owns the descriptors it opens (the directories entered and the entry
 * reached) and closes them in `close`.
 */
export class Walk {
  /** Directories entered below the root, deepest last. */
  private readonly dirs: { readonly fd: number; readonly name: string }[] = []
  private readonly extra: number[] = []
  private links = 0

  readonly root: Root

  /** Start at the home whose canonical path is `home`. */
  constructor(private readonly c: Libc, home: string, private readonly virtual: string) {
    // O_NOFOLLOW: the home's canonical path has no symlink, so one found there now was swapped in.
    const fd = c.openat(-100, home, c.O.PATH | c.O.DIRECTORY | c.O.NOFOLLOW)
    if (fd < 0) throw failed(virtual, fd === -Errno.ELOOP ? -Errno.ENOENT : fd)
    this.root = { fd, real: home }
  }

  /** The directory the walk is in. */
  get fd(): number {
    return this.dirs.length === 0 ? this.root.fd : this.dirs[this.dirs.length - 1].fd
  }

  /** The real path of the directory the walk is in. */
  get real(): string {
    let real = this.root.real === "/" ? "" : this.root.real
    for (const dir of this.dirs) real += "/" + dir.name
    return real === "" ? "/" : real
  }

  /** The real path of `name` in the current directory. */
  realOf(name: string): string {
    const dir = this.real
    return name === "" ? dir : dir === "/" ? "/" + name : dir + "/" + name
  }

  close(): void {
    for (const dir of this.dirs) this.c.close(dir.fd)
    for (const fd of this.extra) this.c.close(fd)
    this.c.close(this.root.fd)
    this.dirs.length = 0
    this.extra.length = 0
  }

  /** Keep `fd` open until the walk is closed. */
  own(fd: number): number {
    this.extra.push(fd)
    return fd
  }

  private up(): void {
    const dir = this.dirs.pop()
    if (dir === undefined) throw outside(this.virtual)
    this.c.close(dir.fd)
  }

  /**
   * Enter the directories `names`, following symlinks. Returns the index of the first name that
   * does not exist (when it is one of `names` itself, not a name inside a link), or -1.
   */
  enter(names: ReadonlyArray<string>, inLink = false): number {
    for (let i = 0; i < names.length; i++) {
      const name = names[i]
      if (name === "" || name === ".") continue
      if (name === "..") {
        this.up()
        continue
      }
      const entry = this.entry(name, inLink)
      if (entry.stat === undefined) {
        if (inLink) throw outside(this.virtual)
        return i
      }
      if (entry.stat.type !== S_IFDIR) throw new FilesystemError({ path: this.virtual, reason: "NotADirectory" })
      if (entry.name !== "") {
        // The directory's descriptor moves from the walk's extras to its path.
        this.extra.splice(this.extra.lastIndexOf(entry.fd!), 1)
        this.dirs.push({ fd: entry.fd!, name: entry.name })
      }
    }
    return -1
  }

  /**
   * `name` in the current directory, symlinks followed (confined to the root): afterwards the walk
   * is in the directory that holds the entry reached. A name that does not exist gives an entry
   * without `stat` (a missing name inside a link's target, a dangling link, is refused).
   */
  entry(name: string, inLink = false): Entry {
    if (name === "" || name === ".") return this.self()
    if (name === "..") {
      this.up()
      return this.self()
    }
    const fd = this.c.openat(this.fd, name, this.c.O.PATH | this.c.O.NOFOLLOW)
    if (fd < 0) {
      if (fd === -Errno.ENOENT) {
        if (inLink) throw outside(this.virtual)
        return { dir: this.fd, name, fd: undefined, stat: undefined }
      }
      throw failed(this.virtual, fd)
    }
    this.own(fd)
    const stat = this.c.statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)
    if (typeof stat === "number") throw failed(this.virtual, stat)
    if (stat.type !== S_IFLNK) return { dir: this.fd, name, fd, stat }
    if (++this.links > MAX_LINKS) throw outside(this.virtual)
    const target = this.c.readlink(fd)
    if (typeof target === "number") throw failed(this.virtual, target)
    let names = target.split("/")
    if (target.startsWith("/")) {
      // An absolute link is followed only when it points into the root: the walk restarts there.
      const prefix = this.root.real === "/" ? "/" : this.root.real + "/"
      if (target !== this.root.real && !target.startsWith(prefix)) throw outside(this.virtual)
      while (this.dirs.length > 0) this.up()
      names = target.slice(this.root.real.length).split("/")
    }
    const last = names.pop()!
    this.enter(names, true)
    return this.entry(last, true)
  }

  /** The directory the walk is in, as an entry. */
  private self(): Entry {
    const stat = this.c.statx(this.fd, "", AT_EMPTY_PATH)
    if (typeof stat === "number") throw failed(this.virtual, stat)
    return { dir: this.fd, name: "", fd: this.fd, stat }
  }
}

/** The components of a normalized virtual path (`[]` for `/`). */
export const componentsOf = (virtual: string): string[] => (virtual === "/" ? [] : virtual.slice(1).split("/"))
