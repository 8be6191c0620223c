/**
 * Formats control-connection replies (RFC 959 section 4.2).
 *
 * @module
 */

const CR = /\r/g
/** Anything {@link formatReply} would rewrite or split on: CR, LF and the other control characters. */
// deno-lint-ignore no-control-regex -- matching control characters is the point
const NEEDS_CLEANING = /[\x00-\x1f\x7f-\x9f]/
/** C0 controls but LF (which splits lines), DEL and C1 controls: a terminal would act on them. */
// deno-lint-ignore no-control-regex -- matching control characters is the point
const CONTROL = /[\x00-\x09\x0b-\x1f\x7f-\x9f]/g

/**
 * Format a reply. One line gives `"230 Login successful.\r\n"`; several (an array, or text with
 * LFs) give the multi-line form `"211-first\r\n middle\r\n211 last\r\n"`. Middle lines start with a
 * space so none can be mistaken for the end line (RFC 959 section 4.2). CRs and LFs inside a line
 * are never sent as such, so text from a client or a file name cannot inject a reply line, and
 * other control characters (a client's terminal escapes, echoed in an argument) become `?`.
 *
 * @example
 * ```ts
 * import { formatReply } from "./reply.ts"
 * console.log(formatReply(211, ["Features:", "UTF8", "End"])) // "211-Features:\r\n UTF8\r\n211 End\r\n"
 * ```
 */
export const formatReply = (code: number, text: string | ReadonlyArray<string>): string => {
  // Most replies are one clean line: no array, no regular expression pass.
  if (typeof text === "string" && !NEEDS_CLEANING.test(text)) return `${code} ${text}\r\n`
  const lines = (typeof text === "string" ? [text] : text).flatMap((line) =>
    line.replace(CR, "").replace(CONTROL, "?").split("\n")
  )
  if (lines.length <= 1) return `${code} ${lines[0] ?? ""}\r\n`
  let reply = `${code}-${lines[0]}\r\n`
  for (let i = 1; i < lines.length - 1; i++) reply += ` ${lines[i]}\r\n`
  return reply + `${code} ${lines[lines.length - 1]}\r\n`
}

/**
 * The first line of a multi-line reply written piece by piece (see {@link formatReplyMiddle}).
 *
 * @example
 * ```ts
 * import { formatReplyStart } from "./reply.ts"
 * console.log(JSON.stringify(formatReplyStart(213, "Status:"))) // "213-Status:\r\n"
 * ```
 */
export const formatReplyStart = (code: number, text: string): string =>
  `${code}-${text.replace(CR, "").replace(CONTROL, "?").replaceAll("\n", " ")}\r\n`

/**
 * Middle lines of a multi-line reply written piece by piece (a long STAT): each line of `text`
 * cleaned as {@link formatReply} cleans it and indented by one space, each ending in CRLF.
 *
 * @example
 * ```ts
 * import { formatReplyMiddle } from "./reply.ts"
 * console.log(JSON.stringify(formatReplyMiddle("a\r\nb\r\n"))) // " a\r\n b\r\n"
 * ```
 */
export const formatReplyMiddle = (text: string): string => {
  let out = ""
  for (const line of text.replace(CR, "").replace(CONTROL, "?").split("\n")) if (line !== "") out += ` ${line}\r\n`
  return out
}

/**
 * Quote a path for a 257 reply by doubling every `"` (RFC 959 appendix II).
 *
 * @example
 * ```ts
 * import { quotePath } from "./reply.ts"
 * console.log(`257 "${quotePath('/a"b')}" created.`) // 257 "/a""b" created.
 * ```
 */
export const quotePath = (path: string): string => path.replaceAll('"', '""')
