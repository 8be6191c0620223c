/**
 * Smaller extensions clients use: AVBL (free space, draft-peterson-streamlined-ftp-command-
 * extensions), CLNT (the client's name, as FileZilla Server and Serv-U take it) and SITE UTIME
 * (set a modification time, in the two forms ProFTPD, Pure-FTPd and their clients use).
 *
 * @module
 */
import * as Effect from "effect/Effect"
import { FilesystemError } from "../../errors.ts"
import { parseMlsxTime } from "../../protocol/listing.ts"
import type { Session } from "../session.ts"
import type { CommandSpec, Handler } from "../table.ts"

/** AVBL [<path>]: `213 <bytes>` free to store in the directory (the current one by default). */
const avbl: Handler = (session, _arg, path) =>
  Effect.gen(function* () {
    const available = session.server.fs.available
    if (available === undefined) {
      return yield* Effect.fail(
        new FilesystemError({
          path: path!.virtual,
          reason: "Other",
          detail: "Can't tell the free space of this storage.",
        }),
      )
    }
    yield* session.reply(213, String(yield* available(path!)))
  })

/** CLNT <name>: the client says what it is; logged, nothing else. */
const clnt: Handler = (session, arg) => Effect.andThen(session.log(`Client: ${arg}`), session.reply(200, "Noted."))

/** A SITE UTIME time: `YYYYMMDDhhmm` or `YYYYMMDDhhmmss`, UTC. */
const utimeTime = (text: string): Date | undefined =>
  /^\d{12}(\d{2})?$/.test(text) ? parseMlsxTime(text.length === 12 ? `${text}00` : text) : undefined

/**
 * The parts of SITE UTIME's argument, or `undefined` when malformed. Three forms:
 * `<time> <path>`, `<path> <atime> <mtime> <ctime> UTC` (ProFTPD, Pure-FTPd, NcFTP) and
 * `<atime> <mtime> <ctime> UTC <path>`.
 */
const utimeParts = (arg: string): { readonly mtime: Date; readonly target: string } | undefined => {
  const words = arg.split(" ")
  const times = (three: ReadonlyArray<string>) => three.every((word) => utimeTime(word) !== undefined)
  if (words.length >= 5 && words[3].toUpperCase() === "UTC" && times(words.slice(0, 3))) {
    return { mtime: utimeTime(words[1])!, target: words.slice(4).join(" ") }
  }
  if (words.length >= 5 && words[words.length - 1].toUpperCase() === "UTC" && times(words.slice(-4, -1))) {
    return { mtime: utimeTime(words[words.length - 3])!, target: words.slice(0, -4).join(" ") }
  }
  const mtime = utimeTime(words[0])
  const target = words.slice(1).join(" ")
  return mtime === undefined || target === "" ? undefined : { mtime, target }
}

/**
 * SITE UTIME: set a file's or directory's modification time (permission `T`). Only the
 * modification time is set: the access time becomes now, and no one can set a change time.
 */
export const siteUtime = (session: Session, arg: string): Effect.Effect<void, FilesystemError> =>
  Effect.gen(function* () {
    if (!session.server.capabilities.setMtime) {
      return yield* session.reply(502, "SITE UTIME not implemented: this storage keeps no modification times.")
    }
    const parts = utimeParts(arg)
    if (parts === undefined) {
      return yield* session.reply(
        501,
        "Invalid SITE UTIME format: use SITE UTIME YYYYMMDDhhmm[ss] path, or path atime mtime ctime UTC.",
      )
    }
    const path = yield* session.resolve(parts.target)
    yield* session.requirePerm("T", path)
    yield* session.server.fs.stat(path)
    yield* session.server.fs.setMtime(path, parts.mtime)
    yield* session.reply(200, "SITE UTIME command successful.")
  })

/** The AVBL and CLNT commands. */
export const extensionCommands: ReadonlyArray<CommandSpec> = [
  {
    name: "AVBL",
    needsLogin: true,
    arg: "optional",
    help: "Syntax: AVBL [<SP> dir-name] (free bytes to store in a directory).",
    // Free space is for those who may store there.
    perm: "w",
    handler: avbl,
  },
  {
    name: "CLNT",
    needsLogin: false,
    arg: "required",
    help: "Syntax: CLNT <SP> client-name (tell the server which client this is).",
    handler: clnt,
  },
]
