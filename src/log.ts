/**
 * Logging in pyftpdlib's format, as an Effect `Logger`:
 *
 * ```
 * [I 2026-11-21 14:16:36] 127.0.0.1:53021-[user] RETR /a.bin completed=1 bytes=1048576 seconds=0.004
 * ```
 *
 * or as one JSON object per line (`format: "json"`), with the level, the time, the session's id,
 * client address and user, the event and its fields:
 *
 * ```
 * {"level":"info","time":"2026-11-21T14:16:36.120Z","session":"5f0c2a9e","client":"127.0.0.1:53021","user":"user","event":"transfer","message":"RETR /a.bin completed=1 bytes=1048576 seconds=0.004","command":"RETR",...}
 * ```
 *
 * Sessions annotate their logs with {@link SESSION_ANNOTATION} (`ip:port-[user]`), which becomes
 * the line's prefix, and {@link SESSION_FIELDS_ANNOTATION}; events add {@link EVENT_ANNOTATION}.
 * Lines go to standard error, or to a file that SIGHUP reopens (for logrotate). An embedding
 * application can replace this logger with any other.
 *
 * @module
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as References from "effect/References"
import { LogFile } from "./observability/log_file.ts"
import { Hangup } from "./runtime.ts"

/** The log annotation whose value prefixes a session's log lines. */
export const SESSION_ANNOTATION = "ftpd.session"

/** The log annotation with a session's {@link SessionFields}, for structured log formats. */
export const SESSION_FIELDS_ANNOTATION = "ftpd.sessionFields"

/** The log annotation of an event's line: its name (`event`) and its fields. */
export const EVENT_ANNOTATION = "ftpd.event"

/** Who a session's log line is about, as structured formats show it. */
export interface SessionFields {
  /** A short id, the same in every line, trace and webhook event of the session. */
  readonly id: string
  /** `ip:port` of the client. */
  readonly client: string
  /** The user logged in, or named by USER; `null` before. */
  readonly user: string | null
}

/** The value of {@link EVENT_ANNOTATION}: the event's name and its fields. */
export interface EventFields {
  readonly event: string
  readonly [field: string]: unknown
}

const letter: Record<LogLevel.LogLevel, string> = {
  All: "A",
  Trace: "T",
  Debug: "D",
  Info: "I",
  Warn: "W",
  Error: "E",
  Fatal: "F",
  None: "N",
}

/**
 * Log `message` at `level` with `annotations` added to the fiber's, as
 * `Effect.logWithLevel(level)(message).pipe(Effect.annotateLogs(annotations))` does, at a fraction
 * of its cost: the annotated context is set around the synchronous calls of the loggers only, with
 * no finalizer on the fiber. Sessions log several lines per login, each with its own annotations.
 */
export const logAnnotated = (
  level: LogLevel.LogLevel,
  message: string,
  annotations: Readonly<Record<string, unknown>>,
): Effect.Effect<void> =>
  Effect.withFiber((fiber) => {
    if (LogLevel.isGreaterThan(fiber.getRef(References.MinimumLogLevel), level)) return Effect.void
    const loggers = fiber.getRef(References.CurrentLoggers)
    if (loggers.size === 0) return Effect.void
    const previous = fiber.context
    const current = fiber.getRef(References.CurrentLogAnnotations)
    fiber.setContext(Context.add(previous, References.CurrentLogAnnotations, { ...current, ...annotations }))
    try {
      const date = new Date(fiber.getRef(Clock.Clock).currentTimeMillisUnsafe())
      const options = { cause: Cause.empty, fiber, date, logLevel: level, message: [message] }
      for (const logger of loggers) logger.log(options)
    } finally {
      fiber.setContext(previous)
    }
    return Effect.void
  })

const pad = (n: number) => (n < 10 ? "0" : "") + n

const timestamp = (date: Date, local: boolean): string =>
  local
    ? `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
      `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
    : `${date.getUTCFullYear()}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())} ` +
      `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}`

