/**
 * Parses and formats the host-port arguments of PORT, EPRT, PASV and EPSV (RFC 959, RFC 2428).
 *
 * @module
 */

const BYTE = /^\s*(\d{1,3})\s*$/
const DECIMAL = /^\d{1,5}$/
const IPV6 = /^[0-9a-f:.]+$/i
const MAPPED_IPV4 = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i

/** `text` as a number 0..255, or `undefined`. */
const byte = (text: string): number | undefined => {
  const match = BYTE.exec(text)
  if (match === null) return undefined
  const value = Number(match[1])
  return value <= 255 ? value : undefined
}

/** `text` as a TCP port 1..65535, or `undefined`. */
const tcpPort = (text: string): number | undefined => {
  if (!DECIMAL.test(text)) return undefined
  const value = Number(text)
  return value >= 1 && value <= 65535 ? value : undefined
}

/** `address` as a dotted quad with normalized numbers, or `undefined` when it is not one. */
const normalizeIPv4 = (address: string): string | undefined => {
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
 * Parse a PORT argument `h1,h2,h3,h4,p1,p2` (RFC 959 section 4.1.2): six numbers 0..255 with
 * optional whitespace around them, naming an IPv4 host and a port 1..65535. The host is returned
 * with its numbers normalized (`010` becomes `10`).
 *
 * @example
 * ```ts
 * import { parsePort } from "./address.ts"
 * console.log(parsePort("127,0,0,1,195,80")) // { host: "127.0.0.1", port: 50000 }
 * ```
 */
export const parsePort = (arg: string): { host: string; port: number } | undefined => {
  const parts = arg.split(",")
  if (parts.length !== 6) return undefined
  const numbers: number[] = []
  for (const part of parts) {
    const value = byte(part)
    if (value === undefined) return undefined
    numbers.push(value)
  }
  const port = numbers[4] * 256 + numbers[5]
  if (port === 0) return undefined
  return { host: numbers.slice(0, 4).join("."), port }
}

/**
 * Parse an EPRT argument `<d>family<d>address<d>port<d>` (RFC 2428 section 2), where `<d>` is any
 * printable ASCII character, usually `|`. Family 1 needs a dotted-quad IPv4 address, family 2 an
 * IPv6 address (checked roughly: hex digits, colons and dots, at least one colon). Returns
 * `"family"` for an unknown family (reply 522) and `"syntax"` for anything else malformed (501).
 *
 * @example
 * ```ts
 * import { parseEprt } from "./address.ts"
 * console.log(parseEprt("|2|::1|50000|")) // { family: 2, host: "::1", port: 50000 }
 * console.log(parseEprt("|3|x|50000|")) // "family"
 * ```
 */
export const parseEprt = (arg: string): { family: 1 | 2; host: string; port: number } | "syntax" | "family" => {
  const text = arg.trim()
  if (text.length === 0) return "syntax"
  const delimiter = text.charCodeAt(0)
  if (delimiter < 33 || delimiter > 126) return "syntax"
  const fields = text.split(text[0])
  if (fields.length !== 5 || fields[0] !== "" || fields[4] !== "") return "syntax"
  const [, family, address, portText] = fields
  if (!DECIMAL.test(family)) return "syntax"
  if (family !== "1" && family !== "2") return "family"
  const port = tcpPort(portText)
  if (port === undefined) return "syntax"
  if (family === "1") {
    const host = normalizeIPv4(address)
    return host === undefined ? "syntax" : { family: 1, host, port }
  }
  if (!address.includes(":") || !IPV6.test(address)) return "syntax"
  return { family: 2, host: address, port }
}

/**
 * The `h1,h2,h3,h4,p1,p2` text of a 227 reply (RFC 959 section 4.1.2) for an IPv4 host.
 *
 * @example
 * ```ts
 * import { formatPasv } from "./address.ts"
 * console.log(`227 Entering Passive Mode (${formatPasv("127.0.0.1", 50000)}).`) // (127,0,0,1,195,80)
 * ```
 */
export const formatPasv = (host: string, port: number): string =>
  `${host.replaceAll(".", ",")},${port >> 8},${port & 255}`

/**
 * The `(|||port|)` text of a 229 reply (RFC 2428 section 3).
 *
 * @example
 * ```ts
 * import { formatEpsv } from "./address.ts"
 * console.log(`229 Entering Extended Passive Mode ${formatEpsv(50000)}`) // (|||50000|)
 * ```
 */
export const formatEpsv = (port: number): string => `(|||${port}|)`

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
