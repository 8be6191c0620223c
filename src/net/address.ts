/**
 * Addresses as the server compares and shows them, and the two ends of a connection.
 *
 * @module
 */

const MAPPED_IPV4 = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i

/** `address` as a dotted quad with normalized numbers, or `undefined` when it is not one. */
export const normalizeIPv4 = (address: string): string | undefined => {
  const parts = address.split(".")
  if (parts.length !== 4) return undefined
  const numbers: number[] = []
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part)) return undefined
    const value = Number(part)
    if (value > 255) return undefined
    numbers.push(value)
  }
  return numbers.join(".")
}

/**
 * An address as it should be compared and shown: `[...]` brackets removed, and an IPv4-mapped
 * IPv6 address (`::ffff:1.2.3.4`, any case) turned into its IPv4 form. Others are unchanged.
 *
 * @example
 * ```ts
 * import { plainAddress } from "./address.ts"
 * console.log(plainAddress("[::FFFF:10.0.0.1]")) // "10.0.0.1"
 * ```
 */
export const plainAddress = (address: string): string => {
  const unbracketed = address.startsWith("[") && address.endsWith("]") ? address.slice(1, -1) : address
  const mapped = MAPPED_IPV4.exec(unbracketed)
  return mapped === null ? unbracketed : mapped[1]
}

/**
 * Whether `address` is a dotted-quad IPv4 address (four numbers 0..255).
 *
 * @example
 * ```ts
 * import { isIPv4 } from "./address.ts"
 * console.log(isIPv4("192.168.0.1"), isIPv4("::1")) // true false
 * ```
 */
export const isIPv4 = (address: string): boolean => normalizeIPv4(address) !== undefined

/**
 * A host as URLs and Deno's permission flags spell it: an IPv6 literal in brackets.
 *
 * @example
 * ```ts
 * import { bracketed } from "./address.ts"
 * console.log(bracketed("::1"), bracketed("127.0.0.1")) // [::1] 127.0.0.1
 * ```
 */
export const bracketed = (host: string): string => (host.includes(":") ? `[${host}]` : host)

/**
 * `host:port`, with an IPv6 host in brackets.
 *
 * @example
 * ```ts
 * import { hostPort } from "./address.ts"
 * console.log(hostPort("::", 2121)) // [::]:2121
 * ```
 */
export const hostPort = (host: string, port: number): string => `${bracketed(host)}:${port}`

/** The two ends of a TCP connection, with IPv4-mapped IPv6 addresses shown as IPv4. */
export interface Endpoints {
  readonly remoteAddress: string
  readonly remotePort: number
  readonly localAddress: string
  readonly localPort: number
}

/**
 * The addresses of a connection.
 *
 * @example
 * ```ts
 * import { endpointsOf } from "./address.ts"
 * const addr = (hostname: string, port: number) => ({ transport: "tcp" as const, hostname, port })
 * console.log(endpointsOf({ remoteAddr: addr("::ffff:10.0.0.1", 5000), localAddr: addr("10.0.0.2", 21) }).remoteAddress)
 * // "10.0.0.1"
 * ```
 */
export const endpointsOf = (conn: { readonly remoteAddr: Deno.Addr; readonly localAddr: Deno.Addr }): Endpoints => {
  const remote = conn.remoteAddr as Deno.NetAddr
  const local = conn.localAddr as Deno.NetAddr
  return {
    remoteAddress: plainAddress(remote.hostname),
    remotePort: remote.port,
    localAddress: plainAddress(local.hostname),
    localPort: local.port,
  }
}
