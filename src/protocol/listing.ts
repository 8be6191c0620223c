/**
 * Directory listing formats: `ls -l` lines for LIST, bare names for NLST, and fact lines for MLSD
 * and MLST (RFC 3659 section 7).
 *
 * @module
 */
import type { FileInfo } from "./file_info.ts"

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
const HALF_YEAR_MS = 180 * 24 * 60 * 60 * 1000

const two = (n: number): string => (n < 10 ? "0" : "") + n

/** Small memo tables for the parts of a listing line that repeat across a directory; cleared when full. */
const MEMO_LIMIT = 4096

const memo = <K, V>(table: Map<K, V>, key: K, make: () => V): V => {
  let value = table.get(key)
  if (value === undefined) {
    if (table.size >= MEMO_LIMIT) table.clear()
    value = make()
    table.set(key, value)
  }
  return value
}

/** The `rwx` triplet for one class; `special` replaces the `x` with `s`/`t` (upper-case when not executable). */
const triplet = (bits: number, special: boolean, letter: string): string =>
  (bits & 4 ? "r" : "-") + (bits & 2 ? "w" : "-") +
  (special ? (bits & 1 ? letter : letter.toUpperCase()) : bits & 1 ? "x" : "-")

const permissionTexts = new Map<number, string>()

/** The `ls -l` type letter of each kind. */
const TYPE_LETTERS: Record<FileInfo["kind"], string> = {
  file: "-",
  directory: "d",
  symlink: "l",
  fifo: "p",
  socket: "s",
  blockDevice: "b",
  charDevice: "c",
  other: "-",
}

// deno-lint-ignore no-control-regex -- matching control characters is the point
const CONTROL = /[\x00-\x1f\x7f-\x9f]/g
// The same without `g`: a test is cheaper than a replace that finds nothing, which is nearly every name.
// deno-lint-ignore no-control-regex -- matching control characters is the point
const HAS_CONTROL = /[\x00-\x1f\x7f-\x9f]/

/**
 * A name as listings show it: control characters (C0, DEL, C1) become `?`, as vsftpd shows them,
 * so that a name made by a local process can't break a listing's lines or act on a client's terminal.
 *
 * @example
 * ```ts
 * import { printableName } from "./listing.ts"
 * console.log(printableName("a\x1b[31mred")) // "a?[31mred"
 * ```
 */
export const printableName = (name: string): string => HAS_CONTROL.test(name) ? name.replace(CONTROL, "?") : name

const permissions = (info: FileInfo): string => {
  const type = TYPE_LETTERS[info.kind]
  const mode = (info.mode ?? (info.kind === "directory" ? 0o755 : info.kind === "symlink" ? 0o777 : 0o644)) & 0o7777
  return memo(
    permissionTexts,
    type.charCodeAt(0) * 0o10000 + mode,
    () =>
      type + triplet(mode >> 6, (mode & 0o4000) !== 0, "s") + triplet(mode >> 3, (mode & 0o2000) !== 0, "s") +
      triplet(mode, (mode & 0o1000) !== 0, "t"),
  )
}

/** `"Nov 21 14:16"` for times within half a year of `now`, `"Nov 21  2025"` otherwise, like `ls -l`. */
const listTime = (mtime: Date | null, now: number, localTime: boolean): string => {
  const date = mtime === null || Number.isNaN(mtime.getTime()) ? new Date(0) : mtime
  const month = localTime ? date.getMonth() : date.getUTCMonth()
  const day = String(localTime ? date.getDate() : date.getUTCDate()).padStart(2, " ")
  if (Math.abs(now - date.getTime()) >= HALF_YEAR_MS) {
    return `${MONTHS[month]} ${day}  ${localTime ? date.getFullYear() : date.getUTCFullYear()}`
  }
  const hours = localTime ? date.getHours() : date.getUTCHours()
  const minutes = localTime ? date.getMinutes() : date.getUTCMinutes()
  return `${MONTHS[month]} ${day} ${two(hours)}:${two(minutes)}`
}

// Keyed by the minute of the time, and by whether it is recent, since that picks the form.
const listTimesUtc = new Map<number, string>()
const listTimesLocal = new Map<number, string>()

const cachedListTime = (mtime: Date | null, now: number, localTime: boolean): string => {
  const ms = mtime === null ? NaN : mtime.getTime()
  if (Number.isNaN(ms)) return listTime(null, now, localTime)
  const recent = Math.abs(now - ms) < HALF_YEAR_MS
  const key = Math.floor(ms / 60_000) * 2 + (recent ? 1 : 0)
  return memo(localTime ? listTimesLocal : listTimesUtc, key, () => listTime(mtime, now, localTime))
}