/** The timestamp of the last second logged: lines come in bursts within one second. */
const cachedTimestamp = (local: boolean) => {
  let second = NaN
  let last = ""
  return (date: Date): string => {
    const now = Math.floor(date.getTime() / 1000)
    if (now !== second) {
      second = now
      last = timestamp(date, local)
    }
    return last
  }
}

const encoder = new TextEncoder()
let pending = ""
let flushQueued = false
let flushOnExit = false

/** Write every buffered line to standard error; `writeSync` may write less than asked. */
const flushStderr = (): void => {
  flushQueued = false
  if (pending === "") return
  const bytes = encoder.encode(pending)
  pending = ""
  try {
    for (let offset = 0; offset < bytes.length;) offset += Deno.stderr.writeSync(bytes.subarray(offset))
  } catch {
    // Standard error is gone (closed pipe): logging must not take the server down.
  }
}

/**
 * Lines logged in one turn of the event loop go out in one write, after it: far cheaper than
 * `console.error` per line. The lines stay in order, and whatever is left is written on exit.
 */
const writeStderr = (line: string): void => {
  pending += line + "\n"
  if (flushQueued) return
  flushQueued = true
  queueMicrotask(flushStderr)
  if (!flushOnExit) {
    flushOnExit = true
    globalThis.addEventListener("unload", flushStderr)
  }
}

const text = (message: unknown): string =>
  Array.isArray(message) ? message.map(text).join(" ") : typeof message === "string" ? message : String(message)

// deno-lint-ignore no-control-regex -- matching control characters is the point
const CONTROL = /[\x00-\x1f\x7f-\x9f]/g
// deno-lint-ignore no-control-regex -- matching control characters is the point
const CONTROL_BUT_LF = /[\x00-\x09\x0b-\x1f\x7f-\x9f]/g
const SHORT: Readonly<Record<string, string>> = { "\r": "\\r", "\n": "\\n", "\t": "\\t" }
const escapeOne = (char: string): string => SHORT[char] ?? `\\x${char.charCodeAt(0).toString(16).padStart(2, "0")}`

/**
 * `line` with every control character (C0, DEL, C1) written as an escape (`\r`, `\x1b`, ...):
 * user names, paths and commands come from clients, and a raw CR or terminal escape in them
 * would forge log lines or act on the terminal of whoever reads the log. Every log format uses it.
 *
 * @example
 * ```ts
 * import { escapeControls } from "./log.ts"
 * console.log(escapeControls("USER 'evil\r[I] admin logged in'")) // USER 'evil\r[I] admin logged in'
 * ```
 */
export const escapeControls = (line: string, keepNewlines = false): string => {
  const pattern = keepNewlines ? CONTROL_BUT_LF : CONTROL
  pattern.lastIndex = 0
  return pattern.test(line) ? line.replace(pattern, escapeOne) : line
}

/** The formats of {@link FtpLogger}. */
export type LogFormat = "pyftpdlib" | "json"

/** Options of {@link FtpLogger}. */
export interface FtpLoggerOptions {
  /** Log every command and reply (`-D`). */
  readonly debug?: boolean
  /** Timestamps in local time instead of UTC (pyftpdlib format; JSON times are always UTC). */
  readonly localTime?: boolean
  /** `pyftpdlib` (the default) or `json`: one JSON object per line. */
  readonly format?: LogFormat
  /**
   * Append lines to this file instead of standard error; under `runMain`, SIGHUP reopens it (see
   * `Hangup`), so that logrotate can move it away. The layer fails if the file can't be opened.
   */
  readonly file?: string
  /** Where lines go (default: standard error, like pyftpdlib); `file` takes precedence. */
  readonly write?: (line: string) => void
}

const levelName: Record<LogLevel.LogLevel, string> = {
  All: "all",
  Trace: "trace",
  Debug: "debug",
  Info: "info",
  Warn: "warn",
  Error: "error",
  Fatal: "fatal",
  None: "none",
}

