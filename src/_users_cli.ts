/**
 * `ftpd users`: managing a user file, so that nobody edits password hashes by hand.
 *
 * ```sh
 * ftpd users add NAME --file FILE --home DIR [--perm LETTERS] [--hash HASH]
 * ftpd users passwd NAME --file FILE [--hash HASH]
 * ftpd users del NAME --file FILE
 * ftpd users list --file FILE
 * ```
 *
 * A new password is read from standard input when it is not a terminal (one line), else asked for
 * twice without echo; `--hash` takes a hash made elsewhere (`htpasswd -nB`, `openssl passwd -6`).
 * Every mistake is one `ftpd: error: ...` line and exit code 2.
 *
 * @module
 */
import { resolve } from "node:path"
import { parseArgs } from "node:util"
import { ALL_PERMISSIONS } from "./auth/authorizer.ts"
import {
  addUserText,
  editUserFile,
  hasUser,
  readUserFile,
  removeUserText,
  setPasswordText,
} from "./auth/_user_file_edit.ts"
import { UserFileError } from "./auth/_user_file_format.ts"
import { hashPassword, hashScheme } from "./auth/passwords.ts"
import { hasControlCharacter } from "./protocol/path.ts"

/** The text of `ftpd users --help`. */
export const USERS_USAGE = `usage: ftpd users add NAME --file FILE --home DIR [--perm LETTERS] [--hash HASH]
       ftpd users passwd NAME --file FILE [--hash HASH]
       ftpd users del NAME --file FILE
       ftpd users list --file FILE

Manage the user file of ftpd --users FILE (TOML; see the README's "Users" section).

  add      add a user (permissions default to "elr", read only)
  passwd   set a user's password
  del      remove a user
  list     list the users (names, homes, permissions, state; never the hashes)

Options:
  --file FILE      the user file (add creates it, mode 0600)
  --home DIR       the user's home directory (add)
  --perm LETTERS   permission letters out of "${ALL_PERMISSIONS}" (add; default "elr")
  --hash HASH      a password hash made elsewhere instead of a password (add, passwd): argon2,
                   bcrypt (htpasswd -nB), SHA-crypt (openssl passwd -6, mkpasswd -m sha-512),
                   yescrypt, scrypt or PBKDF2 PHC strings

The password is read from standard input when it is not a terminal (the first line), else asked
for twice without echo. The file is changed under a lock and replaced atomically.`

/** What `ftpd users` was asked. */
export type UsersCommand =
  | {
    readonly verb: "add"
    readonly name: string
    readonly file: string
    readonly home: string
    readonly perm: string
    readonly hash?: string
  }
  | { readonly verb: "passwd"; readonly name: string; readonly file: string; readonly hash?: string }
  | { readonly verb: "del"; readonly name: string; readonly file: string }
  | { readonly verb: "list"; readonly file: string }
  | { readonly verb: "help" }

class UsageError extends Error {}

const fail = (message: string): never => {
  throw new UsageError(message)
}

/**
 * Parse the arguments after `ftpd users`, without side effects; a string is the error.
 *
 * @example
 * ```ts
 * import { parseUsers } from "./_users_cli.ts"
 * console.log(parseUsers(["add", "alice", "--file", "users.toml", "--home", "/srv/ftp"]))
 * ```
 */
export const parseUsers = (argv: ReadonlyArray<string>): UsersCommand | string => {
  try {
    return parse(argv)
  } catch (error) {
    if (error instanceof UsageError) return error.message
    throw error
  }
}

const parse = (argv: ReadonlyArray<string>): UsersCommand => {
  let parsed: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true }>>
  try {
    parsed = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true })
  } catch (error) {
    const line = String((error as Error).message).split("\n")[0]
    return fail(line.charAt(0).toLowerCase() + line.slice(1))
  }
  const { values, positionals } = parsed
  if (values.help) return { verb: "help" }
  const [verb, name, ...extra] = positionals
  if (verb === undefined) return fail("users: expected a command: add, passwd, del or list")
  if (!["add", "passwd", "del", "list"].includes(verb)) {
    return fail(`users: unknown command '${verb}' (expected add, passwd, del or list)`)
  }
  const only = (allowed: ReadonlyArray<string>) => {
    for (const key of ["home", "perm", "hash"] as const) {
      if (values[key] !== undefined && !allowed.includes(key)) fail(`users ${verb}: --${key} is not used here`)
    }
  }
  if (verb === "list") {
    if (name !== undefined) fail(`users list: unexpected argument '${name}'`)
  } else {
    if (name === undefined) fail(`users ${verb}: expected a user name`)
    if (extra.length > 0) fail(`users ${verb}: unexpected argument '${extra[0]}'`)
    if (name === "anonymous") fail(`users ${verb}: the anonymous user is the file's [anonymous] table: edit it there`)
    if (/\s/.test(name) || hasControlCharacter(name)) {
      fail(`users ${verb}: a user name has no spaces or control characters`)
    }
  }
  if (values.file === undefined || values.file === "") return fail(`users ${verb}: requires --file FILE`)
  const file = resolve(values.file)
  const hash = values.hash
  if (hash !== undefined) {
    const scheme = hashScheme(hash)
    if ("error" in scheme) fail(`argument --hash: ${scheme.error}`)
  }
  switch (verb) {
    case "add": {
      only(["home", "perm", "hash"])
      if (values.home === undefined || values.home === "") return fail("users add: requires --home DIR")
      const perm = values.perm ?? "elr"
      const bad = [...perm].find((letter) => !ALL_PERMISSIONS.includes(letter))
      if (bad !== undefined) fail(`argument --perm: unknown permission letter '${bad}' (letters: ${ALL_PERMISSIONS})`)
      return { verb, name: name!, file, home: resolve(values.home), perm, ...(hash === undefined ? {} : { hash }) }
    }
    case "passwd":
      only(["hash"])
      return { verb, name: name!, file, ...(hash === undefined ? {} : { hash }) }
    case "del":
      only([])
      return { verb, name: name!, file }
    default:
      only([])
      return { verb: "list", file }
  }
}

