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
import type { Session } from "../session.ts"
import { type CommandSpec, type Guard, type Handler, needs } from "../table.ts"

const refuse = (path: FtpPath, detail: string) =>
  Effect.fail(new FilesystemError({ path: path.virtual, reason: "PermissionDenied", detail }))

const pwd: Handler = (session) => session.reply(257, `"${quotePath(session.cwd)}" is the current directory.`)

/** CWD and CDUP: the row has resolved the path and checked `e`. */
const changeDirectory: Handler = (session, _arg, path) =>
  Effect.gen(function* () {
    const { fs } = session.server
    const info = yield* (fs.enter ?? fs.stat)(path!)
    if (info.kind !== "directory") {
      return yield* Effect.fail(new FilesystemError({ path: path!.virtual, reason: "NotADirectory" }))
    }
    session.cwd = path!.virtual
    yield* session.reply(250, `"${quotePath(path!.virtual)}" is the current directory.`)
  })

const mkd: Handler = (session, _arg, path) =>
  Effect.gen(function* () {
    yield* session.newName(path!)
    yield* session.server.fs.mkdir(path!)
    yield* session.reply(257, `"${quotePath(path!.virtual)}" directory created.`)
    yield* session.server.events.emit({ type: "fileChanged", session, change: "directoryCreated", path: path! })
  })

const rmd: Handler = (session, _arg, path) =>
  Effect.gen(function* () {
    if (path!.virtual === "/") return yield* refuse(path!, "Can't remove root directory.")
    yield* session.server.fs.rmdir(path!)
    yield* session.reply(250, "Directory removed.")
    yield* session.server.events.emit({ type: "fileChanged", session, change: "directoryRemoved", path: path! })
  })

const dele: Handler = (session, _arg, path) =>
  Effect.gen(function* () {
    yield* session.server.fs.remove(path!)
    yield* session.reply(250, "File removed.")
    yield* session.server.events.emit({ type: "fileChanged", session, change: "deleted", path: path! })
  })

/** A new RNFR forgets the last one first, even if its own path is refused. */
const forgetRenameSource: Guard = (session) =>
  Effect.sync(() => {
    session.renameFrom = null
    return true
  })

const rnfr: Handler = (session, _arg, path) =>
  Effect.gen(function* () {
    if (path!.virtual === "/") return yield* refuse(path!, "Can't rename home directory.")
    yield* session.server.fs.lstat(path!)
    session.renameFrom = path!
    yield* session.reply(350, "Ready for destination name.")
  })

/**
 * RNTO names two paths: the source checked by RNFR, and its own, checked here (the filesystem
 * checks both again at the moment of the rename).
 */
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
    yield* session.server.events.emit({ type: "fileChanged", session, change: "renamed", path: from, to })
  })

/** A regular file's info, or 550 "not retrievable" (pyftpdlib's text for SIZE/MDTM of a directory). */
const regularFile = (session: Session, path: FtpPath) =>
  Effect.gen(function* () {
    const info = yield* session.server.fs.stat(path)
    if (info.kind !== "file") return yield* refuse(path, `"${path.virtual}" is not retrievable.`)
    return info
  })

/** RFC 3659 4: the size depends on TYPE; computing it for ASCII means reading the whole file. */
const binaryOnly: Guard = (session) =>
  session.ascii ? Effect.as(session.reply(550, "SIZE not allowed in ASCII mode."), false) : Effect.succeed(true)

const size: Handler = (session, _arg, path) =>
  Effect.gen(function* () {
    const info = yield* regularFile(session, path!)
    yield* session.reply(213, String(info.size))
  })

const mdtm: Handler = (session, _arg, path) =>
  Effect.gen(function* () {
    const info = yield* regularFile(session, path!)
    yield* session.reply(213, mlsxTime(info.mtime ?? new Date(0)))
  })

/** MFMT's two parts, `YYYYMMDDHHMMSS path`, or `undefined` when either is missing or malformed. */
const mfmtParts = (arg: string): { readonly when: Date; readonly target: string } | undefined => {
  const space = arg.indexOf(" ")
  const when = space < 0 ? undefined : parseMlsxTime(arg.slice(0, space))
  const target = space < 0 ? "" : arg.slice(space + 1)
  return when === undefined || target === "" ? undefined : { when, target }
}

const mfmt: Handler = (session, arg, path) =>
  Effect.gen(function* () {
    const parts = mfmtParts(arg)
    if (parts === undefined || path === undefined) {
      return yield* session.reply(501, "Invalid MFMT format: use MFMT YYYYMMDDHHMMSS path.")
    }
    yield* regularFile(session, path)
    yield* session.server.fs.setMtime(path, parts.when)
    yield* session.reply(213, `Modify=${mlsxTime(parts.when)}; ${path.virtual}.`)
  })

const row = (
  name: string,
  arg: CommandSpec["arg"],
  help: string,
  handler: Handler,
  rules: Pick<CommandSpec, "perm" | "path" | "guard"> = {},
): CommandSpec => ({ name, needsLogin: true, arg, help, handler, ...rules })

const toDirectory = { perm: "e", path: (arg: string) => (arg === "" ? "/" : arg) } as const
const toParent = { perm: "e", path: () => ".." } as const

/** The directory and file commands. */
export const fileCommands: ReadonlyArray<CommandSpec> = [
  row("PWD", "none", "Syntax: PWD (get current working directory).", pwd),
  row("XPWD", "none", "Syntax: XPWD (obsolete) (get current dir).", pwd),
  row("CWD", "optional", "Syntax: CWD [<SP> dir-name] (change working directory).", changeDirectory, toDirectory),
  row("XCWD", "optional", "Syntax: XCWD [<SP> dir-name] (obsolete) (change directory).", changeDirectory, toDirectory),
  row("CDUP", "none", "Syntax: CDUP (go to parent directory).", changeDirectory, toParent),
  row("XCUP", "none", "Syntax: XCUP (obsolete) (go to parent directory).", changeDirectory, toParent),
  row("MKD", "required", "Syntax: MKD <SP> path (create directory).", mkd, { perm: "m" }),
  row("XMKD", "required", "Syntax: XMKD <SP> path (obsolete) (create directory).", mkd, { perm: "m" }),
  row("RMD", "required", "Syntax: RMD <SP> dir-name (remove directory).", rmd, { perm: "d" }),
  row("XRMD", "required", "Syntax: XRMD <SP> dir-name (obsolete) (remove directory).", rmd, { perm: "d" }),
  row("DELE", "required", "Syntax: DELE <SP> file-name (delete file).", dele, { perm: "d" }),
  row("RNFR", "required", "Syntax: RNFR <SP> file-name (file renaming (source name)).", rnfr, {
    perm: "f",
    guard: forgetRenameSource,
  }),
  row("RNTO", "required", "Syntax: RNTO <SP> file-name (file renaming (destination name)).", rnto),
  row("SIZE", "required", "Syntax: SIZE <SP> file-name (get file size).", size, { perm: "l", guard: binaryOnly }),
  row("MDTM", "required", "Syntax: MDTM [<SP> path] (file last modification time).", mdtm, { perm: "l" }),
  row("MFMT", "required", "Syntax: MFMT <SP> timeval <SP> path (file update last modification time).", mfmt, {
    guard: needs("setMtime", 502, "MFMT not implemented: this storage keeps no modification times."),
    perm: "T",
    path: (arg) => mfmtParts(arg)?.target,
  }),
]
