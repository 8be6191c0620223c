/**
 * Information and settings: SYST NOOP HELP FEAT OPTS STAT ALLO MODE STRU TYPE, and SITE with
 * its CHMOD, UTIME and HELP subcommands plus the application's own (`siteCommands`).
 *
 * @module
 */
import * as Effect from "effect/Effect"
import { FilesystemError } from "../../errors.ts"
import { featMlstLine, parseOptsMlst } from "../../protocol/listing.ts"
import type { SiteCommand } from "../../options.ts"
import { LOG_IN_FIRST, type Session } from "../session.ts"
import type { CommandSpec, Handler } from "../table.ts"
import { featChecksums, optsHash } from "./checksums.ts"
import { siteUtime } from "./extensions.ts"
import { statPath } from "./listing.ts"

const syst: Handler = (session) => session.reply(215, "UNIX Type: L8")

const noop: Handler = (session) => session.reply(200, "NOOP command successful.")

const allo: Handler = (session) => session.reply(202, "No storage allocation necessary.")

const help: Handler = (session, arg) => {
  const { commands, tls } = session.server
  // As FEAT does, HELP offers the FTPS commands only when TLS is configured.
  const shown = (spec: CommandSpec | undefined): spec is CommandSpec =>
    spec !== undefined && (!spec.tls || tls !== null)
  if (arg !== "") {
    const spec = commands.get(arg.trim().toUpperCase())
    return shown(spec) ? session.reply(214, spec.help) : session.reply(501, "Unrecognized command.")
  }
  const names = [...commands.values()].filter(shown).map((spec) => spec.name).sort()
  const rows: string[] = []
  for (let i = 0; i < names.length; i += 8) rows.push(names.slice(i, i + 8).map((n) => n.padEnd(6)).join(" "))
  return session.reply(214, ["The following commands are recognized:", ...rows, "Help command successful."])
}

/** Every extension (RFC 2389) the server implements, as this session's settings and the filesystem allow. */
const feat: Handler = (session) =>
  session.reply(211, [
    "Features supported:",
    ...(session.server.tls === null ? [] : ["AUTH TLS", "AUTH SSL", "PBSZ", "PROT"]),
    ...(session.server.fs.available === undefined ? [] : ["AVBL"]),
    "CLNT",
    "EPRT",
    "EPSV",
    ...featChecksums(session),
    "HOST",
    "MDTM",
    ...(session.server.capabilities.setMtime ? ["MFMT"] : []),
    featMlstLine(session.mlstFacts, session.server.mlsxFacts),
    "REST STREAM",
    "SIZE",
    "TVFS",
    "UTF8",
    "End FEAT.",
  ])

const opts: Handler = (session, arg) => {
  const [option = "", ...rest] = arg.trim().split(/\s+/)
  const value = rest.join(" ")
  switch (option.toUpperCase()) {
    case "UTF8":
    case "UTF-8": {
      // Paths are always UTF-8 (RFC 2640); OFF would ask for another encoding, which this server
      // does not speak: 504, the reply for a command it knows with a parameter it does not implement.
      const mode = value.toUpperCase()
      if (mode === "" || mode === "ON") return session.reply(200, "Always in UTF8 mode.")
      if (mode === "OFF") return session.reply(504, "UTF8 can't be turned off: paths are always UTF-8.")
      return session.reply(501, "Invalid OPTS UTF8 argument: use ON.")
    }
    case "HASH":
      return optsHash(session, value)
    case "MLST": {
      session.mlstFacts = parseOptsMlst(value, session.server.mlsxFacts)
      const facts = [...session.mlstFacts].map((f) => `${f};`).join("")
      return session.reply(200, `MLST OPTS ${facts}`)
    }
    default:
      return session.reply(501, "Invalid OPTS argument: only UTF8, MLST and HASH are supported.")
  }
}