const OPTIONS = {
  file: { type: "string" },
  home: { type: "string" },
  perm: { type: "string" },
  hash: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const

const encoder = new TextEncoder()

/** One line typed without echo (raw mode): Enter ends it, Backspace erases, Ctrl-C or Ctrl-D gives up. */
const promptHidden = async (prompt: string): Promise<string | null> => {
  // Raw (no echo) before the prompt shows: what is typed as soon as it appears is not echoed either.
  Deno.stdin.setRaw(true)
  await Deno.stderr.write(encoder.encode(prompt))
  const bytes: number[] = []
  const buffer = new Uint8Array(1)
  try {
    for (;;) {
      const n = await Deno.stdin.read(buffer)
      if (n === null || buffer[0] === 3 || buffer[0] === 4) return null
      if (buffer[0] === 13 || buffer[0] === 10) break
      if (buffer[0] === 127 || buffer[0] === 8) bytes.pop()
      else bytes.push(buffer[0])
    }
  } finally {
    Deno.stdin.setRaw(false)
    await Deno.stderr.write(encoder.encode("\n"))
  }
  return new TextDecoder().decode(new Uint8Array(bytes))
}

/** The new password: the first line of standard input, or typed twice at the terminal. */
const readPassword = async (): Promise<string> => {
  let password: string | null
  if (Deno.stdin.isTerminal()) {
    password = await promptHidden("Password: ")
    if (password === null) return fail("no password given")
    const again = await promptHidden("Password again: ")
    if (again !== password) fail("the passwords do not match")
  } else {
    password = (await new Response(Deno.stdin.readable).text()).split(/\r?\n/)[0]
  }
  if (password === "") fail("the password is empty")
  return password
}

const state = (enabled: boolean, expires: Date | undefined): string => {
  if (!enabled) return "disabled"
  if (expires === undefined) return "enabled"
  const day = expires.toISOString().slice(0, 10)
  return Date.now() >= expires.getTime() ? `expired ${day}` : `expires ${day}`
}

const run = async (command: Exclude<UsersCommand, { verb: "help" }>): Promise<void> => {
  const note = (plain: boolean) => {
    if (plain) console.error("ftpd: note: the file was rewritten in plain form: its layout could not be kept")
  }
  switch (command.verb) {
    case "add": {
      try {
        if (!(await Deno.stat(command.home)).isDirectory) fail(`argument --home: not a directory: ${command.home}`)
      } catch (error) {
        if (error instanceof UsageError) throw error
        fail(`argument --home: no such directory: ${command.home}`)
      }
      const hash = command.hash ?? await hashPassword(await readPassword())
      const user = { name: command.name, password: hash, home: command.home, perm: command.perm }
      note((await editUserFile(command.file, true, (text) => addUserText(text, user))).plain)
      return console.log(`ftpd: added user '${command.name}' to ${command.file}`)
    }
    case "passwd": {
      // Nobody is asked for the password of a user who does not exist.
      if (!(await hasUser(command.file, command.name))) fail(`no such user '${command.name}' in ${command.file}`)
      const hash = command.hash ?? await hashPassword(await readPassword())
      note((await editUserFile(command.file, false, (text) => setPasswordText(text, command.name, hash))).plain)
      return console.log(`ftpd: set the password of '${command.name}' in ${command.file}`)
    }
    case "del":
      note((await editUserFile(command.file, false, (text) => removeUserText(text, command.name))).plain)
      return console.log(`ftpd: removed user '${command.name}' from ${command.file}`)
    case "list": {
      const contents = await readUserFile(command.file)
      const rows = [
        ["NAME", "HOME", "PERM", "STATE"],
        ...[...contents.users.values()].map((u) => [u.name, u.home, u.perm, state(u.enabled, u.expires)]),
        ...(contents.anonymous === undefined ? [] : [[
          "anonymous",
          contents.anonymous.home,
          contents.anonymous.perm,
          state(contents.anonymous.enabled, contents.anonymous.expires),
        ]]),
      ]
      const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)))
      for (const row of rows) console.log(row.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd())
    }
  }
}

/**
 * Run `ftpd users ...` and exit: 0 on success, 2 with one `ftpd: error: ...` line on any mistake.
 */
export const usersMain = async (argv: ReadonlyArray<string>): Promise<void> => {
  const command = parseUsers(argv)
  if (typeof command === "string") {
    console.error(`ftpd: error: ${command}`)
    console.error("Try 'ftpd users --help'.")
    return Deno.exit(2)
  }
  if (command.verb === "help") return console.log(USERS_USAGE)
  try {
    await run(command)
  } catch (error) {
    const known = error instanceof UsageError || error instanceof UserFileError
    const message = known
      ? error.message
      : error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied
      ? (error as Error).message.split(", run again")[0]
      : String((error as Error)?.message ?? error)
    console.error(`ftpd: error: ${message}`)
    Deno.exit(2)
  }
}
