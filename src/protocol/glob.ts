/**
 * Wildcards in the last component of a LIST or NLST argument (`mget *.bin` sends `NLST *.bin`):
 * `*` (any run of characters), `?` (one character) and `[...]` (one of a set or range, `[!...]` or
 * `[^...]` for none of them), as shells and vsftpd match them. A leading `.` is matched only by a
 * pattern that starts with one, so `*` leaves hidden files out, as a shell does.
 *
 * @module
 */

/** Whether `name` has a wildcard. */
export const hasWildcard = (name: string): boolean => /[*?[]/.test(name)

/**
 * A path whose last component has wildcards, split into the directory as the client wrote it
 * (`""` for the current one) and the pattern; `undefined` when there is no wildcard there.
 *
 * @example
 * ```ts
 * import { splitGlob } from "./glob.ts"
 * console.log(splitGlob("sub/*.bin")) // { directory: "sub", pattern: "*.bin" }
 * console.log(splitGlob("/*.txt")) // { directory: "/", pattern: "*.txt" }
 * console.log(splitGlob("sub/a.bin")) // undefined
 * ```
 */
export const splitGlob = (path: string): { readonly directory: string; readonly pattern: string } | undefined => {
  const slash = path.lastIndexOf("/")
  const pattern = path.slice(slash + 1)
  if (!hasWildcard(pattern)) return undefined
  return { directory: slash < 0 ? "" : slash === 0 ? "/" : path.slice(0, slash), pattern }
}

const escape = (text: string) => text.replace(/[\\^$.*+?()[\]{}|/-]/g, "\\$&")

/**
 * A test of names against `pattern`.
 *
 * @example
 * ```ts
 * import { globMatcher } from "./glob.ts"
 * const match = globMatcher("data[0-9]?.bin")
 * console.log(match("data12.bin"), match("data1.bin"), match("datax1.bin")) // true false false
 * console.log(globMatcher("*")(".hidden"), globMatcher(".*")(".hidden")) // false true
 * ```
 */
export const globMatcher = (pattern: string): (name: string) => boolean => {
  let source = ""
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]
    if (c === "*") source += ".*"
    else if (c === "?") source += "."
    else if (c === "[") {
      // A set runs to the first `]` after its first character; without one, `[` is itself.
      let j = i + 1
      if (pattern[j] === "!" || pattern[j] === "^") j++
      if (pattern[j] === "]") j++
      const close = pattern.indexOf("]", j)
      if (close < 0) {
        source += "\\["
        continue
      }
      const negated = pattern[i + 1] === "!" || pattern[i + 1] === "^"
      const body = pattern.slice(i + 1 + (negated ? 1 : 0), close).replace(/[\\\]^[]/g, "\\$&")
      source += `[${negated ? "^" : ""}${body}]`
      i = close
    } else source += escape(c)
  }
  const regex = new RegExp(`^${source}$`, "su")
  const hidden = pattern.startsWith(".")
  return (name) => (hidden || !name.startsWith(".")) && regex.test(name)
}