const dataStatus = (session: Session): string => {
  const transfer = session.transfer
  if (transfer !== null) {
    const seconds = ((Date.now() - transfer.started) / 1000).toFixed(1)
    const progress = `${transfer.progress.bytes} bytes in ${seconds} seconds.`
    if (transfer.status !== undefined) return `${transfer.status}: ${progress}`
    return `Data connection open: ${transfer.command} ${transfer.path}, ${progress}`
  }
  if (session.data?.kind === "passive") return "Passive data channel waiting for connection."
  if (session.data?.kind === "active") return "Active data connection established."
  return "Data connection closed."
}

const stat: Handler = (session, arg) => {
  // RFC 959 4.1.3: during a transfer, STAT (with or without a path) reports on the transfer; so a
  // session never has more than one listing running.
  if (arg !== "" && session.transfer === null) {
    if (session.account === null) return session.reply(530, LOG_IN_FIRST)
    return statPath(session, arg)
  }
  const { remoteAddress, remotePort } = session.conn.endpoints
  const who = session.account !== null
    ? `Logged in as: ${session.account.user}`
    : session.user !== null
    ? "Waiting for password."
    : "Waiting for username."
  return session.reply(211, [
    "FTP server status:",
    `Connected to: ${remoteAddress}:${remotePort}`,
    who,
    `TYPE: ${session.ascii ? "ASCII" : "Binary"}; STRUcture: File; MODE: Stream`,
    dataStatus(session),
    "End of status.",
  ])
}

const mode: Handler = (session, arg) => {
  const value = arg.trim().toUpperCase()
  if (value === "S") return session.reply(200, "Transfer mode set to: S")
  if (value === "B" || value === "C") return session.reply(504, "Unimplemented MODE type.")
  return session.reply(501, "Unrecognized MODE type.")
}

const stru: Handler = (session, arg) => {
  const value = arg.trim().toUpperCase()
  if (value === "F") return session.reply(200, "File transfer structure set to: F.")
  if (value === "P" || value === "R") return session.reply(504, "Unimplemented STRU type.")
  return session.reply(501, "Unrecognized STRU type.")
}

const type: Handler = (session, arg) => {
  // RFC 959 3.1.1: "A" and "A N" are ASCII non-print; "I" and "L 8" are binary.
  const value = arg.toUpperCase().replace(/\s+/g, "")
  if (value === "A" || value === "AN") {
    session.ascii = true
    return session.reply(200, "Type set to: ASCII.")
  }
  if (value === "I" || value === "L8") {
    session.ascii = false
    return session.reply(200, "Type set to: Binary.")
  }
  return session.reply(504, `Unsupported type "${arg}".`)
}

/** SITE CHMOD <mode> <path> (permission `M`). */
const chmod = (session: Session, arg: string) =>
  Effect.gen(function* () {
    const match = /^([0-7]{3,4})\s+(.+)$/.exec(arg)
    if (match === null) {
      return yield* session.reply(501, "Invalid SITE CHMOD format: use SITE CHMOD <octal mode> <path>.")
    }
    if (!session.server.capabilities.chmod) {
      return yield* session.reply(502, "SITE CHMOD not implemented: this storage keeps no permission bits.")
    }
    const mode = parseInt(match[1], 8)
    // Special bits would let an uploader make a setuid program, run as the server's user (root?).
    if (mode > 0o777 && !session.options.permitSpecialModeBits) {
      return yield* session.reply(550, "SITE CHMOD: setuid, setgid and sticky bits are not allowed; use 000 to 777.")
    }
    const path = yield* session.resolve(match[2])
    yield* session.requirePerm("M", path)
    yield* session.server.fs.chmod(path, mode)
    yield* session.reply(200, "SITE CHMOD successful.")
  })

const BUILT_IN_SITE: ReadonlyArray<readonly [string, string]> = [
  ["CHMOD", "Syntax: SITE CHMOD <SP> mode path (change file mode)."],
  ["HELP", "Syntax: SITE HELP [<SP> cmd] (show SITE command help)."],
  ["UTIME", "Syntax: SITE UTIME <SP> YYYYMMDDhhmm[ss] path, or path atime mtime ctime UTC (set modification time)."],
]

