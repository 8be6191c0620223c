/**
 * Parses and formats the host-port arguments of PORT, EPRT, PASV and EPSV (RFC 959, RFC 2428).
 *
 * @module
 */
import { normalizeIPv4 } from "../net/address.ts"

const BYTE = /^\s*(\d{1,3})\s*$/
const DECIMAL = /^\d{1,5}$/
const IPV6 = /^[0-9a-f:.]+$/i

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