const ids = new Map<number, string>()

/** A uid or gid left-aligned in 8 columns, or the placeholder when unknown. */
const idColumn = (id: number | null, unknown: string): string =>
  id === null ? unknown : memo(ids, id, () => String(id).padEnd(8))

/**
 * One LIST line in `ls -l` form, as pyftpdlib writes it: permissions, links, owner and group
 * (numeric, or `owner`/`group` when unknown), size, time and name, ending in CRLF. Times are UTC
 * unless `localTime`; an unknown mtime shows as the epoch.
 *
 * @example
 * ```ts
 * import { formatListLine } from "./listing.ts"
 * const info = {
 *   name: "a.txt", kind: "file", size: 12, mtime: new Date(Date.UTC(2025, 10, 1, 14, 16)), mode: 0o644,
 *   nlink: 1, uid: 1000, gid: 1000, dev: null, ino: null,
 * } as const
 * console.log(formatListLine(info, Date.UTC(2025, 10, 21), false))
 * // "-rw-r--r--   1 1000     1000           12 Nov  1 14:16 a.txt\r\n"
 * ```
 */
export const formatListLine = (info: FileInfo, now: number, localTime: boolean): string => {
  const nlink = info.nlink
  const links = nlink < 10 ? "  " + nlink : String(nlink).padStart(3)
  const size = String(info.size).padStart(8)
  return permissions(info) + " " + links + " " + idColumn(info.uid, "owner   ") + " " +
    idColumn(info.gid, "group   ") + " " + size + " " + cachedListTime(info.mtime, now, localTime) + " " +
    printableName(info.name) + "\r\n"
}

/**
 * One NLST line: the bare name and CRLF.
 *
 * @example
 * ```ts
 * import { formatNlstLine } from "./listing.ts"
 * console.log(JSON.stringify(formatNlstLine("a.txt"))) // "a.txt\r\n"
 * ```
 */
export const formatNlstLine = (name: string): string => printableName(name) + "\r\n"

/**
 * A time as RFC 3659 `time-val` (`YYYYMMDDHHMMSS`, UTC), as used by MDTM and the `modify` fact.
 *
 * @example
 * ```ts
 * import { mlsxTime } from "./listing.ts"
 * console.log(mlsxTime(new Date(Date.UTC(2026, 10, 21, 14, 16, 36)))) // "20261121141636"
 * ```
 */
export const mlsxTime = (date: Date): string =>
  String(date.getUTCFullYear()).padStart(4, "0") + two(date.getUTCMonth() + 1) + two(date.getUTCDate()) +
  two(date.getUTCHours()) + two(date.getUTCMinutes()) + two(date.getUTCSeconds())

const mlsxTimes = new Map<number, string>()

/** {@link mlsxTime}, remembered per second: the entries of one directory often share their times. */
const cachedMlsxTime = (date: Date): string => {
  const ms = date.getTime()
  return Number.isNaN(ms) ? mlsxTime(date) : memo(mlsxTimes, Math.floor(ms / 1000), () => mlsxTime(date))
}

const TIME_VAL = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.(\d+))?$/

/**
 * Parse an RFC 3659 `time-val` (14 digits, optionally `.` and fraction digits) as a UTC time, as
 * MFMT and `MDTM <time> <path>` send it. `undefined` for anything malformed or out of range.
 * A second of 60 (leap second) is accepted and lands on the next minute, unless that leaves year 9999.
 *
 * @example
 * ```ts
 * import { parseMlsxTime } from "./listing.ts"
 * console.log(parseMlsxTime("20261121141636")?.toISOString()) // "2026-11-21T14:16:36.000Z"
 * console.log(parseMlsxTime("20260230000000")) // undefined
 * ```
 */
export const parseMlsxTime = (text: string): Date | undefined => {
  const match = TIME_VAL.exec(text)
  if (match === null) return undefined
  const [year, month, day, hour, minute, second] = match.slice(1, 7).map(Number)
  if (month < 1 || month > 12 || day < 1 || day > daysIn(year, month) || hour > 23 || minute > 59 || second > 60) {
    return undefined
  }
  const millis = match[7] === undefined ? 0 : Number(match[7].slice(0, 3).padEnd(3, "0"))
  const date = new Date(0)
  date.setUTCFullYear(year, month - 1, day)
  date.setUTCHours(hour, minute, second, millis)
  // A leap second at the very end of 9999 would land in a year that has no 4-digit time-val.
  return date.getUTCFullYear() > 9999 ? undefined : date
}

