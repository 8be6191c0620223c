/**
 * The argument of HOST (RFC 7151 3): a domain name, an IPv4 address, or an IPv6 address in
 * brackets.
 *
 * @module
 */

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/

/**
 * The host named by a HOST argument, lower-cased (names are case-insensitive; an IPv6 literal
 * keeps its brackets), or `undefined` when it is not a valid name or address literal.
 *
 * @example
 * ```ts
 * import { parseHost } from "./host.ts"
 * console.log(parseHost("FTP.Example.com")) // "ftp.example.com"
 * console.log(parseHost("[::1]")) // "[::1]"
 * console.log(parseHost("bad_name!")) // undefined
 * ```
 */
export const parseHost = (arg: string): string | undefined => {
  const host = arg.trim().toLowerCase()
  if (host.startsWith("[")) {
    if (!host.endsWith("]") || !/^\[[0-9a-f:.]+\]$/.test(host)) return undefined
    return URL.canParse(`ftp://${host}/`) ? host : undefined
  }
  const name = host.endsWith(".") ? host.slice(0, -1) : host
  if (name === "" || name.length > 253) return undefined
  return name.split(".").every((label) => LABEL.test(label)) ? name : undefined
}
