/**
 * Directories and files: PWD CWD CDUP MKD RMD DELE RNFR RNTO SIZE MDTM MFMT, and the RFC 1123
 * aliases XPWD XCWD XCUP XMKD XRMD.
 *
 * @module
 */
import * as Effect from "effect/Effect"
import { FilesystemError } from "../../errors.ts"
import type { FtpPath } from "../../fs/filesystem.ts"
import { mlsxTime, parseMlsxTime } from "../../protocol/listing.ts"
import { quotePath } from "../../protocol/reply.ts"
import type { CommandSpec, Handler, Session } from "../session.ts"

const refuse = (path: FtpPath, detail: string) =>
  Effect.fail(new FilesystemError({ path: path.virtual, reason: "PermissionDenied", detail }))

const pwd: Handler = (session) => session.reply(257, `"${quotePath(session.cwd)}" is the current directory.`)

const changeDirectory = (session: Session, arg: string) =>
  Effect.gen(function* () {
    const path = yield* session.resolve(arg === "" ? "/" : arg)
    yield* session.requirePerm("e", path)
    const info = yield* session.server.fs.stat(path)
    if (info.kind !== "directory") {
      return yield* Effect.fail(new FilesystemError({ path: path.virtual, reason: "NotADirectory" }))
    }
    session.cwd = path.virtual
    yield* session.reply(250, `"${quotePath(path.virtual)}" is the current directory.`)
  })

const cwd: Handler = (session, arg) => changeDirectory(session, arg)
const cdup: Handler = (session) => changeDirectory(session, "..")

const mkd: Handler = (session, arg) =>
  Effect.gen(function* () {
    const path = yield* session.resolve(arg)
    yield* session.requirePerm("m", path)
    yield* session.newName(path)
    yield* session.server.fs.mkdir(path)
    yield* session.reply(257, `"${quotePath(path.virtual)}" directory created.`)
  })

const rmd: Handler = (session, arg) =>
  Effect.gen(function* () {
    const path = yield* session.resolve(arg)
    if (path.virtual === "/") return yield* refuse(path, "Can't remove root directory.")
    yield* session.requirePerm("d", path)
    yield* session.server.fs.rmdir(path)
    yield* session.reply(250, "Directory removed.")
  })

const dele: Handler = (session, arg) =>
  Effect.gen(function* () {
    const path = yield* session.resolve(arg)
    yield* session.requirePerm("d", path)
    yield* session.server.fs.remove(path)
    yield* session.reply(250, "File removed.")
  })

const rnfr: Handler = (session, arg) =>
  Effect.gen(function* () {
    session.renameFrom = null
    const path = yield* session.resolve(arg)
    if (path.virtual === "/") return yield* refuse(path, "Can't rename home directory.")
    yield* session.requirePerm("f", path)
    yield* session.server.fs.lstat(path)
    session.renameFrom = path
    yield* session.reply(350, "Ready for destination name.")
  })

const rnto: Handler = (session, arg) =>
  Effect.gen(function* () {
    const from = session.renameFrom
    session.renameFrom = null
    if (from === null) return yield* session.reply(503, "Bad sequence of commands: use RNFR first.")
    const to = yield* session.resolve(arg)
    yield* session.requirePerm("f", to)
    yield* session.newName(to)
    yield* session.server.fs.rename(from, to)
    yield* session.reply(250, "Renaming ok.")
  })

/** A regular file's info, or 550 "not retrievable" (pyftpdlib's text for SIZE/MDTM of a directory). */
const regularFile = (session: Session, path: FtpPath) =>
  Effect.gen(function* () {
    const info = yield* session.server.fs.stat(path)
    if (info.kind !== "file") return yield* refuse(path, `"${path.virtual}" is not retrievable.`)
    return info
  })

const size: Handler = (session, arg) =>
  Effect.gen(function* () {
    // RFC 3659 4: the size depends on TYPE; computing it for ASCII means reading the whole file.
    if (session.ascii) return yield* session.reply(550, "SIZE not allowed in ASCII mode.")
    const path = yield* session.resolve(arg)
    yield* session.requirePerm("l", path)
    const info = yield* regularFile(session, path)
    yield* session.reply(213, String(info.size))
  })

const mdtm: Handler = (session, arg) =>
  Effect.gen(function* () {
    const path = yield* session.resolve(arg)
    yield* session.requirePerm("l", path)
    const info = yield* regularFile(session, path)
    yield* session.reply(213, mlsxTime(info.mtime ?? new Date(0)))
  })

const mfmt: Handler = (session, arg) =>
  Effect.gen(function* () {
    const space = arg.indexOf(" ")
    const when = space < 0 ? undefined : parseMlsxTime(arg.slice(0, space))
    const target = space < 0 ? "" : arg.slice(space + 1)
    if (when === undefined || target === "") {
      return yield* session.reply(501, "Invalid MFMT format: use MFMT YYYYMMDDHHMMSS path.")
    }
    const path = yield* session.resolve(target)
    yield* session.requirePerm("T", path)
    yield* regularFile(session, path)
    yield* session.server.fs.setMtime(path, when)
    yield* session.reply(213, `Modify=${mlsxTime(when)}; ${path.virtual}.`)
  })

const row = (
  name: string,
  arg: CommandSpec["arg"],
  help: string,
  handler: Handler,
): CommandSpec => ({ name, needsLogin: true, arg, help, handler })

/** The directory and file commands. */
export const fileCommands: ReadonlyArray<CommandSpec> = [
  row("PWD", "none", "Syntax: PWD (get current working directory).", pwd),
  row("XPWD", "none", "Syntax: XPWD (obsolete) (get current dir).", pwd),
  row("CWD", "optional", "Syntax: CWD [<SP> dir-name] (change working directory).", cwd),
  row("XCWD", "optional", "Syntax: XCWD [<SP> dir-name] (obsolete) (change directory).", cwd),
  row("CDUP", "none", "Syntax: CDUP (go to parent directory).", cdup),
  row("XCUP", "none", "Syntax: XCUP (obsolete) (go to parent directory).", cdup),
  row("MKD", "required", "Syntax: MKD <SP> path (create directory).", mkd),
  row("XMKD", "required", "Syntax: XMKD <SP> path (obsolete) (create directory).", mkd),
  row("RMD", "required", "Syntax: RMD <SP> dir-name (remove directory).", rmd),
  row("XRMD", "required", "Syntax: XRMD <SP> dir-name (obsolete) (remove directory).", rmd),
  row("DELE", "required", "Syntax: DELE <SP> file-name (delete file).", dele),
  row("RNFR", "required", "Syntax: RNFR <SP> file-name (file renaming (source name)).", rnfr),
  row("RNTO", "required", "Syntax: RNTO <SP> file-name (file renaming (destination name)).", rnto),
  row("SIZE", "required", "Syntax: SIZE <SP> file-name (get file size).", size),
  row("MDTM", "required", "Syntax: MDTM [<SP> path] (file last modification time).", mdtm),
  row("MFMT", "required", "Syntax: MFMT <SP> timeval <SP> path (file update last modification time).", mfmt),
]
