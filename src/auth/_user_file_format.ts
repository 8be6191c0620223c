/**
 * The user file's format: TOML (`npm:smol-toml`), read and checked field by field, with every
 * mistake reported as one line that names the line of the file and the field.
 *
 * ```toml
 * [users.alice]
 * password = "$argon2id$v=19$m=19456,t=2,p=1$..."   # a hash, never the password itself
 * home = "/srv/ftp/alice"
 * perm = "elradfmwMT"                                 # default "elr"
 * msg_login = "Welcome, Alice."                       # default "Login successful."
 * msg_quit = "Bye."                                   # default "Goodbye."
 * enabled = true                                      # default true
 * expires = 2027-01-01                                # no login from then on (local time)
 * allow = ["192.0.2.0/24", "2001:db8::/32"]           # client addresses; default any
 * max_sessions = 2                                    # instead of the server's --max-sessions-per-user
 * read_limit = "1M"                                   # upload bytes/s of all her sessions together
 * write_limit = "512K"                                # download bytes/s, likewise
 * overrides = [{ dir = "/incoming", perm = "elrw", recursive = true }]
 *
 * [anonymous]                                         # optional: login as "anonymous", any password
 * home = "/srv/ftp/pub"
 * ```
 *
 * @module
 */
import { parse, TomlDate, TomlError } from "smol-toml"
import { ALL_PERMISSIONS, type UserLimits } from "./authorizer.ts"
import { type AddressRules, parseAddressRules } from "./addresses.ts"
import { hashScheme } from "./passwords.ts"
import { parseRate } from "../options.ts"
import { hasControlCharacter } from "../protocol/path.ts"

/** One user of the file, checked; `home` and override directories as written (not yet resolved). */
export interface FileEntry {
  readonly name: string
  /** The password hash; `null` for the anonymous entry. */
  readonly password: string | null
  readonly home: string
  readonly perm: string
  readonly msgLogin: string
  readonly msgQuit: string
  readonly enabled: boolean
  /** No login from this time on. */
  readonly expires: Date | undefined
  readonly allow: AddressRules | undefined
  readonly limits: UserLimits | undefined
  /** Directories as the user sees them (`/incoming`), inside the home. */
  readonly overrides: ReadonlyArray<{ readonly dir: string; readonly perm: string; readonly recursive: boolean }>
}

/** What the file holds. */
export interface UserFileContents {
  readonly users: ReadonlyMap<string, FileEntry>
  readonly anonymous: FileEntry | undefined
}

/** What is wrong with a user file: `message` names the line and the field. */
export class UserFileError extends Error {
  override readonly name = "UserFileError"
}

const USER_KEYS = [
  "password",
  "home",
  "perm",
  "msg_login",
  "msg_quit",
  "enabled",
  "expires",
  "allow",
  "max_sessions",
  "read_limit",
  "write_limit",
  "overrides",
]

/** A TOML key as written in a dotted path: bare when it can be, quoted otherwise. */
export const tomlKey = (key: string): string => /^[A-Za-z0-9_-]+$/.test(key) ? key : JSON.stringify(key)

/** `users.alice.perm`, as a TOML reader would write it. */
const dotted = (path: ReadonlyArray<string>): string => path.map(tomlKey).join(".")

/** The keys of a dotted TOML key or table header (`users."bob smith".perm` → three keys). */
const splitKeys = (text: string): string[] | undefined => {
  const keys: string[] = []
  const pattern = /\s*(?:([A-Za-z0-9_-]+)|"((?:[^"\\]|\\.)*)"|'([^']*)')\s*(\.|$)/y
  let at = 0
  while (at < text.length) {
    pattern.lastIndex = at
    const match = pattern.exec(text)
    if (match === null) return undefined
    try {
      keys.push(match[1] ?? (match[2] !== undefined ? JSON.parse(`"${match[2]}"`) : match[3]))
    } catch {
      return undefined
    }
    at = pattern.lastIndex
    if (match[4] === "") break
  }
  return keys
}

const startsWith = (path: ReadonlyArray<string>, prefix: ReadonlyArray<string>) =>
  prefix.length <= path.length && prefix.every((key, i) => path[i] === key)

