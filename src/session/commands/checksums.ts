/**
 * Checksums: HASH (draft-bryan-ftpext-hash-02, with `OPTS HASH` to choose the algorithm) and the
 * older commands many servers and clients (FileZilla, WinSCP, ProFTPD's mod_digest, Serv-U) use:
 * XCRC, XMD5, XSHA1, XSHA256, XSHA512.
 *
 * - `HASH <path>` replies `213 <algorithm> <start>-<end> <hex> <path>`: the whole file, or from a
 *   `REST` offset sent just before (the draft's range form; the `RANG` command of its companion
 *   draft is not implemented). `<end>` is the offset just past the last byte hashed. A directory
 *   gets 553, as the draft says.
 * - `XMD5 <path> [<start> [<end>]]` (and the others) reply `250 <hex>`; the path may be quoted
 *   (`XMD5 "a b.txt" 0 100`), which a name ending in a space and digits needs. `<end>` is the
 *   offset just past the last byte hashed, as for HASH.
 *
 * WinSCP, the common client that uses them, sends `OPTS HASH <algorithm>` and then `HASH <path>`, or
 * the X command of the algorithm, quoting a path that has a space; it takes any single-line 2xx
 * reply, the hash being HASH's third word or the X command's whole text.
 *
 * Each needs the read permission (`r`) on the file, counts against the user's download bandwidth
 * limits like a RETR, and runs in the session's transfer fiber: ABOR (answered `426` for the
 * checksum, then `226`), STAT, NOOP and QUIT are answered meanwhile, and the session's end stops
 * it. The server runs at most `maxHashes` at once (450 over it, which a client may retry), and
 * `hashCommands: false` turns them all off (502, and FEAT leaves them out).
 *
 * @module
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { CHECKSUM_ALGORITHMS, type ChecksumAlgorithm, checksumAlgorithm, checksumOf } from "../../data/checksum.ts"
import { type FilesystemError, fromSystemError, LOCAL_ERROR, replyFor } from "../../errors.ts"
import type { FtpPath } from "../../fs/filesystem.ts"
import { SESSION_ANNOTATION } from "../../log.ts"
import type { ActiveTransfer, Session } from "../session.ts"
import { type CommandSpec, type Guard, guards, type Handler } from "../table.ts"
import { opened } from "../transfer.ts"

const TURNED_OFF = "Command not implemented: checksums are turned off on this server."

/** The checksum commands answer 502 when the server turned them off. */
const turnedOn: Guard = (session) =>
  session.options.hashCommands ? Effect.succeed(true) : Effect.as(session.reply(502, TURNED_OFF), false)

/** HASH takes a pending REST offset as its start (and, like a transfer, consumes it). */
const takeRest: Guard = (session) =>
  Effect.sync(() => {
    session.transferOffset = session.restOffset
    session.restOffset = 0
    return true
  })

/** The arguments of XCRC, XMD5, ...: a path (quoted or not) and an optional start and end offset. */
interface Range {
  readonly target: string
  readonly start: number
  readonly end: number | undefined
}

const OFFSET = /^\d{1,15}$/

/**
 * `path [start [end]]` or `"path" [start [end]]`; `undefined` when malformed. Unquoted, one or two
 * trailing numbers after a path are offsets (a name that ends in a space and digits needs quotes).
 */
const parseRange = (arg: string): Range | undefined => {
  let target: string
  let numbers: string[]
  if (arg.startsWith('"')) {
    const close = arg.indexOf('"', 1)
    if (close < 0) return undefined
    target = arg.slice(1, close)
    const rest = arg.slice(close + 1).trim()
    numbers = rest === "" ? [] : rest.split(/\s+/)
    if (numbers.length > 2 || !numbers.every((n) => OFFSET.test(n))) return undefined
  } else {
    const words = arg.split(" ")
    numbers = []
    while (numbers.length < 2 && words.length > 1 && OFFSET.test(words[words.length - 1])) numbers.unshift(words.pop()!)
    target = words.join(" ")
  }
  const [start, end] = numbers.map(Number)
  if (target === "" || (end !== undefined && end < start)) return undefined
  return { target, start: start ?? 0, end }
}

