/**
 * The few Linux system calls that Deno's own API lacks, through `Deno.dlopen` of the C library:
 * descriptor-relative file operations (`openat`, `mkdirat`, `renameat`, ... with `O_NOFOLLOW`),
 * which let the jail walk a path one component at a time from an open directory so that no
 * rename or symlink swap can redirect an operation, and `shutdown(2)` of a socket that the
 * runtime can no longer close by itself.
 *
 * Available only with `--allow-ffi`, on Linux with glibc or musl, on x86_64 or aarch64; `libc()`
 * returns `null` elsewhere and callers fall back to Deno's path-based API.
 *
 * Metadata calls are synchronous (about 1-3 µs each on a local filesystem, like Deno's `*Sync`
 * calls); reads and writes of file data run off the event loop (`nonblocking`), since a write can
 * wait on the disk for a long time. Failures return `-errno`: errno is read right after a
 * synchronous call on the main thread; a non-blocking call that fails is repeated once
 * synchronously to learn why (a failed call changes nothing, so repeating it is harmless).
 *
 * Longer than most modules, on purpose: the calls, their wrappers and the layouts of the
 * structures they fill (`statx`, `linux_dirent64`, `statvfs`, `sockaddr`) are read together.
 *
 * @module
 */

/** `errno` values the callers tell apart. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  EBADF: 9,
  EAGAIN: 11,
  EACCES: 13,
  EEXIST: 17,
  EXDEV: 18,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EFBIG: 27,
  ENOSPC: 28,
  EROFS: 30,
  ENAMETOOLONG: 36,
  ENOTEMPTY: 39,
  ELOOP: 40,
  EDQUOT: 122,
} as const

/** Flags of `openat(2)`: the values differ between architectures. */
export interface OpenFlags {
  readonly RDONLY: number
  readonly WRONLY: number
  readonly CREAT: number
  readonly EXCL: number
  readonly APPEND: number
  readonly NONBLOCK: number
  readonly DIRECTORY: number
  readonly NOFOLLOW: number
  readonly CLOEXEC: number
  readonly PATH: number
}

const X86_64: OpenFlags = {
  RDONLY: 0,
  WRONLY: 0o1,
  CREAT: 0o100,
  EXCL: 0o200,
  APPEND: 0o2000,
  NONBLOCK: 0o4000,
  DIRECTORY: 0o200000,
  NOFOLLOW: 0o400000,
  CLOEXEC: 0o2000000,
  PATH: 0o10000000,
}

const AARCH64: OpenFlags = { ...X86_64, DIRECTORY: 0o40000, NOFOLLOW: 0o100000 }

/** `*at` flags and special descriptors. */
export const AT_FDCWD = -100
export const AT_SYMLINK_NOFOLLOW = 0x100
export const AT_REMOVEDIR = 0x200
export const AT_EMPTY_PATH = 0x1000

/** What `statx(2)` tells about a file, in the units Deno's `FileInfo` uses. */
export interface Stat {
  /** `S_IFMT` bits of the mode: see {@link S_IFMT} and the `S_IF*` constants. */
  readonly type: number
  /** Permission bits, `0o7777`. */
  readonly mode: number
  readonly nlink: number
  readonly uid: number
  readonly gid: number
  readonly size: number
  readonly ino: number
  readonly dev: number
  readonly mtimeMs: number
}

export const S_IFMT = 0o170000
export const S_IFSOCK = 0o140000
export const S_IFLNK = 0o120000
export const S_IFREG = 0o100000
export const S_IFBLK = 0o060000
export const S_IFDIR = 0o040000
export const S_IFCHR = 0o020000
export const S_IFIFO = 0o010000

