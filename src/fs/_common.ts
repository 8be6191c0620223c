/**
 * What the local filesystems share: virtual path checks, file kinds, listing batches.
 *
 * @module
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Scope from "effect/Scope"
import { FilesystemError } from "../errors.ts"
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG, S_IFSOCK } from "../sys/libc.ts"
import { basename } from "../protocol/path.ts"
import type { FileInfo, FtpPath } from "./filesystem.ts"

/** Entries per listing batch. */
export const LIST_BATCH = 256

/**
 * Milliseconds of work a listing does between two turns of the event loop for other sessions,
 * when it runs alone. A pause is a timer, the only wait that lets the runtime poll other sockets,
 * and it sleeps about 2 ms: a listing that paused every 4 ms spent a third of its time asleep.
 */
const BUSY_MS = 16

/**
 * The same for each of several listings running at once: they pause in turn, so the event loop
 * turns after the work of all of them, which must stay short.
 */
const SHARED_BUSY_MS = 4

/** A listing that has not asked for a pause for this long is not running (it waits on its client). */
const IDLE_MS = 100

/** When each running listing last asked for a pause. */
const running = new Set<{ at: number }>()

/** The pauses of one listing. */
export interface Pauses {
  /**
   * Call between batches: a pause when this listing has worked `BUSY_MS` since its last one
   * (`SHARED_BUSY_MS` while others run). A listing of a huge directory then never holds up other
   * sessions for long, and a small one never waits.
   */
  readonly between: () => Promise<void>
  /** Call when the listing ends, however it ends. */
  readonly end: () => void
}

/** The pauses of a listing that starts now. */
export const pauses = (): Pauses => {
  const self = { at: performance.now() }
  let last = self.at
  running.add(self)
  return {
    between: () => {
      const now = performance.now()
      self.at = now
      running.add(self)
      let sharing = 0
      for (const listing of running) {
        if (now - listing.at > IDLE_MS) running.delete(listing)
        else sharing++
      }
      if (now - last < (sharing === 1 ? BUSY_MS : SHARED_BUSY_MS)) return Promise.resolve()
      return new Promise((resolve) =>
        setTimeout(() => {
          last = performance.now()
          resolve()
        }, 0)
      )
    },
    end: () => void running.delete(self),
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

/**
 * The `truncate` mode of `openWrite` (see `WriteOptions`): the file is emptied just before the
 * first byte is written, or, when an upload completes with no byte at all, when its scope closes
 * with success; an upload that fails before its first byte (no data connection: 425) leaves the
 * file as it was. Returns `write` wrapped to truncate first.
 */
export const truncateOnFirstWrite = (
  path: FtpPath,
  truncate: () => Promise<void>,
  write: (chunk: Uint8Array) => Promise<void>,
): Effect.Effect<(chunk: Uint8Array) => Promise<void>, never, Scope.Scope> =>
  Effect.gen(function* () {
    let pending = true
    yield* Effect.addFinalizer((exit) =>
      pending && Exit.isSuccess(exit)
        ? Effect.tryPromise(truncate).pipe(
          // The upload was complete and is reported so; a file that could not be emptied is the server's to see.
          Effect.catch((error) =>
            Effect.logWarning(`Could not empty ${path.real} for an empty upload: ${error.cause}`)
          ),
        )
        : Effect.void
    )
    return async (chunk) => {
      if (pending && chunk.length > 0) {
        await truncate()
        pending = false
      }
      await write(chunk)
    }
  })