/** The 501 of a range outside the file. */
const badRange = (session: Session, size: number) => session.reply(501, `Invalid range: the file has ${size} bytes.`)

/**
 * Compute `algorithm` over `[start, end)` of `path` in the session's transfer fiber and answer with
 * `done(hex, start, end)`. The server's slot is held from here until the checksum ends.
 */
const compute = (
  session: Session,
  command: string,
  path: FtpPath,
  algorithm: ChecksumAlgorithm,
  start: number,
  end: number | undefined,
  done: (hex: string, start: number, end: number) => Effect.Effect<void>,
) =>
  Effect.gen(function* () {
    const { server } = session
    const { admission } = server
    if (!(yield* admission.startChecksum())) {
      return yield* session.reply(450, "Too many checksums are being computed: try again later.")
    }
    const open = yield* Effect.exit(opened(server.fs.openRead(path, start)))
    if (Exit.isFailure(open)) {
      yield* admission.endChecksum()
      const error = Cause.findErrorOption(open.cause)
      if (error._tag === "Some" && error.value.reason === "InvalidOffset" && command !== "HASH") {
        return yield* badRange(session, (yield* server.fs.stat(path)).size)
      }
      // The HASH draft answers a path that is not a file with 553 (as ProFTPD's mod_digest does).
      if (error._tag === "Some" && error.value.reason === "IsADirectory" && command === "HASH") {
        return yield* session.reply(553, `${path.virtual}: not a regular file.`)
      }
      return yield* Effect.failCause(open.cause)
    }
    const [scope, file] = open.value
    const last = end ?? file.size
    if (last > file.size) {
      yield* admission.endChecksum()
      yield* Scope.close(scope, Exit.void)
      return yield* badRange(session, file.size)
    }
    const throttle = server.bandwidth.throttle(session, session.account, "write")
    const active: ActiveTransfer = {
      command,
      path: path.virtual,
      progress: { bytes: 0 },
      started: Date.now(),
      // A checksum reads the file's bytes as they are.
      ascii: false,
      throttle,
      fiber: undefined,
      status: `Computing ${algorithm} of ${path.virtual}`,
      aborted: `${command} aborted via ABOR.`,
    }
    session.transfer = active
    const run = Effect.callback<string, FilesystemError>((resume) => {
      const controller = new AbortController()
      const running = checksumOf(file, algorithm, {
        signal: controller.signal,
        length: last - start,
        progress: active.progress,
        throttle,
      })
      running.then(
        (hex) => resume(Effect.succeed(hex)),
        (error) => resume(Effect.fail(fromSystemError(path.virtual, error))),
      )
      return Effect.promise(() => {
        controller.abort()
        return running.then(() => undefined, () => undefined)
      })
    })
    const ended = (exit: Exit.Exit<string, FilesystemError>) =>
      Effect.gen(function* () {
        yield* Scope.close(scope, Exit.void)
        yield* admission.endChecksum()
        session.transferEnded()
        const seconds = ((Date.now() - active.started) / 1000).toFixed(3)
        const completed = Exit.isSuccess(exit) ? 1 : 0
        yield* session.log(
          `${command} ${path.virtual} completed=${completed} bytes=${active.progress.bytes} seconds=${seconds}`,
        )
        if (Exit.isSuccess(exit)) return yield* done(exit.value, start, last)
        // Interrupted (ABOR, the session's end): whoever interrupted it answers.
        const failure = Cause.findErrorOption(exit.cause)
        if (failure._tag === "Some") {
          const { code, text } = replyFor(failure.value)
          return yield* session.reply(code, text)
        }
        if (!Cause.hasInterruptsOnly(exit.cause)) {
          yield* Effect.logError(`${command} failed unexpectedly`, exit.cause)
          yield* session.reply(LOCAL_ERROR.code, LOCAL_ERROR.text)
        }
      })
    const body = run.pipe(
      Effect.onExit(ended),
      Effect.annotateLogs(SESSION_ANNOTATION, session.prefix),
      Effect.exit,
      Effect.asVoid,
    )
    // Started at once, so that its end is in place before anything can interrupt it: an ABOR
    // that came before the fiber's first step would otherwise leave the file open and the slot taken.
    active.fiber = yield* Effect.forkIn(body, session.scope, { startImmediately: true })
  })