const siteHelp = (session: Session, arg: string) => {
  const custom = session.options.siteCommands
  const all: ReadonlyArray<readonly [string, string]> = [
    ...BUILT_IN_SITE,
    ...custom.map((c) => [c.name.toUpperCase(), c.help] as const),
  ]
  if (arg !== "") {
    const found = all.find(([name]) => name === arg.trim().toUpperCase())
    return found === undefined ? session.reply(501, "Unrecognized SITE command.") : session.reply(214, found[1])
  }
  return session.reply(214, [
    "The following SITE commands are recognized:",
    ...all.map(([name]) => name),
    "Help SITE command successful.",
  ])
}

const runCustomSite = (session: Session, command: SiteCommand, arg: string) =>
  Effect.gen(function* () {
    const account = session.account
    if ((command.needsLogin ?? true) && account === null) {
      return yield* session.reply(530, LOG_IN_FIRST)
    }
    // A permission is a user's: a command that names one needs a login even if it says otherwise.
    if (command.perm !== undefined) {
      if (account === null) return yield* session.reply(530, LOG_IN_FIRST)
      yield* session.requirePerm(command.perm, yield* session.resolve(""))
    }
    const notLoggedIn = new FilesystemError({ path: "/", reason: "PermissionDenied", detail: "Not logged in." })
    const reply = yield* command.handler({
      arg,
      user: account?.user ?? null,
      cwd: session.cwd,
      remoteAddress: session.remoteAddress,
      resolve: (path) => (account === null ? Effect.fail(notLoggedIn) : session.resolve(path)),
      filesystem: session.server.fs,
    })
    yield* session.reply(reply.code, reply.text)
  })

const site: Handler = (session, arg) => {
  const space = arg.indexOf(" ")
  const name = (space < 0 ? arg : arg.slice(0, space)).toUpperCase()
  const rest = space < 0 ? "" : arg.slice(space + 1)
  if (name === "HELP") return siteHelp(session, rest)
  const custom = session.options.siteCommands.find((c) => c.name.toUpperCase() === name)
  if (custom !== undefined) return runCustomSite(session, custom, rest)
  if (session.account === null) return session.reply(530, LOG_IN_FIRST)
  if (name === "CHMOD") return chmod(session, rest)
  if (name === "UTIME") return siteUtime(session, rest)
  return session.reply(500, `Command "SITE ${name}" not understood.`)
}

const row = (
  name: string,
  needsLogin: boolean,
  arg: CommandSpec["arg"],
  help: string,
  handler: Handler,
): CommandSpec => ({ name, needsLogin, arg, help, handler })

/** The information and settings commands. */
export const infoCommands: ReadonlyArray<CommandSpec> = [
  row("SYST", false, "none", "Syntax: SYST (get operating system type).", syst),
  row("NOOP", false, "none", "Syntax: NOOP (just do nothing).", noop),
  row("HELP", false, "optional", "Syntax: HELP [<SP> cmd] (show help).", help),
  row("FEAT", false, "none", "Syntax: FEAT (list all new features supported).", feat),
  row("OPTS", false, "required", "Syntax: OPTS <SP> cmd [<SP> option] (set option for command).", opts),
  row("STAT", false, "optional", "Syntax: STAT [<SP> path name] (server stats [list files]).", stat),
  row("ALLO", true, "required", "Syntax: ALLO <SP> bytes (noop; allocate storage).", allo),
  row("MODE", true, "required", "Syntax: MODE <SP> mode (noop; set data transfer mode).", mode),
  row("STRU", true, "required", "Syntax: STRU <SP> type (noop; set file structure).", stru),
  row("TYPE", true, "required", "Syntax: TYPE <SP> [A | I] (set transfer type).", type),
  row("SITE", false, "required", "Syntax: SITE <SP> site-command (execute SITE command).", site),
]
