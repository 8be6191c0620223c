/**
 * Listings: LIST and NLST (RFC 959), MLSD and MLST (RFC 3659). LIST, NLST and MLSD stream over
 * the data connection in batches, so a directory of any size is never held in memory.
 * Wildcards are not expanded (RFC 3659 forbids them in MLSx; LIST/NLST treat them literally).
 *
 * @module
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { sendText } from "../../data/loops.ts"
import type { CommandError, FilesystemError } from "../../errors.ts"
import type { DirectoryListing, FileInfo, FtpPath } from "../../fs/filesystem.ts"
import { formatListLine, formatMlsxLine, formatNlstLine, mlsxPerm } from "../../protocol/listing.ts"
import { basename } from "../../protocol/path.ts"
import type { Session } from "../session.ts"
import type { CommandSpec, Handler } from "../table.ts"
import { needData, opened, startTransfer } from "../transfer.ts"

/** `LIST -la dir` → `dir`: clients send `ls` options, which a listing ignores (pyftpdlib does too). */
export const stripListOptions = (arg: string): string => {
  let rest = arg
  while (/^-[a-zA-Z]+(\s|$)/.test(rest)) rest = rest.replace(/^-[a-zA-Z]+\s*/, "")
  return rest
}

/**
 * The entries to list: a directory's batches, or the path itself when it is not a directory. What
 * the listing holds open is released with the scope.
 */
const entries = (session: Session, path: FtpPath): Effect.Effect<
  { readonly directory: boolean; readonly batches: DirectoryListing },
  FilesystemError,
  Scope.Scope
> =>
  Effect.gen(function* () {
    const info = yield* session.server.fs.stat(path)
    if (info.kind === "directory") return { directory: true, batches: yield* session.server.fs.list(path) }
    const single: DirectoryListing = (async function* () {
      yield [{ ...info, name: basename(path.virtual) }]
    })()
    return { directory: false, batches: single }
  })

async function* lines(
  batches: DirectoryListing,
  format: (info: FileInfo) => string,
): AsyncIterable<string> {
  for await (const batch of batches) {
    let text = ""
    for (const info of batch) text += format(info)
    yield text
  }
}

/** An MLSx `perm` fact for `info`, from the user's permissions on the entry's real path. */
const permFact = (session: Session, parent: FtpPath, info: FileInfo, self: boolean): string => {
  const real = self ? parent.real : `${parent.real}/${info.name}`
  const path = { virtual: parent.virtual, real }
  return mlsxPerm(info.kind, (letter) => session.hasPerm(letter, path))
}

const listing = (
  command: string,
  format: (session: Session, dir: FtpPath) => (info: FileInfo) => string,
  directoryOnly: boolean,
): Handler =>
(session, _arg, path) =>
  Effect.gen(function* () {
    if (!(yield* needData(session))) return
    const [scope, found] = yield* opened(entries(session, path!))
    if (directoryOnly && !found.directory) {
      yield* Scope.close(scope, Exit.void)
      return yield* session.reply(501, "No such directory.")
    }
    const formatEntry = format(session, path!)
    yield* startTransfer(session, {
      command,
      path: path!,
      direction: "listing",
      preliminary: "File status okay. About to open data connection.",
      scope,
      run: (conn, loop) => sendText(conn, lines(found.batches, formatEntry), loop),
    })
  })

const listFormat = (session: Session) => {
  const now = Date.now()
  const localTime = session.options.useLocaltime
  return (info: FileInfo) => formatListLine(info, now, localTime)
}

const mlsdFormat = (session: Session, dir: FtpPath) => {
  const facts = session.mlstFacts
  return (info: FileInfo) => `${formatMlsxLine(info, facts, permFact(session, dir, info, false), info.name)}\r\n`
}

const mlst: Handler = (session, _arg, path) =>
  Effect.gen(function* () {
    const info = yield* session.server.fs.stat(path!)
    const facts = formatMlsxLine(info, session.mlstFacts, permFact(session, path!, info, true), path!.virtual)
    // RFC 3659 7.2: the fact line is part of the reply and starts with a space.
    yield* session.reply(250, [`Listing "${path!.virtual}":`, facts, "End MLST."])
  })

/**
 * STAT <path>: a LIST on the control connection (RFC 959), without globbing. The reply is written
 * as the directory is read, batch by batch, so a huge directory is never held in memory; nothing
 * else is written on the control connection meanwhile.
 */
export const statPath = (session: Session, arg: string): Effect.Effect<void, CommandError> =>
  Effect.gen(function* () {
    const target = stripListOptions(arg)
    if (/[*?[]/.test(target)) return yield* session.reply(550, "Globbing is not supported.")
    const path = yield* session.resolve(target)
    yield* session.requirePerm("l", path)
    const found = yield* entries(session, path)
    const format = listFormat(session)
    yield* session.replyStream(213, `Status of "${path.virtual}":`, lines(found.batches, format), "End of status.")
  }).pipe(Effect.scoped)

const listed = { perm: "l", path: stripListOptions } as const

/** The listing commands. */
export const listingCommands: ReadonlyArray<CommandSpec> = [
  {
    name: "LIST",
    needsLogin: true,
    arg: "optional",
    help: "Syntax: LIST [<SP> path] (list files).",
    ...listed,
    handler: listing("LIST", listFormat, false),
  },
  {
    name: "NLST",
    needsLogin: true,
    arg: "optional",
    help: "Syntax: NLST [<SP> path] (list path in a compact form).",
    ...listed,
    handler: listing("NLST", () => (info) => formatNlstLine(info.name), false),
  },
  {
    name: "MLSD",
    needsLogin: true,
    arg: "optional",
    help: "Syntax: MLSD [<SP> path] (list directory).",
    ...listed,
    handler: listing("MLSD", mlsdFormat, true),
  },
  {
    name: "MLST",
    needsLogin: true,
    arg: "optional",
    help: "Syntax: MLST [<SP> path] (show information about path).",
    perm: "l",
    handler: mlst,
  },
]