const daysIn = (year: number, month: number): number => {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31
}

/** Every MLSx fact this server can report, in the order facts are written. */
export const MLSX_FACTS = [
  "type",
  "size",
  "modify",
  "perm",
  "unique",
  "unix.mode",
  "unix.uid",
  "unix.gid",
  "unix.owner",
  "unix.group",
] as const

/** One MLSx fact name. */
export type MlsxFact = (typeof MLSX_FACTS)[number]

/** The facts reported until a client chooses with `OPTS MLST` (pyftpdlib's defaults). */
export const DEFAULT_MLSX_FACTS: ReadonlyArray<MlsxFact> = ["type", "size", "modify", "perm", "unique"]

// FEAT advertises the facts in the order pyftpdlib does; the order of facts is not significant (RFC 3659 7.8).
const FEAT_ORDER: ReadonlyArray<MlsxFact> = [
  "type",
  "perm",
  "size",
  "modify",
  "unique",
  "unix.mode",
  "unix.uid",
  "unix.gid",
  "unix.owner",
  "unix.group",
]

/**
 * The MLST line of a FEAT reply (RFC 3659 section 7.8): every supported fact (all by default),
 * starred when enabled.
 *
 * @example
 * ```ts
 * import { DEFAULT_MLSX_FACTS, featMlstLine } from "./listing.ts"
 * console.log(featMlstLine(new Set(DEFAULT_MLSX_FACTS)))
 * // "MLST type*;perm*;size*;modify*;unique*;unix.mode;unix.uid;unix.gid;unix.owner;unix.group;"
 * ```
 */
export const featMlstLine = (enabled: ReadonlySet<string>, supported: ReadonlySet<string> = ALL_FACTS): string =>
  "MLST " + FEAT_ORDER.filter((fact) => supported.has(fact)).map((fact) => `${fact}${enabled.has(fact) ? "*" : ""};`)
    .join("")

const ALL_FACTS: ReadonlySet<string> = new Set(MLSX_FACTS)

/** The facts of a filesystem without Unix permission bits and owners (no `unix.*`). */
export const PORTABLE_MLSX_FACTS: ReadonlySet<string> = new Set(MLSX_FACTS.filter((f) => !f.startsWith("unix.")))

/**
 * The facts chosen by `OPTS MLST` (RFC 3659 section 7.9): known names, any case, `;`-separated;
 * unknown names (and facts not `supported`) are ignored and an empty list selects none. The
 * argument may include the leading `MLST` word or not.
 *
 * @example
 * ```ts
 * import { parseOptsMlst } from "./listing.ts"
 * console.log(parseOptsMlst("Type;SIZE;color;")) // Set { "type", "size" }
 * ```
 */
export const parseOptsMlst = (arg: string, supported: ReadonlySet<string> = ALL_FACTS): ReadonlySet<string> => {
  const list = arg.trim().replace(/^mlst(?:\s+|$)/i, "")
  const wanted = new Set(list.split(";").map((fact) => fact.trim().toLowerCase()))
  return new Set(MLSX_FACTS.filter((fact) => wanted.has(fact) && supported.has(fact)))
}

/**
 * The RFC 3659 section 7.5.5 `perm` fact from a user's pyftpdlib permission letters. Files:
 * `a` (APPE, from `a`), `d` (DELE), `f` (RNFR), `r` (RETR), `w` (STOR). Directories: `c` (create
 * files, from `w`), `d` (delete), `e` (CWD), `f` (rename), `l` (LIST), `m` (MKD), `p` (purge
 * contents, from `d`).
 *
 * @example
 * ```ts
 * import { mlsxPerm } from "./listing.ts"
 * console.log(mlsxPerm("directory", (letter) => "elr".includes(letter))) // "el"
 * ```
 */
export const mlsxPerm = (kind: FileInfo["kind"], allowed: (letter: string) => boolean): string => {
  const letters = kind === "directory" ? DIRECTORY_PERMS : FILE_PERMS
  let perm = ""
  for (const [fact, letter] of letters) if (allowed(letter)) perm += fact
  return perm
}

// [perm fact letter, user permission letter it requires]
const FILE_PERMS = [["a", "a"], ["d", "d"], ["f", "f"], ["r", "r"], ["w", "w"]] as const
const DIRECTORY_PERMS = [["c", "w"], ["d", "d"], ["e", "e"], ["f", "f"], ["l", "l"], ["m", "m"], ["p", "d"]] as const

