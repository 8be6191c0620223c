/**
 * File transfers: RETR, STOR, APPE, STOU. Each opens its file and hands a plan to
 * `startTransfer` (`../transfer.ts`), which runs the data connection and the byte loop.
 *
 * Atomic uploads (`atomicUploads`): STOR and STOU write to a hidden temporary file in the target's
 * directory, renamed over the target only once the whole file has arrived. Hooks get the target's
 * real path on success and the (removed) temporary file's on failure. REST+STOR is refused with
 * 550 and APPE appends in place (see `ServerOptions.atomicUploads`).
 *
 * @module
 */
import * as Effect from "effect/Effect"
import { receiveFile, sendFile } from "../../data/loops.ts"
import { FilesystemError } from "../../errors.ts"
import type { FtpPath, WriteOptions } from "../../fs/filesystem.ts"
import { basename, dirname } from "../../protocol/path.ts"
import type { Session } from "../session.ts"
import { type CommandSpec, type Guard, guards, type Handler, needs } from "../table.ts"
import { needData, opened, startTransfer } from "../transfer.ts"

/** RETR and STOR take the REST offset (it applies to the next transfer only, pyftpdlib's way). */
const takeRest: Guard = (session) =>
  Effect.sync(() => {
    session.transferOffset = session.restOffset
    session.restOffset = 0
    return true
  })

/**
 * REST before STOR gets 550 when there is nothing to resume into: with atomic uploads a cut upload
 * left nothing behind, and some storage can't write into an existing file at all.
 */
const storRest: Guard = (session, arg) =>
  Effect.flatMap(takeRest(session, arg), () => {
    if (session.transferOffset === 0) return Effect.succeed(true)
    const why = !session.server.capabilities.resume
      ? "this storage can't write into an existing file."
      : session.options.atomicUploads
      ? "uploads are atomic here, so a cut one left nothing to resume."
      : undefined
    return why === undefined
      ? Effect.succeed(true)
      : Effect.as(session.reply(550, `Can't resume an upload (REST before STOR): ${why}`), false)
  })

/** APPE and STOU do not resume: a pending REST is dropped with 450. */
const noRest = (name: string): Guard => (session) =>
  Effect.suspend(() => {
    if (session.restOffset === 0) return Effect.succeed(true)
    session.restOffset = 0
    return Effect.as(session.reply(450, `Can't ${name} while REST request is pending.`), false)
  })

const retr: Handler = (session, _arg, path) =>
  Effect.gen(function* () {
    const offset = session.transferOffset
    if (!(yield* needData(session))) return
    const [scope, file] = yield* opened(session.server.fs.openRead(path!, offset))
    const ascii = session.ascii
    yield* startTransfer(session, {
      command: "RETR",
      path: path!,
      direction: "send",
      preliminary: "File status okay. About to open data connection.",
      scope,
      run: (conn, loop) => sendFile(conn, file, ascii, loop, file.size - offset),
    })
  })

const receive = (
  session: Session,
  command: string,
  path: FtpPath,
  options: WriteOptions,
  preliminary: string,
) =>
  Effect.gen(function* () {
    // Storage whose uploads appear only whole needs no temporary file to make them atomic.
    const atomic = session.options.atomicUploads && options.mode === "truncate" &&
      session.server.capabilities.partialUploads
    const temporary = atomic ? yield* temporaryFor(session, path, options.exclusive === true) : undefined
    const [scope, file] = yield* opened(
      temporary === undefined
        ? session.server.fs.openWrite(path, options)
        : session.server.fs.openWrite(temporary, { mode: "truncate", exclusive: true }),
    )
    const ascii = session.ascii
    yield* startTransfer(session, {
      command,
      path,
      direction: "receive",
      preliminary,
      scope,
      run: (conn, loop) => receiveFile(conn, file, ascii, loop),
      temporary,
    })
  })

const encoder = new TextEncoder()
/** Longest target name kept in a temporary name (bytes): the whole must stay under NAME_MAX (255). */
const MAX_NAME_IN_TEMPORARY = 200

