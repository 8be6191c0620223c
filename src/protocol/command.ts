/**
 * Splits a framed command line into its verb and argument.
 *
 * @module
 */

/** A command as received: `name` upper-cased, `arg` as sent (trailing whitespace removed). */
export interface ParsedCommand {
  readonly name: string
  readonly arg: string
}

const TRAILING_WHITESPACE = /[ \t\r\n]+$/

/**
 * Split `line` at its first space. The verb is case-insensitive (RFC 959 section 5.3), so it is
 * upper-cased (ASCII letters only). The argument keeps its leading spaces, since a path may start
 * with one, but loses trailing spaces, tabs, CRs and LFs. An empty line gives `name: ""`.
 *
 * @example
 * ```ts
 * import { parseCommand } from "./command.ts"
 * console.log(parseCommand("retr  my file.txt ")) // { name: "RETR", arg: " my file.txt" }
 * ```
 */
export const parseCommand = (line: string): ParsedCommand => {
  const trimmed = line.replace(TRAILING_WHITESPACE, "")
  const space = trimmed.indexOf(" ")
  const verb = space === -1 ? trimmed : trimmed.slice(0, space)
  const arg = space === -1 ? "" : trimmed.slice(space + 1)
  return { name: verb.replace(/[a-z]+/g, (s) => s.toUpperCase()), arg }
}

const AFTER_SYNCH = /(?:ABOR|STAT|QUIT)$/

/**
 * The command an unknown verb stands for when it ends with ABOR, STAT or QUIT (as pyftpdlib
 * reads it): clients send these behind a Telnet Synch (RFC 959 4.1.3), and what the network or
 * a careless client leaves of the Synch in front of them must not stop them. Else `name`.
 *
 * @example
 * ```ts
 * import { commandAfterSynch } from "./command.ts"
 * console.log(commandAfterSynch("\u0000ABOR")) // "ABOR"
 * console.log(commandAfterSynch("XYZ")) // "XYZ"
 * ```
 */
export const commandAfterSynch = (name: string): string => {
  const match = AFTER_SYNCH.exec(name)
  return match === null ? name : match[0]
}
