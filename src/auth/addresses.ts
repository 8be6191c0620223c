/**
 * Client address rules: single addresses and CIDR ranges, IPv4 and IPv6 (`npm:ipaddr.js`). An
 * IPv4-mapped IPv6 client (`::ffff:192.0.2.7`) is matched as the IPv4 address it carries.
 *
 * @module
 */
import ipaddr from "ipaddr.js"

type Range = readonly [ipaddr.IPv4 | ipaddr.IPv6, number]

/** A list of allowed client addresses; see {@link parseAddressRules}. */
export interface AddressRules {
  /** The rules as written. */
  readonly text: ReadonlyArray<string>
  /** Whether `address` is one of them or inside one of their ranges. */
  readonly allows: (address: string) => boolean
}

/** An address in its usual form: four decimal parts (IPv4) or IPv6, nothing looser. */
const parseAddress = (text: string): ipaddr.IPv4 | ipaddr.IPv6 | undefined =>
  ipaddr.IPv4.isValidFourPartDecimal(text)
    ? ipaddr.IPv4.parse(text)
    : ipaddr.IPv6.isValid(text)
    ? ipaddr.IPv6.parse(text)
    : undefined

const parseRule = (rule: string): Range | string => {
  const [address, bits, extra] = rule.trim().split("/")
  const parsed = parseAddress(address)
  if (parsed === undefined || extra !== undefined) return `'${rule}' is not an IP address or CIDR range`
  const max = parsed.kind() === "ipv4" ? 32 : 128
  if (bits === undefined) return [parsed, max]
  const prefix = /^\d{1,3}$/.test(bits) ? Number(bits) : NaN
  if (!(prefix >= 0 && prefix <= max)) return `'${rule}': the prefix length must be 0 to ${max}`
  return [parsed, prefix]
}

/**
 * Parse a list such as `["192.0.2.7", "198.51.100.0/24", "2001:db8::/32"]`; a string says what is
 * wrong with the first bad entry.
 *
 * @example
 * ```ts
 * import { parseAddressRules } from "./addresses.ts"
 * const rules = parseAddressRules(["192.0.2.0/24", "2001:db8::/32"])
 * if (typeof rules !== "string") console.log(rules.allows("192.0.2.9"), rules.allows("::ffff:192.0.2.9")) // true true
 * ```
 */
export const parseAddressRules = (rules: ReadonlyArray<string>): AddressRules | string => {
  const ranges: Range[] = []
  for (const rule of rules) {
    const range = parseRule(rule)
    if (typeof range === "string") return range
    ranges.push(range)
  }
  return {
    text: rules,
    allows: (address) => {
      let client: ipaddr.IPv4 | ipaddr.IPv6
      try {
        client = ipaddr.process(address)
      } catch {
        return false
      }
      return ranges.some(([range, bits]) => range.kind() === client.kind() && client.match(range, bits))
    },
  }
}