/**
 * A fresh hidden name beside `path` for an atomic upload, after checking that the upload could
 * replace `path` at all (so a client does not send a whole file only to be refused at the rename).
 */
const temporaryFor = (session: Session, path: FtpPath, exclusive: boolean) =>
  Effect.gen(function* () {
    const found = yield* Effect.result(session.server.fs.stat(path))
    if (found._tag === "Success") {
      const kind = found.success.kind
      if (exclusive) return yield* new FilesystemError({ path: path.virtual, reason: "AlreadyExists" })
      if (kind === "directory") return yield* new FilesystemError({ path: path.virtual, reason: "IsADirectory" })
      if (kind !== "file") {
        return yield* new FilesystemError({
          path: path.virtual,
          reason: "PermissionDenied",
          detail: "Not a regular file.",
        })
      }
    } else if (found.failure.reason !== "NotFound") {
      return yield* found.failure
    }
    const name = basename(path.virtual)
    const tail = encoder.encode(name).length <= MAX_NAME_IN_TEMPORARY ? `-${name}` : ""
    return yield* session.resolve(`${dirname(path.virtual)}/.ftpd-upload-${crypto.randomUUID().slice(0, 8)}${tail}`)
  })

const stor: Handler = (session, _arg, path) =>
  Effect.gen(function* () {
    const offset = session.transferOffset
    yield* session.newName(path!)
    if (!(yield* needData(session))) return
    const mode = offset > 0 ? { mode: "resume" as const, offset } : { mode: "truncate" as const }
    yield* receive(session, "STOR", path!, mode, "File status okay. About to open data connection.")
  })

const appe: Handler = (session, _arg, path) =>
  Effect.gen(function* () {
    yield* session.newName(path!)
    if (!(yield* needData(session))) return
    yield* receive(session, "APPE", path!, { mode: "append" }, "File status okay. About to open data connection.")
  })

const UNIQUE_TRIES = 20

/** STOU: store under a name the server picks (RFC 1123 4.1.2.9: the 150 reply names it). */
const stou: Handler = (session, arg) =>
  Effect.gen(function* () {
    if (!(yield* needData(session))) return
    const prefix = arg === "" ? "ftpd" : basename(arg)
    for (let i = 0; i < UNIQUE_TRIES; i++) {
      const name = `${prefix}.${crypto.randomUUID().slice(0, 8)}`
      const path = yield* session.resolve(name)
      yield* session.newName(path)
      const result = yield* Effect.result(
        receive(session, "STOU", path, { mode: "truncate", exclusive: true }, `FILE: ${name}`),
      )
      if (result._tag === "Success") return
      if (result.failure.reason !== "AlreadyExists") return yield* Effect.fail(result.failure)
    }
    yield* session.reply(450, "No usable unique file name found.")
  })

/** The transfer commands. */
export const transferCommands: ReadonlyArray<CommandSpec> = [
  {
    name: "RETR",
    needsLogin: true,
    arg: "required",
    help: "Syntax: RETR <SP> file-name (retrieve a file).",
    guard: takeRest,
    perm: "r",
    handler: retr,
  },
  {
    name: "STOR",
    needsLogin: true,
    arg: "required",
    help: "Syntax: STOR <SP> file-name (store a file).",
    guard: storRest,
    perm: "w",
    handler: stor,
  },
  {
    name: "APPE",
    needsLogin: true,
    arg: "required",
    help: "Syntax: APPE <SP> file-name (append data to file).",
    guard: guards(noRest("APPE"), needs("append", 550, "Can't APPE: this storage can't add to an existing file.")),
    perm: "a",
    handler: appe,
  },
  {
    name: "STOU",
    needsLogin: true,
    arg: "optional",
    help: "Syntax: STOU [<SP> name] (store a file with a unique name).",
    guard: noRest("STOU"),
    perm: "w",
    // The argument is a name to start from; the file is created in the current directory.
    path: () => "",
    handler: stou,
  },
]
