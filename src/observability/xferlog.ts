/**
 * The transfer log in the xferlog format of wu-ftpd, ProFTPD and vsftpd (xferlog(5)), which
 * transfer-log analyzers read: one line per completed or cut file transfer, fields separated by
 * single spaces:
 *
 * ```
 * Thu Dec  3 14:16:36 2026 2 192.0.2.7 1048576 /srv/ftp/a.bin b _ o r user ftp 0 * c
 * ```
 *
 * current-time (local, ctime's `DDD MMM dd hh:mm:ss YYYY`), transfer-time (whole seconds, at
 * least 1, since analyzers divide by it), remote-host (the client's address), file-size (bytes
 * moved), filename (the real path, each space or control character replaced by `_`, as ProFTPD
 * does), transfer-type (`a` ASCII, `b` binary), special-action-flag (`_`: none), direction (`o`
 * outgoing, `i` incoming), access-mode (`a` anonymous, `r` real), username, service-name
 * (`ftp`), authentication-method (`0`: none), authenticated-user-id (`*`: none), completion-status
 * (`c` complete, `i` incomplete).
 *
 * @module
 */

/** What one line of the transfer log says. */
export interface XferlogEntry {
  /** When the transfer ended. */
  readonly end: Date
  readonly seconds: number
  readonly remoteAddress: string
  readonly bytes: number
  /** The file's real path. */
  readonly file: string
  readonly ascii: boolean
  readonly direction: "send" | "receive"
  readonly user: string
  readonly anonymous: boolean
  readonly completed: boolean
}

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

const two = (n: number) => String(n).padStart(2, "0")

/** `date` as ctime(3) writes it, in local time: `Thu Dec  3 14:16:36 2026`. */
export const ctime = (date: Date): string =>
  `${DAYS[date.getDay()]} ${MONTHS[date.getMonth()]} ${String(date.getDate()).padStart(2, " ")} ` +
  `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())} ${date.getFullYear()}`

// deno-lint-ignore no-control-regex -- control characters are what must go
const UNSAFE = /[\s\x00-\x1f\x7f-\x9f]/g

/** A field with no space and no control character in it (which would shift every field after it). */
const field = (text: string): string => (text === "" ? "_" : text.replace(UNSAFE, "_"))

/**
 * One xferlog line.
 *
 * @example
 * ```ts
 * import { xferlogLine } from "./xferlog.ts"
 * const line = xferlogLine({
 *   end: new Date(2026, 11, 3, 14, 16, 36), seconds: 1.6, remoteAddress: "192.0.2.7", bytes: 1048576,
 *   file: "/srv/ftp/my file.bin", ascii: false, direction: "send", user: "user", anonymous: false, completed: true,
 * })
 * console.log(line) // "Thu Dec  3 14:16:36 2026 2 192.0.2.7 1048576 /srv/ftp/my_file.bin b _ o r user ftp 0 * c"
 * ```
 */
export const xferlogLine = (entry: XferlogEntry): string =>
  [
    ctime(entry.end),
    Math.max(1, Math.round(entry.seconds)),
    field(entry.remoteAddress),
    entry.bytes,
    field(entry.file),
    entry.ascii ? "a" : "b",
    "_",
    entry.direction === "send" ? "o" : "i",
    entry.anonymous ? "a" : "r",
    field(entry.user),
    "ftp",
    "0",
    "*",
    entry.completed ? "c" : "i",
  ].join(" ")
