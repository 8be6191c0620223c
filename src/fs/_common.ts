/**
 * What the local filesystems share: virtual path checks, file kinds, listing batches.
 *
 * @module
 */
import * as Effect from "effect/Effect"
import { FilesystemError } from "../errors.ts"
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG, S_IFSOCK } from "../sys/libc.ts"
import { basename } from "../protocol/path.ts"
import type { FileInfo } from "./filesystem.ts"

/** Entries per listing batch. */
export const LIST_BATCH = 256

/** Milliseconds of listing work between two pauses for other sessions. */
const BUSY_MS = 4

/**
 * A pause for the event loop, taken only when `BUSY_MS` have passed since the last one: a
 * listing of a huge directory then never holds up other sessions for longer, and a small one
 * never waits. Call the returned function between batches.
 */
export const pause = (): () => Promise<void> => {
  let last = performance.now()
  return () => {
    const now = performance.now()
    if (now - last < BUSY_MS) return Promise.resolve()
    return new Promise((resolve) =>
      setTimeout(() => {
        last = performance.now()
        resolve()
      }, 0)
    )
  }
}

/** A virtual path must be absolute and normalized; the protocol layer guarantees it, the jail checks it. */
export const checkVirtual = (virtual: string): FilesystemError | undefined => {
  if (virtual.includes("\0")) return new FilesystemError({ path: virtual, reason: "BadName" })
  if (!virtual.startsWith("/") || virtual.split("/").some((c) => c === "." || c === "..")) {
    return new FilesystemError({ path: virtual, reason: "OutsideHome" })
  }
  return undefined
}

/** The name `stat` reports for a virtual path: its last component, `/` for the root. */
export const nameOf = (virtual: string): string => basename(virtual) || "/"

/** The kind of a file from its `S_IFMT` bits. */
export const kindOfType = (type: number): FileInfo["kind"] => {
  switch (type) {
    case S_IFREG:
      return "file"
    case S_IFDIR:
      return "directory"
    case S_IFLNK:
      return "symlink"
    case S_IFIFO:
      return "fifo"
    case S_IFSOCK:
      return "socket"
    case S_IFBLK:
      return "blockDevice"
    case S_IFCHR:
      return "charDevice"
    default:
      return "other"
  }
}

/** The kind of a file as Deno reports it. */
export const kindOf = (info: Deno.FileInfo): FileInfo["kind"] =>
  info.isSymlink
    ? "symlink"
    : info.isDirectory
    ? "directory"
    : info.isFile
    ? "file"
    : info.isFifo
    ? "fifo"
    : info.isSocket
    ? "socket"
    : info.isBlockDevice
    ? "blockDevice"
    : info.isCharDevice
    ? "charDevice"
    : "other"

/**
 * Run `f`, turning a thrown `FilesystemError` into a failure; anything else thrown is a defect
 * (a bug, not a client's doing).
 */
export const attemptSync = <A>(f: () => A): Effect.Effect<A, FilesystemError> =>
  Effect.suspend(() => {
    try {
      return Effect.succeed(f())
    } catch (error) {
      if (error instanceof FilesystemError) return Effect.fail(error)
      throw error
    }
  })