/**
 * Every string escaped with {@link escapeControls} before `JSON.stringify`, which leaves C1
 * characters (U+0080 to U+009F) as they are; a cause keeps its line breaks (as `\n` escapes).
 */
const escapedStrings = (key: string, value: unknown): unknown =>
  typeof value === "string" ? escapeControls(value, key === "cause") : value

/**
 * One JSON object: level, time, session, client, user, event, message, the event's fields, and
 * the cause if any. The client comes before anything a client chose (user names, paths), so that
 * a pattern anchored on it can't be fooled by them.
 */
const jsonLine = (
  logLevel: LogLevel.LogLevel,
  date: Date,
  message: unknown,
  annotations: Readonly<Record<string, unknown>>,
  cause: string | undefined,
): string => {
  const session = annotations[SESSION_FIELDS_ANNOTATION] as SessionFields | undefined
  const event = annotations[EVENT_ANNOTATION] as EventFields | undefined
  const record: Record<string, unknown> = {
    level: levelName[logLevel],
    time: date.toISOString(),
    session: session?.id ?? null,
    client: session?.client ?? null,
    user: session?.user ?? null,
    event: event?.event ?? "message",
    message: text(message),
  }
  if (event !== undefined) {
    for (const key in event) if (!(key in record)) record[key] = event[key]
  }
  if (cause !== undefined) record.cause = cause
  return JSON.stringify(record, escapedStrings)
}

const makeLogger = (options: FtpLoggerOptions, file?: LogFile): Logger.Logger<unknown, void> => {
  const write = file === undefined ? options.write ?? writeStderr : (line: string) => file.write(line)
  if (options.format === "json") {
    return Logger.make(({ logLevel, message, date, fiber, cause }) =>
      write(
        jsonLine(
          logLevel,
          date,
          message,
          fiber.getRef(References.CurrentLogAnnotations),
          cause.reasons.length > 0 ? String(cause) : undefined,
        ),
      )
    )
  }
  const stamp = cachedTimestamp(options.localTime ?? false)
  return Logger.make(({ logLevel, message, date, fiber, cause }) => {
    const annotations = fiber.getRef(References.CurrentLogAnnotations)
    const session = annotations[SESSION_ANNOTATION]
    const prefix = session === undefined ? "" : `${String(session)} `
    // A cause (a stack trace) keeps its line breaks; nothing else in a line may break it.
    const causeText = cause.reasons.length > 0 ? `\n${escapeControls(String(cause), true)}` : ""
    write(`${escapeControls(`[${letter[logLevel]} ${stamp(date)}] ${prefix}${text(message)}`)}${causeText}`)
  })
}

/** The logger writing to `options.file`, which is closed with the scope and reopened at every SIGHUP. */
const fileLogger = (options: FtpLoggerOptions & { readonly file: string }) =>
  Effect.gen(function* () {
    const file = yield* Effect.acquireRelease(
      Effect.try({ try: () => new LogFile(options.file), catch: (error) => error as Error }),
      (file) => Effect.sync(() => file.close()),
    )
    yield* (yield* Hangup).onHangup(
      Effect.try({
        try: () => file.reopen(),
        catch: (error) => new Error(`can't reopen the log file: ${(error as Error).message}`),
      }).pipe(Effect.catch((error) => Effect.logError(error.message))),
    )
    return makeLogger(options, file)
  })

/**
 * The pyftpdlib-format (or JSON) logger, with the minimum level set from `debug`.
 *
 * @example
 * ```ts
 * import { FtpLogger } from "@ftpd/server"
 * import { Effect } from "effect"
 * Effect.runFork(Effect.log("hello").pipe(Effect.provide(FtpLogger.layer({ debug: false }))))
 * ```
 */
export const FtpLogger: {
  readonly make: (options?: FtpLoggerOptions) => Logger.Logger<unknown, void>
  readonly layer: (options?: FtpLoggerOptions) => Layer.Layer<never>
} = {
  make: (options = {}) => makeLogger(options),
  layer: (options = {}) =>
    Layer.mergeAll(
      options.file === undefined
        ? Logger.layer([makeLogger(options)])
        : Logger.layer([fileLogger({ ...options, file: options.file }).pipe(Effect.orDie)]),
      Layer.succeed(References.MinimumLogLevel, options.debug === true ? "Debug" : "Info"),
    ),
}

