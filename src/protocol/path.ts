/**
 * Virtual (client-visible) paths: always absolute, `/`-separated and normalized, rooted at the
 * user's home. Nothing here touches the disk; the filesystem maps a virtual path to a real one.
 *
 * @module
 */

/**
 * Resolve a command's path argument against the current directory: an absolute `arg` replaces
 * `cwd`; `.` and empty components are dropped, `..` removes one component but never goes above
 * `/`, and the result has no trailing slash. An empty `arg` gives `cwd`.
 *
 * @example
 * ```ts
 * import { resolveVirtual } from "./path.ts"
 * console.log(resolveVirtual("/pub", "../../etc//passwd/")) // "/etc/passwd"
 * console.log(resolveVirtual("/pub", "/docs/./a.txt")) // "/docs/a.txt"
 * ```
 */
export const resolveVirtual = (cwd: string, arg: string): string => {
  if (arg === "") return normalize(cwd)
  const parts: string[] = []
  if (!arg.startsWith("/")) push(parts, cwd)
  push(parts, arg)
  return "/" + parts.join("/")
}

/**
 * The last component of a virtual path; `""` for the root, which has no name.
 *
 * @example
 * ```ts
 * import { basename } from "./path.ts"
 * console.log(basename("/docs/a.txt"), JSON.stringify(basename("/"))) // a.txt ""
 * ```
 */
export const basename = (path: string): string => {
  const normalized = normalize(path)
  return normalized.slice(normalized.lastIndexOf("/") + 1)
}

/**
 * The directory containing a virtual path; the root's parent is the root.
 *
 * @example
 * ```ts
 * import { dirname } from "./path.ts"
 * console.log(dirname("/docs/a.txt"), dirname("/a"), dirname("/")) // /docs / /
 * ```
 */
export const dirname = (path: string): string => {
  const normalized = normalize(path)
  const slash = normalized.lastIndexOf("/")
  return slash === 0 ? "/" : normalized.slice(0, slash)
}

// deno-lint-ignore no-control-regex -- matching control characters is the point
const CONTROL = /[\x00-\x1f\x7f-\x9f]/

/**
 * Whether a name has a control character (C0, DEL or C1): such names are refused when a client
 * creates them (vsftpd and pure-ftpd do the same), since they would reach other users' terminals
 * and tools through listings and logs.
 *
 * @example
 * ```ts
 * import { hasControlCharacter } from "./path.ts"
 * console.log(hasControlCharacter("\x1b[31mred"), hasControlCharacter("résumé.txt")) // true false
 * ```
 */
export const hasControlCharacter = (name: string): boolean => CONTROL.test(name)

const normalize = (path: string): string => resolveVirtual("/", path === "" ? "/" : path)

/** Apply the components of `path` to `parts`, resolving `.` and `..`. */
const push = (parts: string[], path: string): void => {
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue
    if (part === "..") parts.pop()
    else parts.push(part)
  }
}
