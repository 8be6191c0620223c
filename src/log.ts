/**
 * Logging in pyftpdlib's format, as an Effect `Logger`:
 *
 * ```
 * [I 2026-11-21 14:16:36] 127.0.0.1:53021-[user] RETR /a.bin completed=1 bytes=1048576 seconds=0.004
 * ```
 *
 * Sessions annotate their logs with {@link SESSION_ANNOTATION} (`ip:port-[user]`), which becomes
 * the line's prefix. An embedding application can replace this logger with any other.
 *
 * @module
 */
import { Layer, Logger, type LogLevel, References } from "effect"

/** The log annotation whose value prefixes a session's log lines. */
export const SESSION_ANNOTATION = "ftpd.session"

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

const pad = (n: number) => (n < 10 ? "0" : "") + n

const timestamp = (date: Date, local: boolean): string =>
  local
    ? `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
      `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
    : `${date.getUTCFullYear()}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())} ` +
      `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}`

const text = (message: unknown): string =>
  Array.isArray(message) ? message.map(text).join(" ") : typeof message === "string" ? message : String(message)

/** Options of {@link FtpLogger}. */
export interface FtpLoggerOptions {
  /** Log every command and reply (`-D`). */
  readonly debug?: boolean
  /** Timestamps in local time instead of UTC. */
  readonly localTime?: boolean
  /** Where lines go (default: standard error, like pyftpdlib). */
  readonly write?: (line: string) => void
}

const makeLogger = (options: FtpLoggerOptions): Logger.Logger<unknown, void> =>
  Logger.make(({ logLevel, message, date, fiber, cause }) => {
    const annotations = fiber.getRef(References.CurrentLogAnnotations)
    const session = annotations[SESSION_ANNOTATION]
    const prefix = session === undefined ? "" : `${String(session)} `
    const causeText = cause.reasons.length > 0 ? `\n${String(cause)}` : ""
    const line = `[${letter[logLevel]} ${timestamp(date, options.localTime ?? false)}] ${prefix}${
      text(message)
    }${causeText}`
    ;(options.write ?? ((l: string) => console.error(l)))(line)
  })

/**
 * The pyftpdlib-format logger, with the minimum level set from `debug`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { FtpLogger } from "@ftpd/server"
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
      Logger.layer([makeLogger(options)]),
      Layer.succeed(References.MinimumLogLevel, options.debug === true ? "Debug" : "Info"),
    ),
}