/** What the start banner reports. */
export interface BannerFacts {
  /** Where the control connection listens, as `host:port`. */
  readonly address: string
  readonly pid: number
  /** Which worker this is (`--workers`), if it is one. */
  readonly worker?: { readonly index: number; readonly count: number }
  readonly masqueradeAddress: string | null
  readonly passivePorts: readonly [number, number] | null
  /** The filesystem's own description (`Filesystem.description`). */
  readonly filesystem: string | undefined
  /** What is served to whom (`Authorizer.description`). */
  readonly serving?: string | undefined
  /** FTPS, when it is on. */
  readonly tls: {
    /** Where implicit TLS listens (`host:port`), if it does. */
    readonly implicitAt: string | null
    readonly minVersion: string
    readonly controlRequired: boolean
    readonly dataRequired: boolean
    readonly sessionReuseRequired: boolean
    /** How passive PROT P data connections are secured. */
    readonly passiveData: "native TLS" | "node:tls"
  } | null
  /** What the server reports besides its log: metrics recorded, spans exported, the xferlog file. */
  readonly monitoring?: { readonly metrics: boolean; readonly traces: boolean; readonly xferlog: string | null }
}

/** `, worker 2 of 4` for a worker's lines, nothing outside workers. */
export const workerNote = (worker: { readonly index: number; readonly count: number } | undefined): string =>
  worker === undefined ? "" : `, worker ${worker.index + 1} of ${worker.count}`

/**
 * The lines a server logs as it starts, saying what it serves and how (pyftpdlib's banner, with
 * the filesystem and TLS added).
 *
 * @example
 * ```ts
 * import { startBanner } from "./log.ts"
 * const lines = startBanner({
 *   address: "[::]:2121", pid: 1, masqueradeAddress: null, passivePorts: null, filesystem: undefined, tls: null,
 * })
 * console.log(lines[0]) // ">>> starting FTP server on [::]:2121, pid=1 <<<"
 * ```
 */
export const startBanner = (facts: BannerFacts): ReadonlyArray<string> => {
  const yesNo = (on: boolean) => (on ? "yes" : "no")
  const range = facts.passivePorts === null ? "None" : `${facts.passivePorts[0]}-${facts.passivePorts[1]}`
  const tls = facts.tls
  const worker = facts.worker
  return [
    `>>> starting FTP server on ${facts.address}, pid=${facts.pid}${workerNote(worker)} <<<`,
    worker === undefined
      ? "concurrency model: async (one Effect fiber per session)"
      : `concurrency model: async (one Effect fiber per session) in each of ${worker.count} workers sharing the port`,
    `masquerade (NAT) address: ${facts.masqueradeAddress ?? "None"}`,
    `passive ports: ${range}`,
    `serving ${facts.serving ?? "custom authorizer"}`,
    `filesystem: ${facts.filesystem ?? "custom"}`,
    tls === null
      ? "TLS: off"
      : `TLS: explicit (AUTH TLS) on the control port, ${
        tls.implicitAt === null ? "no implicit listener" : `implicit TLS on ${tls.implicitAt}`
      }; minimum ${tls.minVersion}; control required: ${yesNo(tls.controlRequired)}; data required: ${
        yesNo(tls.dataRequired)
      }; session reuse required: ${yesNo(tls.sessionReuseRequired)}; passive PROT P data: ${tls.passiveData}`,
    ...(facts.monitoring === undefined ? [] : [
      `monitoring: metrics ${facts.monitoring.metrics ? "on" : "off"}, traces ${
        facts.monitoring.traces ? "on" : "off"
      }, xferlog ${facts.monitoring.xferlog ?? "off"}`,
    ]),
  ]
}
