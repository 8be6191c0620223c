/**
 * A log file that lines are appended to: the server log (`--log-file`) and the transfer log
 * (`--xferlog`). Lines written in one turn of the event loop go out in one write after it, as on
 * standard error. {@link LogFile.reopen} closes the file and opens the same path again, so that
 * after logrotate has moved it away (and sent SIGHUP) new lines go to a fresh file.
 *
 * @module
 */

const encoder = new TextEncoder()

const open = (path: string): Deno.FsFile => Deno.openSync(path, { append: true, create: true, mode: 0o640 })

/** Why a log file can't be opened, in a few words (`no such directory`, `permission denied`, ...). */
export const openFailure = (error: unknown): string =>
  error instanceof Deno.errors.NotFound
    ? "no such directory"
    : error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.NotCapable
    ? "permission denied"
    : error instanceof Deno.errors.IsADirectory
    ? "is a directory"
    : String((error as Error).message ?? error)

/** A file lines are appended to. */
export class LogFile {
  private file: Deno.FsFile | null
  private pending = ""
  private queued = false
  private readonly flushOnExit = () => this.flush()

  /** Open (or create) `path` for appending; throws an `Error` saying why it can't. */
  constructor(readonly path: string) {
    try {
      this.file = open(path)
    } catch (error) {
      throw new Error(`can't open ${path}: ${openFailure(error)}`)
    }
    globalThis.addEventListener("unload", this.flushOnExit)
  }

  /** Append `line` and a line feed (soon: lines are gathered until the end of this turn of the event loop). */
  write(line: string): void {
    this.pending += line + "\n"
    if (this.queued) return
    this.queued = true
    queueMicrotask(() => this.flush())
  }

  /** Write what is gathered now; `writeSync` may write less than asked. */
  flush(): void {
    this.queued = false
    if (this.pending === "" || this.file === null) return
    const bytes = encoder.encode(this.pending)
    this.pending = ""
    try {
      for (let offset = 0; offset < bytes.length;) offset += this.file.writeSync(bytes.subarray(offset))
    } catch {
      // A full disk or a file gone bad: logging must not take the server down.
    }
  }

  /**
   * Close the file and open its path again (after logrotate moved it). If the path can't be
   * opened now, the old file stays in use and the error is thrown.
   */
  reopen(): void {
    this.flush()
    const next = open(this.path)
    this.file?.close()
    this.file = next
  }

  /** Write what is left and close the file. */
  close(): void {
    this.flush()
    globalThis.removeEventListener("unload", this.flushOnExit)
    try {
      this.file?.close()
    } catch {
      // Closed already.
    }
    this.file = null
  }
}