/** The system calls, each returning `-errno` on failure. */
export interface Libc {
  readonly O: OpenFlags
  openat(dir: number, name: string, flags: number, mode?: number): number
  close(fd: number): void
  /**
   * `statx(dir, name, flags)`; `name` `""` with {@link AT_EMPTY_PATH} stats `dir` itself. `name`
   * may also be a NUL-terminated C string, such as a name in place in a {@link Dirents} buffer.
   */
  statx(dir: number, name: string | Uint8Array, flags: number): Stat | number
  /** The target of the symlink open as `fd` (`O_PATH | O_NOFOLLOW`). */
  readlink(fd: number): string | number
  mkdirat(dir: number, name: string, mode: number): number
  unlinkat(dir: number, name: string, flags: number): number
  renameat(fromDir: number, from: string, toDir: number, to: string): number
  /** chmod of the file open as `fd` (also an `O_PATH` descriptor, through `/proc/self/fd`). */
  chmodFd(fd: number, mode: number): number
  /** Set the modification time (and the access time to now) of the file open as `fd`. */
  setMtimeFd(fd: number, mtime: Date): number
  ftruncate(fd: number, length: number): number
  /** `lseek(fd, offset, SEEK_SET)`. */
  seek(fd: number, offset: number): number
  /** Directory entries of `fd` into `buffer` (`getdents64`); bytes filled, 0 at the end. */
  getdents(fd: number, buffer: Uint8Array): number
  /** Read into `buffer` off the event loop: bytes read, 0 at the end of the file. */
  read(fd: number, buffer: Uint8Array): Promise<number>
  /** Write from `buffer` off the event loop: bytes written. */
  write(fd: number, buffer: Uint8Array): Promise<number>
  /**
   * Bytes that an unprivileged process may still store on the filesystem of `fd` (also an
   * `O_PATH` descriptor): `fstatvfs`'s `f_bavail` blocks of `f_frsize` bytes.
   */
  availableBytes(fd: number): number
  /** `shutdown(fd, SHUT_RDWR)`. */
  shutdown(fd: number): number
  /** The local and remote TCP ports of socket `fd`, or `undefined` when it is not a connected socket. */
  socketPorts(fd: number): { readonly local: number; readonly remote: number } | undefined
  /** The descriptors open in this process. */
  openDescriptors(): number[]
  /** The canonical absolute path of `path` (`realpath(3)`: every symlink resolved), or `-errno`. */
  realpath(path: string): string | number
}