/**
 * The line (1-based) where the field at `path` is set, or where its table starts; `undefined`
 * when it can't be found (a form this simple reader does not follow).
 */
export const fieldLine = (text: string, path: ReadonlyArray<string>): number | undefined => {
  let table: string[] = []
  let best: number | undefined
  const lines = text.split("\n")
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]
    const header = /^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$/.exec(line)
    if (header !== null) {
      table = splitKeys(header[1]) ?? []
      // The field's own table, or the first table inside it.
      if (startsWith(table, path)) return i + 1
      if (startsWith(path, table) && table.length > 0) best = i + 1
      continue
    }
    const assignment = /^\s*([^=#]+?)\s*=/.exec(line)
    if (assignment === null) continue
    const keys = [...table, ...(splitKeys(assignment[1]) ?? [])]
    if (startsWith(path, keys)) return i + 1
  }
  return best
}

type Table = Record<string, unknown>

const isTable = (value: unknown): value is Table =>
  typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date)

/** A local date or time (no offset) is read in the server's time zone. */
const toDate = (value: TomlDate): Date =>
  value.isLocal()
    ? new Date(
      value.getUTCFullYear(),
      value.getUTCMonth(),
      value.getUTCDate(),
      value.getUTCHours(),
      value.getUTCMinutes(),
      value.getUTCSeconds(),
    )
    : new Date(value.getTime())

/**
 * Read and check a user file. Throws a {@link UserFileError} naming the line and the field of the
 * first mistake: a syntax error, an unknown key, a value of the wrong type, a plain-text password
 * or a hash ftpd can't read, an unknown permission letter, a bad address or limit.
 *
 * @example
 * ```ts
 * import { parseUserFile } from "./_user_file_format.ts"
 * const contents = parseUserFile('[anonymous]\nhome = "/srv/ftp"\n')
 * console.log(contents.anonymous?.perm) // "elr"
 * ```
 */
export const parseUserFile = (text: string): UserFileContents => {
  let data: Table
  try {
    data = parse(text)
  } catch (error) {
    if (error instanceof TomlError) {
      const reason = error.message.split("\n")[0].replace(/^Invalid TOML document: /, "")
      throw new UserFileError(`line ${error.line}: ${reason}`)
    }
    throw error
  }
  const wrong = (path: ReadonlyArray<string>, what: string): never => {
    const line = fieldLine(text, path)
    throw new UserFileError(`${line === undefined ? "" : `line ${line}: `}${dotted(path)}: ${what}`)
  }
  for (const key of Object.keys(data)) {
    if (key !== "users" && key !== "anonymous") wrong([key], "unknown key (expected [users.NAME] or [anonymous])")
  }
  if (data.users !== undefined && !isTable(data.users)) wrong(["users"], "must be a table of users ([users.NAME])")
  const users = new Map<string, FileEntry>()
  for (const [name, value] of Object.entries((data.users ?? {}) as Table)) {
    if (name === "anonymous") wrong(["users", name], "the anonymous user is the [anonymous] table")
    if (name === "" || /\s/.test(name) || hasControlCharacter(name)) {
      wrong(["users", name], "a user name has no spaces or control characters")
    }
    users.set(name, entry(["users", name], value, wrong))
  }
  const anonymous = data.anonymous === undefined ? undefined : entry(["anonymous"], data.anonymous, wrong)
  return { users, anonymous }
}

