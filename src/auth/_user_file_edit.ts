/**
 * Changing a user file the way `ftpd users` does: under an exclusive lock, so that concurrent runs
 * never lose each other's change, and by writing a new file next to it (mode 0600) that is renamed
 * over the old one, so that a reader (the server reloading) sees the old file or the new one, never
 * half of one.
 *
 * An edit changes the file's text in place where it can (a new `[users.NAME]` table at the end, one
 * `password = ...` line, one table removed), keeping comments and layout; it checks the result by
 * reading it back, and writes the file in plain form only when an in-place edit would not give the
 * intended contents.
 *
 * @module
 */
import { parse, stringify } from "smol-toml"
import { fieldLine, parseUserFile, type UserFileContents, UserFileError } from "./_user_file_format.ts"

type Table = Record<string, unknown>

/** What a user added by `ftpd users add` has; the rest keeps the defaults. */
export interface NewUser {
  readonly name: string
  readonly password: string
  readonly home: string
  readonly perm: string
}

/** What an edit did: `plain` when the file had to be rewritten in plain form (comments lost). */
export interface Edited {
  readonly plain: boolean
}

const tables = (data: Table): Table => (data.users ?? {}) as Table

/** `text` changed in place if that gives `expected`, else `expected` written plainly. */
const settle = (edited: string | undefined, expected: Table): { text: string; plain: boolean } => {
  if (edited !== undefined) {
    try {
      // The same serializer for both: equal text is equal contents (in the file's order).
      if (stringify(parse(edited)) === stringify(expected)) return { text: edited, plain: false }
    } catch {
      // Not valid TOML after all: write it plainly.
    }
  }
  return { text: stringify(expected), plain: true }
}

const withNewline = (text: string) => text === "" || text.endsWith("\n") ? text : text + "\n"

/** Add `user` to the file's text; fails if the name is taken. */
export const addUserText = (text: string, user: NewUser): { text: string; plain: boolean } => {
  const data = parse(text) as Table
  if (Object.hasOwn(tables(data), user.name)) throw new UserFileError(`user '${user.name}' already exists`)
  const entry = { password: user.password, home: user.home, perm: user.perm }
  const expected = { ...data, users: { ...tables(data), [user.name]: entry } }
  const block = stringify({ users: { [user.name]: entry } })
  return settle(`${withNewline(text)}${text.trim() === "" ? "" : "\n"}${block}`, expected)
}

/** Set the password hash of user `name` in the file's text; fails for an unknown user. */
export const setPasswordText = (text: string, name: string, hash: string): { text: string; plain: boolean } => {
  const data = parse(text) as Table
  const user = tables(data)[name] as Table | undefined
  if (user === undefined) throw new UserFileError(`no such user '${name}'`)
  const expected = { ...data, users: { ...tables(data), [name]: { ...user, password: hash } } }
  const lines = text.split("\n")
  const at = fieldLine(text, ["users", name, "password"])
  let edited: string | undefined
  if (at !== undefined && user.password !== undefined) {
    const indent = /^\s*/.exec(lines[at - 1])![0]
    lines[at - 1] = indent + stringify({ password: hash }).trim()
    edited = lines.join("\n")
  }
  return settle(edited, expected)
}

/** Remove user `name` from the file's text; fails for an unknown user. */
export const removeUserText = (text: string, name: string): { text: string; plain: boolean } => {
  const data = parse(text) as Table
  if (!Object.hasOwn(tables(data), name)) throw new UserFileError(`no such user '${name}'`)
  const { [name]: _, ...rest } = tables(data)
  const expected = { ...data, users: rest }
  const lines = text.split("\n")
  const start = fieldLine(text, ["users", name])
  let edited: string | undefined
  if (start !== undefined && new RegExp(`^\\s*\\[\\s*users\\s*\\.`).test(lines[start - 1])) {
    let end = start
    while (end < lines.length && !/^\s*\[/.test(lines[end])) end++
    lines.splice(start - 1, end - start + 1)
    edited = lines.join("\n").replace(/\n{3,}/g, "\n\n")
  }
  return settle(edited, expected)
}

/**
 * Run `change` on the file's current text with the file locked, and put its result in place
 * atomically (a temporary file in the same directory, mode 0600, renamed over it). `create` makes
 * a missing file (empty); otherwise a missing file is an error. The lock is taken on the file
 * itself; a run that waited for it while another replaced the file finds that the file it locked
 * is no longer the one at `path`, and locks the new one.
 */
export const editUserFile = async (
  path: string,
  create: boolean,
  change: (text: string) => { text: string; plain: boolean },
): Promise<Edited> => {
  for (;;) {
    let file: Deno.FsFile
    try {
      file = await Deno.open(path, { read: true, write: create, create, mode: 0o600 })
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) throw new UserFileError(`no such file: ${path}`)
      throw error
    }
    try {
      await file.lock(true)
      const locked = await file.stat()
      const current = await Deno.stat(path).catch(() => null)
      if (current === null || current.ino !== locked.ino || current.dev !== locked.dev) continue
      const text = await Deno.readTextFile(path)
      const { text: next, plain } = change(text)
      // What the server would refuse is not written.
      parseUserFile(next)
      await replace(path, next, locked)
      return { plain }
    } finally {
      file.close()
    }
  }
}

/** Write `text` to a new file beside `path` and rename it over `path`, keeping the old file's owner. */
const replace = async (path: string, text: string, old: Deno.FileInfo): Promise<void> => {
  const slash = path.lastIndexOf("/")
  const temporary = `${path.slice(0, slash + 1)}.${path.slice(slash + 1)}.${crypto.randomUUID().slice(0, 8)}.tmp`
  try {
    const file = await Deno.open(temporary, { write: true, createNew: true, mode: 0o600 })
    try {
      const bytes = new TextEncoder().encode(text)
      for (let written = 0; written < bytes.length;) written += await file.write(bytes.subarray(written))
      await file.syncData()
    } finally {
      file.close()
    }
    // The server may run as another user than the one editing (root): the file stays theirs.
    if (old.uid !== null && old.gid !== null) await Deno.chown(temporary, old.uid, old.gid).catch(() => undefined)
    await Deno.rename(temporary, path)
  } catch (error) {
    await Deno.remove(temporary).catch(() => undefined)
    throw error
  }
}

/** The file's text; a missing file is a {@link UserFileError} that names it. */
const readText = async (path: string): Promise<string> => {
  try {
    return await Deno.readTextFile(path)
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw new UserFileError(`no such file: ${path}`)
    throw error
  }
}

/** The file's users, checked as the server checks them. */
export const readUserFile = async (path: string): Promise<UserFileContents> => parseUserFile(await readText(path))

/** Whether the file has a user `name` (read as TOML only: the rest of the file may still be wrong). */
export const hasUser = async (path: string, name: string): Promise<boolean> => {
  const text = await readText(path)
  try {
    return Object.hasOwn(tables(parse(text) as Table), name)
  } catch {
    return parseUserFile(text).users.has(name)
  }
}
