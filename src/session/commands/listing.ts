/**
 * Listings: LIST and NLST (RFC 959), MLSD and MLST (RFC 3659). LIST, NLST and MLSD stream over
 * the data connection in batches, so a directory of any size is never held in memory.
 *
 * LIST and NLST expand wildcards in the last component of their path (`NLST *.bin`, which `mget`
 * sends; see `protocol/glob.ts`): the entries of that one directory whose names match, never
 * recursively, each named as the client wrote its directory (`NLST sub/*.bin` lists `sub/a.bin`,
 * which a client can RETR as it is). At most {@link MAX_GLOB_MATCHES} names: past them the
 * listing ends with 451. MLSD and MLST take wildcards literally (RFC 3659 2.2.2), and STAT
 * refuses them (550).
 *
 * @module
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { sendText } from "../../data/loops.ts"
import { type CommandError, FilesystemError } from "../../errors.ts"
import type { DirectoryListing, FileInfo, FtpPath } from "../../fs/filesystem.ts"
import { type AccountNames, formatListLine, formatMlsxLine, formatNlstLine, mlsxPerm } from "../../protocol/listing.ts"
import { groupName, userName } from "../../sys/accounts.ts"
import { globMatcher, splitGlob } from "../../protocol/glob.ts"
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

/** Most names a wildcard listing sends; past them it ends with 451 (a pattern that matches a huge directory). */
export const MAX_GLOB_MATCHES = 10_000

/** The entries of `batches` whose names match `pattern`, named `prefix` + name; at most {@link MAX_GLOB_MATCHES}. */
async function* matching(batches: DirectoryListing, pattern: string, prefix: string, path: FtpPath): DirectoryListing {
  const match = globMatcher(pattern)
  let count = 0
  for await (const batch of batches) {
    const kept = batch.filter((info) => match(info.name)).map((info) => ({ ...info, name: prefix + info.name }))
    count += kept.length
    if (count > MAX_GLOB_MATCHES) {
      throw new FilesystemError({
        path: path.virtual,
        reason: "Other",
        detail: `more than ${MAX_GLOB_MATCHES} names match ${pattern}: narrow the pattern.`,
      })
    }
    if (kept.length > 0) yield kept
  }
}

/**
 * The entries a LIST or NLST argument names: with a wildcard in its last component, the matching
 * entries of its directory (the row resolved and checked that directory); else those of the path.
 */
const listed = (session: Session, arg: string, path: FtpPath) =>
  Effect.gen(function* () {
    const glob = splitGlob(stripListOptions(arg))
    if (glob === undefined) return yield* entries(session, path)
    const info = yield* session.server.fs.stat(path)
    if (info.kind !== "directory") return yield* new FilesystemError({ path: path.virtual, reason: "NotADirectory" })
    const prefix = glob.directory === "" ? "" : glob.directory.endsWith("/") ? glob.directory : `${glob.directory}/`
    const batches = matching(yield* session.server.fs.list(path), glob.pattern, prefix, path)
    return { directory: true, batches }
  })

async function* lines(
  batches: DirectoryListing,
  format: (info: FileInfo) => string,
): AsyncIterable<string> {
  for await (const batch of batches) {
    // One join makes one flat string, which encodes faster than a rope of a batch's many pieces.
    const text: string[] = new Array(batch.length)
    for (let i = 0; i < batch.length; i++) text[i] = format(batch[i])
    yield text.join("")
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
(session, arg, path) =>
  Effect.gen(function* () {
    if (!(yield* needData(session))) return
    const [scope, found] = yield* opened(directoryOnly ? entries(session, path!) : listed(session, arg, path!))
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

/** The system's user and group names, for the `unix.owner` and `unix.group` facts of a filesystem with Unix owners. */
const SYSTEM_NAMES: AccountNames = { user: userName, group: groupName }

const namesFor = (session: Session): AccountNames | undefined =>
  session.server.capabilities.unixFacts ? SYSTEM_NAMES : undefined

const mlsdFormat = (session: Session, dir: FtpPath) => {
  const facts = session.mlstFacts
  const names = namesFor(session)
  return (info: FileInfo) =>
    `${formatMlsxLine(info, facts, permFact(session, dir, info, false), info.name, undefined, names)}\r\n`
}

/**
 * MLST describes the path itself, a symlink as a symlink (`type=OS.unix=symlink`, the link's own
 * size and time), just as MLSD lists it: RFC 3659 7.2 lets a server follow links or not, and one
 * rule for both commands lets a client compare their answers. A client follows a link with CWD or
 * RETR, which do.
 */
const mlst: Handler = (session, _arg, path) =>
  Effect.gen(function* () {
    const info = yield* session.server.fs.lstat(path!)
    const perm = permFact(session, path!, info, true)
    const facts = formatMlsxLine(info, session.mlstFacts, perm, path!.virtual, undefined, namesFor(session))
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

/** MLSD's path: its argument, wildcards and all. */
const literal = { perm: "l", path: stripListOptions } as const

/** LIST's and NLST's path: the directory a wildcard is matched in, else the argument. */
const globbed = {
  perm: "l",
  path: (arg: string) => {
    const target = stripListOptions(arg)
    return splitGlob(target)?.directory ?? target
  },
} as const

/** The listing commands. */
export const listingCommands: ReadonlyArray<CommandSpec> = [
  {
    name: "LIST",
    needsLogin: true,
    arg: "optional",
    help: "Syntax: LIST [<SP> path] (list files).",
    ...globbed,
    handler: listing("LIST", listFormat, false),
  },
  {
    name: "NLST",
    needsLogin: true,
    arg: "optional",
    help: "Syntax: NLST [<SP> path] (list path in a compact form).",
    ...globbed,
    handler: listing("NLST", () => (info) => formatNlstLine(info.name), false),
  },
  {
    name: "MLSD",
    needsLogin: true,
    arg: "optional",
    help: "Syntax: MLSD [<SP> path] (list directory).",
    ...literal,
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