const entry = (
  path: ReadonlyArray<string>,
  value: unknown,
  wrong: (path: ReadonlyArray<string>, what: string) => never,
): FileEntry => {
  if (!isTable(value)) return wrong(path, "must be a table")
  const anonymous = path[0] === "anonymous"
  const at = (key: string) => [...path, key]
  for (const key of Object.keys(value)) {
    if (!USER_KEYS.includes(key) || (anonymous && key === "password")) {
      wrong(at(key), anonymous && key === "password" ? "anonymous logs in with any password" : "unknown key")
    }
  }
  const string = (key: string, required: boolean): string | undefined => {
    const v = value[key]
    if (v === undefined) return required ? wrong(at(key), "missing") : undefined
    return typeof v === "string" ? v : wrong(at(key), "must be a string")
  }
  const count = (key: string): number | undefined => {
    const v = value[key]
    if (v === undefined) return undefined
    return typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : wrong(at(key), "must be an integer >= 0")
  }
  const rate = (key: string): number | undefined => {
    const v = value[key]
    if (v === undefined) return undefined
    const parsed = typeof v === "number"
      ? (Number.isSafeInteger(v) && v >= 0 ? v : undefined)
      : typeof v === "string"
      ? parseRate(v)
      : undefined
    return parsed ?? wrong(at(key), `must be bytes per second, a number or a string such as "64K" or "1M"`)
  }
  const letters = (key: string, text: string | undefined): string => {
    const perm = text ?? "elr"
    for (const letter of perm) {
      if (!ALL_PERMISSIONS.includes(letter)) {
        wrong(at(key), `unknown permission letter '${letter}' (letters: ${ALL_PERMISSIONS})`)
      }
    }
    return perm
  }

  let password: string | null = null
  if (!anonymous) {
    password = string("password", true)!
    const scheme = hashScheme(password)
    if ("error" in scheme) wrong(at("password"), scheme.error)
  }
  const home = string("home", true)!
  if (!home.startsWith("/")) wrong(at("home"), "must be an absolute path")
  const enabled = value.enabled ?? true
  if (typeof enabled !== "boolean") wrong(at("enabled"), "must be true or false")
  const expires = value.expires
  if (expires !== undefined && !(expires instanceof TomlDate && (expires.isDate() || expires.isDateTime()))) {
    wrong(at("expires"), "must be a date (2027-01-01) or a date and time (2027-01-01T12:00:00Z)")
  }
  let allow: AddressRules | undefined
  if (value.allow !== undefined) {
    if (!Array.isArray(value.allow) || !value.allow.every((a) => typeof a === "string")) {
      wrong(at("allow"), "must be a list of addresses and CIDR ranges")
    }
    const rules = parseAddressRules(value.allow as string[])
    if (typeof rules === "string") wrong(at("allow"), rules)
    allow = rules as AddressRules
  }
  const maxSessions = count("max_sessions")
  const readLimit = rate("read_limit")
  const writeLimit = rate("write_limit")
  const limits = maxSessions === undefined && readLimit === undefined && writeLimit === undefined
    ? undefined
    : { maxSessions, readLimit, writeLimit }
  const overrides: FileEntry["overrides"][number][] = []
  if (value.overrides !== undefined) {
    if (!Array.isArray(value.overrides)) wrong(at("overrides"), "must be a list of { dir, perm, recursive }")
    for (const [i, item] of (value.overrides as unknown[]).entries()) {
      const where = `overrides[${i}]`
      if (!isTable(item)) return wrong(at("overrides"), `${where} must be a table { dir, perm, recursive }`)
      const extra = Object.keys(item).find((k) => !["dir", "perm", "recursive"].includes(k))
      if (extra !== undefined) wrong(at("overrides"), `${where}: unknown key '${extra}'`)
      const { dir, perm, recursive = false } = item
      if (typeof dir !== "string" || !dir.startsWith("/") || dir.split("/").includes("..")) {
        wrong(at("overrides"), `${where}.dir must be a directory as the user sees it, such as "/incoming"`)
      }
      if (dir === "/" || dir === "") wrong(at("overrides"), `${where}.dir: the home itself takes perm, not an override`)
      if (typeof perm !== "string") wrong(at("overrides"), `${where}.perm must be a string`)
      if (typeof recursive !== "boolean") wrong(at("overrides"), `${where}.recursive must be true or false`)
      overrides.push({
        dir: dir as string,
        perm: letters("overrides", perm as string),
        recursive: recursive as boolean,
      })
    }
  }
  return {
    name: anonymous ? "anonymous" : path[1],
    password,
    home,
    perm: letters("perm", string("perm", false)),
    msgLogin: string("msg_login", false) ?? "Login successful.",
    msgQuit: string("msg_quit", false) ?? "Goodbye.",
    enabled: enabled as boolean,
    expires: expires === undefined ? undefined : toDate(expires as TomlDate),
    allow,
    limits,
    overrides,
  }
}