const symbols = {
  __errno_location: { parameters: [], result: "pointer" },
  openat: { parameters: ["i32", "buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32" },
  readlinkat: { parameters: ["i32", "buffer", "buffer", "usize"], result: "isize" },
  realpath: { parameters: ["buffer", "buffer"], result: "pointer" },
  mkdirat: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  unlinkat: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  renameat: { parameters: ["i32", "buffer", "i32", "buffer"], result: "i32" },
  fchmodat: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  utimensat: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32" },
  ftruncate: { parameters: ["i32", "i64"], result: "i32" },
  lseek: { parameters: ["i32", "i64", "i32"], result: "i64" },
  getdents64: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize", nonblocking: true },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize", nonblocking: true },
  readSync: { name: "read", parameters: ["i32", "buffer", "usize"], result: "isize" },
  writeSync: { name: "write", parameters: ["i32", "buffer", "usize"], result: "isize" },
  fstatvfs: { parameters: ["i32", "buffer"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
} as const

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/**
 * Two reused buffers for C strings (`renameat` takes two names): every call that takes one is
 * synchronous and done with it when it returns. A name too long for them gets its own.
 */
const scratch = [new Uint8Array(16 << 10), new Uint8Array(16 << 10)]

/** `text` as a NUL-terminated C string, in the `which` scratch buffer when it fits there. */
const cString = (text: string, which = 0): Uint8Array<ArrayBuffer> => {
  const fits = text.length * 3 < scratch[which].length
  const bytes = fits ? scratch[which] : new Uint8Array(text.length * 3 + 1)
  const { written } = encoder.encodeInto(text, bytes)
  bytes[written] = 0
  return bytes
}

/** glibc's `makedev`, as Deno reports `FileInfo.dev`. */
const makedev = (major: number, minor: number): number =>
  (major & 0xfff) * 0x100 + (minor & 0xff) + (minor - (minor & 0xff)) * 0x1000 + (major - (major & 0xfff)) * 0x100000000

const TWO_32 = 2 ** 32

/**
 * `struct statx` read through 32-bit views (both architectures are little-endian), which is
 * several times cheaper than 64-bit `DataView` reads that go through `BigInt`.
 */
const parseStat = (u32: Uint32Array, i32: Int32Array): Stat => {
  const mode = u32[7] & 0xffff
  return {
    type: mode & S_IFMT,
    mode: mode & 0o7777,
    nlink: u32[4],
    uid: u32[5],
    gid: u32[6],
    ino: u32[8] + u32[9] * TWO_32,
    size: u32[10] + u32[11] * TWO_32,
    mtimeMs: (u32[28] + i32[29] * TWO_32) * 1000 + Math.floor(u32[30] / 1e6),
    dev: makedev(u32[34], u32[35]),
  }
}

const STATX_BASIC_STATS = 0x7ff
/**
 * `struct statvfs` on LP64 Linux (glibc and musl, x86_64 and aarch64 alike): `f_bsize` and
 * `f_frsize` (unsigned long), then `f_blocks`, `f_bfree`, `f_bavail` (64-bit counts), ...; 112
 * bytes in glibc, a little more in musl.
 */
const STATVFS_SIZE = 128
const STATVFS_FRSIZE = 8
const STATVFS_BAVAIL = 32
const SHUT_RDWR = 2
const AF_INET = 2
const AF_INET6 = 10
const UTIME_NOW = (1 << 30) - 1

const load = (): Libc | null => {
  if (Deno.build.os !== "linux") return null
  const O = Deno.build.arch === "x86_64" ? X86_64 : Deno.build.arch === "aarch64" ? AARCH64 : null
  if (O === null) return null
  if (Deno.permissions.querySync?.({ name: "ffi" }).state !== "granted") return null
  let lib: Deno.DynamicLibrary<typeof symbols>
  try {
    lib = Deno.dlopen("libc.so.6", symbols)
  } catch {
    try {
      lib = Deno.dlopen(`libc.musl-${Deno.build.arch}.so.1`, symbols)
    } catch {
      return null
    }
  }
  const c = lib.symbols
  const errnoPointer = c.__errno_location()
  if (errnoPointer === null) return null
  const errnoView = new Deno.UnsafePointerView(errnoPointer)
  /** `result`, or `-errno` when it is negative. */
  const checked = (result: number): number => (result < 0 ? -errnoView.getInt32() : result)
  const statBuffer = new Uint8Array(256)
  const statU32 = new Uint32Array(statBuffer.buffer)
  const statI32 = new Int32Array(statBuffer.buffer)
  const linkBuffer = new Uint8Array(4096)
  const pathBuffer = new Uint8Array(4096)
  const sockaddr = new Uint8Array(128)
  const sockaddrLength = new Uint32Array(1)
  const sockaddrLengthBytes = new Uint8Array(sockaddrLength.buffer)
  /** The port of the `sockaddr` just filled, or `undefined` for another family. */
  const port = (): number | undefined => {
    const family = sockaddr[0] | (sockaddr[1] << 8)
    return family === AF_INET || family === AF_INET6 ? (sockaddr[2] << 8) | sockaddr[3] : undefined
  }
  const procFd = (fd: number) => cString(`/proc/self/fd/${fd}`)
  const statvfsBuffer = new Uint8Array(STATVFS_SIZE)
  const statvfsView = new DataView(statvfsBuffer.buffer)
  const timespecs = new BigInt64Array(4)
  const timespecBytes = new Uint8Array(timespecs.buffer)
  const dirBuffer = new Uint8Array(32 << 10)
  /** Non-blocking I/O that failed is repeated synchronously, which tells errno (see the module comment). */
  const io = async (
    call: (fd: number, buffer: Uint8Array, length: bigint) => Promise<number | bigint>,
    sync: (fd: number, buffer: Uint8Array, length: bigint) => number | bigint,
    fd: number,
    buffer: Uint8Array,
  ): Promise<number> => {
    const n = Number(await call(fd, buffer, BigInt(buffer.length)))
    return n >= 0 ? n : checked(Number(sync(fd, buffer, BigInt(buffer.length))))
  }
  return {
    O,
    openat: (dir, name, flags, mode = 0) => checked(c.openat(dir, cString(name), flags | O.CLOEXEC, mode)),
    close: (fd) => void c.close(fd),
    statx: (dir, name, flags) => {
      const path = typeof name === "string" ? cString(name) : name
      const result = checked(c.statx(dir, path, flags, STATX_BASIC_STATS, statBuffer))
      return result < 0 ? result : parseStat(statU32, statI32)
    },
    readlink: (fd) => {
      const n = checked(Number(c.readlinkat(fd, cString(""), linkBuffer, BigInt(linkBuffer.length))))
      return n < 0 ? n : decoder.decode(linkBuffer.subarray(0, n))
    },
    mkdirat: (dir, name, mode) => checked(c.mkdirat(dir, cString(name), mode)),
    unlinkat: (dir, name, flags) => checked(c.unlinkat(dir, cString(name), flags)),
    renameat: (fromDir, from, toDir, to) => checked(c.renameat(fromDir, cString(from), toDir, cString(to, 1))),
    chmodFd: (fd, mode) => checked(c.fchmodat(AT_FDCWD, procFd(fd), mode, 0)),
    setMtimeFd: (fd, mtime) => {
      const ms = mtime.getTime()
      timespecs[0] = 0n
      timespecs[1] = BigInt(UTIME_NOW)
      timespecs[2] = BigInt(Math.floor(ms / 1000))
      timespecs[3] = BigInt((((ms % 1000) + 1000) % 1000) * 1e6)
      return checked(c.utimensat(AT_FDCWD, procFd(fd), timespecBytes, 0))
    },
    ftruncate: (fd, length) => checked(c.ftruncate(fd, BigInt(length))),
    seek: (fd, offset) => checked(Number(c.lseek(fd, BigInt(offset), 0))),
    getdents: (fd, buffer) => checked(Number(c.getdents64(fd, buffer, BigInt(buffer.length)))),
    read: (fd, buffer) => io(c.read, c.readSync, fd, buffer),
    write: (fd, buffer) => io(c.write, c.writeSync, fd, buffer),
    availableBytes: (fd) => {
      const result = checked(c.fstatvfs(fd, statvfsBuffer))
      if (result < 0) return result
      return Number(statvfsView.getBigUint64(STATVFS_BAVAIL, true) * statvfsView.getBigUint64(STATVFS_FRSIZE, true))
    },
    shutdown: (fd) => checked(c.shutdown(fd, SHUT_RDWR)),
    socketPorts: (fd) => {
      sockaddrLength[0] = sockaddr.length
      if (c.getsockname(fd, sockaddr, sockaddrLengthBytes) !== 0) return undefined
      const local = port()
      sockaddrLength[0] = sockaddr.length
      if (local === undefined || c.getpeername(fd, sockaddr, sockaddrLengthBytes) !== 0) return undefined
      const remote = port()
      return remote === undefined ? undefined : { local, remote }
    },
    realpath: (path) => {
      if (c.realpath(cString(path), pathBuffer) === null) return -errnoView.getInt32()
      return decoder.decode(pathBuffer.subarray(0, pathBuffer.indexOf(0)))
    },
    openDescriptors: () => {
      const dir = checked(c.openat(AT_FDCWD, cString("/proc/self/fd"), O.RDONLY | O.DIRECTORY | O.CLOEXEC, 0))
      if (dir < 0) return []
      const fds: number[] = []
      try {
        const entries = new Dirents(
          dirBuffer,
          (buffer) => checked(Number(c.getdents64(dir, buffer, BigInt(buffer.length)))),
        )
        while (entries.next()) {
          const fd = Number(entries.name())
          if (Number.isInteger(fd) && fd !== dir) fds.push(fd)
        }
      } finally {
        c.close(dir)
      }
      return fds
    },
  }
}

/**
 * The entries of a directory, read with `getdents64` into `buffer` by `fill` (bytes filled, 0 at
 * the end, `-errno`) and visited one at a time, `.` and `..` left out. After `next()` returns
 * true, the entry's name is the bytes `buffer[start, end)`, followed by a NUL: a C string that
 * `statx` takes in place, with no copy and no encoding. `next()` returns false at the end, and
 * then `error` holds the `-errno` of a read that failed (0 if none did).
 */
export class Dirents {
  /** Where the current name starts in `buffer`. */
  start = 0
  /** Where it ends (its NUL). */
  end = 0
  error = 0
  private offset = 0
  private filled = 0

  constructor(readonly buffer: Uint8Array, private readonly fill: (buffer: Uint8Array) => number) {}

  next(): boolean {
    const buffer = this.buffer
    for (;;) {
      if (this.offset >= this.filled) {
        const filled = this.fill(buffer)
        if (filled <= 0) {
          if (filled < 0) this.error = filled
          this.filled = this.offset = 0
          return false
        }
        this.filled = filled
        this.offset = 0
      }
      // struct linux_dirent64: d_ino (8), d_off (8), d_reclen (2), d_type (1), d_name.
      const record = this.offset
      const length = buffer[record + 16] | (buffer[record + 17] << 8)
      this.offset += length
      const start = record + 19
      let end = buffer.indexOf(0, start)
      if (end < 0 || end > record + length) end = record + length
      // "." and ".."
      if (buffer[start] === 0x2e && (end === start + 1 || (end === start + 2 && buffer[start + 1] === 0x2e))) continue
      this.start = start
      this.end = end
      return true
    }
  }

  /** The current entry's name. */
  name(): string {
    const { buffer, start, end } = this
    // Most names are ASCII: read directly, they cost half as much as through the decoder.
    let name = ""
    for (let i = start; i < end; i++) {
      const byte = buffer[i]
      if (byte >= 0x80) return decoder.decode(buffer.subarray(start, end))
      name += String.fromCharCode(byte)
    }
    return name
  }

  /** The current entry's name as a C string, in place. */
  cName(): Uint8Array {
    return this.buffer.subarray(this.start, this.end + 1)
  }
}

let loaded: Libc | null | undefined

/**
 * The C library's calls, loaded once; `null` without `--allow-ffi` or on a platform they are not
 * written for.
 */
export const libc = (): Libc | null => {
  if (loaded === undefined) loaded = load()
  return loaded
}