/**
 * HASH's path: the argument, without the double quotes WinSCP puts around a name with spaces (as
 * FileZilla Server takes them: the whole argument quoted, no escapes inside).
 */
const hashTarget = (
  arg: string,
): string => (arg.length >= 2 && arg.startsWith('"') && arg.endsWith('"') ? arg.slice(1, -1) : arg)

const hash: Handler = (session, arg, path) => {
  const algorithm = session.hashAlgorithm
  return compute(
    session,
    "HASH",
    path!,
    algorithm,
    session.transferOffset,
    undefined,
    (hex, start, end) => session.reply(213, `${algorithm} ${start}-${end} ${hex} ${hashTarget(arg)}`),
  )
}

/** XCRC, XMD5, ...: `algorithm` over the range the arguments give, answered `250 <hex>`. */
const legacy = (command: string, algorithm: ChecksumAlgorithm): CommandSpec => ({
  name: command,
  needsLogin: true,
  arg: "required",
  help: `Syntax: ${command} <SP> file-name [<SP> start [<SP> end]] (${algorithm} of a file).`,
  guard: turnedOn,
  perm: "r",
  path: (arg) => parseRange(arg)?.target,
  handler: (session, arg, path) => {
    const range = parseRange(arg)
    if (range === undefined || path === undefined) {
      return session.reply(501, `Invalid ${command} format: use ${command} path [start [end]].`)
    }
    return compute(session, command, path, algorithm, range.start, range.end, (hex) => session.reply(250, hex))
  },
})

/**
 * `OPTS HASH [<algorithm>]`: the algorithm in use, or choose another (draft-bryan-ftpext-hash-02
 * 4): `200 <algorithm>`, or 501 for a name the server does not know, leaving the choice as it was.
 */
export const optsHash = (session: Session, value: string): Effect.Effect<void> => {
  if (!session.options.hashCommands) return session.reply(501, "Invalid OPTS argument: checksums are turned off.")
  if (value === "") return session.reply(200, session.hashAlgorithm)
  const algorithm = checksumAlgorithm(value)
  if (algorithm === undefined) return session.reply(501, "Unknown algorithm, current selection not changed.")
  session.hashAlgorithm = algorithm
  return session.reply(200, algorithm)
}

/** The lines FEAT has for the checksum commands: HASH with the session's algorithm starred, and the X commands. */
export const featChecksums = (session: Session): ReadonlyArray<string> =>
  session.options.hashCommands
    ? [
      `HASH ${CHECKSUM_ALGORITHMS.map((a) => (a === session.hashAlgorithm ? `${a}*` : a)).join(";")}`,
      ...LEGACY.map(([command]) => command),
    ]
    : []

const LEGACY: ReadonlyArray<readonly [string, ChecksumAlgorithm]> = [
  ["XCRC", "CRC32"],
  ["XMD5", "MD5"],
  ["XSHA1", "SHA-1"],
  ["XSHA256", "SHA-256"],
  ["XSHA512", "SHA-512"],
]

/** The checksum commands. */
export const checksumCommands: ReadonlyArray<CommandSpec> = [
  {
    name: "HASH",
    needsLogin: true,
    arg: "required",
    help: "Syntax: HASH <SP> file-name (checksum of a file; OPTS HASH chooses the algorithm).",
    guard: guards(turnedOn, takeRest),
    perm: "r",
    path: hashTarget,
    handler: hash,
  },
  ...LEGACY.map(([command, algorithm]) => legacy(command, algorithm)),
]
