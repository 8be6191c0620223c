/**
 * What the descriptor jail does on descriptors it has opened: waiting for the call in flight
 * before a close, streaming a file's bytes, and listing a directory in batches.
 *
 * @module
 */
import { AT_SYMLINK_NOFOLLOW, Dirents, Errno, type Libc, type Stat } from "../sys/libc.ts"
import type { DirectoryListing, FileInfo, FtpPath } from "./filesystem.ts"
import { kindOfType, LIST_BATCH, pauses } from "./_common.ts"
import { failed } from "./_walk.ts"

/** What `statx` says of `name`, as a listing entry. */
export const toFileInfo = (name: string, stat: Stat): FileInfo => ({
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
export class Descriptor {
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

/** The file behind `file` as a byte stream: BYOB reads go straight into the reader's buffer. */
export const byteStream = (c: Libc, file: Descriptor, virtual: string): ReadableStream<Uint8Array> =>
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
 * (32 KiB at a time), each `statx`ed relative to the directory straight from the buffer the names
 * were read into, in batches of {@link LIST_BATCH}, each batch read under `as` (the session's
 * identity), with a pause for other sessions whenever a few milliseconds of work have passed.
 */
export async function* listing(
  c: Libc,
  dir: Descriptor,
  path: FtpPath,
  as: <A>(f: () => A) => A,
): DirectoryListing {
  const entries = new Dirents(new Uint8Array(32 << 10), (into) => c.getdents(dir.fd, into))
  const next = (): { batch: FileInfo[]; done: boolean } => {
    const batch: FileInfo[] = []
    while (batch.length < LIST_BATCH) {
      if (!entries.next()) return { batch, done: true }
      const stat = c.statx(dir.fd, entries.cName(), AT_SYMLINK_NOFOLLOW)
      if (typeof stat !== "number") batch.push(toFileInfo(entries.name(), stat))
      else if (stat !== -Errno.ENOENT) throw failed(path.virtual, stat)
    }
    return { batch, done: false }
  }
  const pause = pauses()
  try {
    for (;;) {
      const { batch, done } = as(next)
      if (done) {
        if (entries.error !== 0) throw failed(path.virtual, entries.error)
        if (batch.length > 0) yield batch
        return
      }
      yield batch
      await pause.between()
    }
  } finally {
    pause.end()
  }
}