/** RFC 3659 7.5.1 `type` values; what is neither a file nor a directory gets an `OS.unix=` type. */
const MLSX_TYPES: Record<FileInfo["kind"], string> = {
  file: "file",
  directory: "dir",
  symlink: "OS.unix=symlink",
  fifo: "OS.unix=fifo",
  socket: "OS.unix=socket",
  blockDevice: "OS.unix=blockdev",
  charDevice: "OS.unix=chardev",
  other: "file",
}

/** The names of users and groups, for the `unix.owner` and `unix.group` facts; `null` when unknown. */
export interface AccountNames {
  readonly user: (uid: number) => string | null
  readonly group: (gid: number) => string | null
}

/**
 * One MLSD entry or MLST fact line, without CRLF: the enabled `facts` that are known for `info`,
 * in {@link MLSX_FACTS} order, then a space and `name`. `type` marks the listed directory itself
 * (`cdir`) or its parent (`pdir`). Sizes are omitted for directories, `modify` and `unique` when
 * unknown, `unix.owner` and `unix.group` when `names` does not know the id (or is not given). `facts` is read once per set and remembered, so it must not be changed afterwards (a
 * session replaces its set on `OPTS MLST`).
 *
 * @example
 * ```ts
 * import { formatMlsxLine } from "./listing.ts"
 * const info = {
 *   name: "a.txt", kind: "file", size: 12, mtime: new Date(Date.UTC(2026, 10, 21, 14, 16, 36)), mode: 0o644,
 *   nlink: 1, uid: 1000, gid: 1000, dev: 0x803, ino: 0x1a2b,
 * } as const
 * console.log(formatMlsxLine(info, new Set(["type", "size", "modify", "perm", "unique"]), "adfrw", "a.txt"))
 * // "type=file;size=12;modify=20261121141636;perm=adfrw;unique=803g1a2b; a.txt"
 * ```
 */
export const formatMlsxLine = (
  info: FileInfo,
  facts: ReadonlySet<string>,
  perm: string,
  name: string,
  type?: "cdir" | "pdir",
  names?: AccountNames,
): string => {
  const chosen = factMask(facts)
  let line = ""
  for (let i = 0; i < MLSX_FACTS.length; i++) {
    if ((chosen & (1 << i)) === 0) continue
    const fact = MLSX_FACTS[i]
    const value = factValue(fact, info, perm, type, names)
    if (value !== undefined) line += fact + "=" + value + ";"
  }
  return line + " " + printableName(name)
}

const factMasks = new WeakMap<ReadonlySet<string>, number>()

/** The chosen facts as bits in {@link MLSX_FACTS} order, remembered per set (a session keeps its set). */
const factMask = (facts: ReadonlySet<string>): number => {
  let mask = factMasks.get(facts)
  if (mask === undefined) {
    mask = 0
    for (let i = 0; i < MLSX_FACTS.length; i++) if (facts.has(MLSX_FACTS[i])) mask |= 1 << i
    factMasks.set(facts, mask)
  }
  return mask
}

const devicePrefixes = new Map<number, string>()

/** `unique`'s device part and its `g`: the entries of a directory share their device. */
const devicePrefix = (dev: number): string => memo(devicePrefixes, dev, () => dev.toString(16) + "g")

const factValue = (
  fact: MlsxFact,
  info: FileInfo,
  perm: string,
  type: "cdir" | "pdir" | undefined,
  names: AccountNames | undefined,
): string | undefined => {
  switch (fact) {
    case "type":
      return type ?? MLSX_TYPES[info.kind]
    case "size":
      return info.kind === "file" || info.kind === "symlink" ? String(info.size) : undefined
    case "modify":
      return info.mtime === null ? undefined : cachedMlsxTime(info.mtime)
    case "perm":
      return perm
    case "unique":
      return info.dev === null || info.ino === null ? undefined : devicePrefix(info.dev) + info.ino.toString(16)
    case "unix.mode":
      return info.mode === null ? undefined : "0" + (info.mode & 0o7777).toString(8).padStart(3, "0")
    case "unix.uid":
      return info.uid === null ? undefined : String(info.uid)
    case "unix.gid":
      return info.gid === null ? undefined : String(info.gid)
    case "unix.owner":
      return info.uid === null ? undefined : names?.user(info.uid) ?? undefined
    case "unix.group":
      return info.gid === null ? undefined : names?.group(info.gid) ?? undefined
  }
}
