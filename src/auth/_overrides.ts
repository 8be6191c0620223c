/**
 * Per-directory permission overrides (pyftpdlib's `override_perm`): one owner of their meaning,
 * shared by the authorizers.
 *
 * @module
 */
import { AuthorizerError } from "../errors.ts"

/** Letters that replace a user's own in one directory (and, if `recursive`, below it). */
export interface Override {
  /** The real (canonical) directory. */
  readonly dir: string
  readonly perm: string
  readonly recursive: boolean
}

/** Whether `path` is `dir` or inside it, comparing whole components (`/` and `memory:/` end in a slash). */
export const isSubpath = (path: string, dir: string): boolean =>
  dir.endsWith("/") ? path.startsWith(dir) : path === dir || path.startsWith(dir + "/")

const parentOf = (path: string): string => {
  const i = path.lastIndexOf("/")
  return i <= 0 ? "/" : path.slice(0, i)
}

/** A missing or unreadable path counts as not a directory (pyftpdlib's `os.path.isdir`). */
export const isDirectory = (path: string): boolean => {
  try {
    return Deno.statSync(path).isDirectory
  } catch {
    return false
  }
}

/**
 * Whether `perm` is allowed on the real path `path` to a user whose letters are `letters`, with
 * `overrides` sorted most specific (longest) directory first: the first override that covers the
 * path decides. A non-recursive override covers its directory and the files directly in it, not
 * its subdirectories (which `directory` tells: by default, the local disk).
 */
export const permitted = (
  letters: string,
  overrides: ReadonlyArray<Override>,
  perm: string,
  path: string | undefined,
  directory: (path: string) => boolean = isDirectory,
): boolean => {
  if (path !== undefined && overrides.length > 0) {
    const target = path.length > 1 ? path.replace(/\/+$/, "") : path
    for (const override of overrides) {
      if (!isSubpath(target, override.dir)) continue
      if (
        override.recursive || target === override.dir ||
        (parentOf(target) === override.dir && !directory(target))
      ) {
        return override.perm.includes(perm)
      }
    }
  }
  return letters.includes(perm)
}

/** `overrides` sorted as {@link permitted} wants them. */
export const mostSpecificFirst = (overrides: Iterable<Override>): Override[] =>
  [...overrides].sort((a, b) => b.dir.length - a.dir.length)

/** The canonical path of an existing directory, or an `AuthorizerError`. */
export const existingDirectory = (path: string): string => {
  try {
    if (Deno.statSync(path).isDirectory) return Deno.realPathSync(path)
  } catch {
    // reported below, like a path that is not a directory
  }
  throw new AuthorizerError({ message: `no such directory: '${path}'` })
}
