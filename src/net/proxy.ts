/**
 * The PROXY protocol (HAProxy's, versions 1 and 2): a load balancer that forwards a TCP
 * connection first sends a header naming the client's address and the address the client
 * connected to. Behind one, every client looks like the balancer unless the server reads it.
 *
 * {@link readProxyHeader} reads one header from a connection (the bytes read after it, which a
 * client may send at once on a data connection, are handed back in a {@link Transport} that
 * returns them first), within a deadline, and refuses anything malformed, truncated or oversized.
 * {@link Cidr} says which sources are trusted to send one.
 *
 * @module
 */
import { isIPv4, normalizeIPv4 } from "./address.ts"
import type { Transport } from "./transport.ts"

/** What a PROXY header says; `undefined` addresses for a `LOCAL`/`UNKNOWN` header (the balancer's own check). */
export interface ProxyHeader {
  readonly version: 1 | 2
  /** The client's address and port, as the balancer saw them. */
  readonly source: { readonly address: string; readonly port: number } | undefined
  /** The address and port the client connected to (the balancer's). */
  readonly destination: { readonly address: string; readonly port: number } | undefined
}

/** Why a header was refused. */
export class ProxyHeaderError extends Error {
  override readonly name = "ProxyHeaderError"
}

const V2_SIGNATURE = Uint8Array.of(0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a)
const V1_PREFIX = new TextEncoder().encode("PROXY ")
/** The longest version 1 header, CRLF included (the specification's limit). */
const V1_MAX = 107
/** The longest version 2 header accepted: the fixed 16 bytes and up to this many of addresses and TLVs. */
const V2_MAX_BODY = 2048

const decoder = new TextDecoder()

/** Bytes asked for per read while the header is incomplete. */
const READ_SIZE = 512

const port = (text: string): number => {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) throw new ProxyHeaderError(`bad port "${text}"`)
  return Number(text)
}

const ipv6 = (text: string): string => {
  if (!text.includes(":") || !/^[0-9a-f:.]+$/i.test(text) || URL.canParse(`http://[${text}]/`) === false) {
    throw new ProxyHeaderError(`bad IPv6 address "${text}"`)
  }
  return text.toLowerCase()
}

/** A version 1 header line (without its CRLF). */
const parseV1 = (line: string): ProxyHeader => {
  const fields = line.split(" ")
  if (fields[0] !== "PROXY") throw new ProxyHeaderError("not a PROXY header")
  if (fields[1] === "UNKNOWN") return { version: 1, source: undefined, destination: undefined }
  if (fields.length !== 6 || (fields[1] !== "TCP4" && fields[1] !== "TCP6")) {
    throw new ProxyHeaderError(`bad version 1 header "${line.slice(0, 60)}"`)
  }
  const address = (text: string) => {
    if (fields[1] === "TCP6") return ipv6(text)
    const normalized = normalizeIPv4(text)
    if (normalized === undefined || normalized !== text) throw new ProxyHeaderError(`bad IPv4 address "${text}"`)
    return normalized
  }
  return {
    version: 1,
    source: { address: address(fields[2]), port: port(fields[4]) },
    destination: { address: address(fields[3]), port: port(fields[5]) },
  }
}

const ipv6Text = (bytes: Uint8Array): string => {
  const groups: string[] = []
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16))
  // The canonical form (longest run of zero groups as `::`), as Deno reports addresses.
  return new URL(`http://[${groups.join(":")}]/`).hostname.slice(1, -1)
}

/** A version 2 header's body (what follows its 16 fixed bytes). */
const parseV2 = (command: number, family: number, body: Uint8Array): ProxyHeader => {
  // LOCAL: the balancer's own connection (a health check), with no client behind it.
  if (command === 0) return { version: 2, source: undefined, destination: undefined }
  if (command !== 1) throw new ProxyHeaderError(`bad version 2 command ${command}`)
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength)
  switch (family) {
    case 0x11: // TCP over IPv4
      if (body.length < 12) throw new ProxyHeaderError("truncated IPv4 addresses")
      return {
        version: 2,
        source: { address: body.subarray(0, 4).join("."), port: view.getUint16(8) },
        destination: { address: body.subarray(4, 8).join("."), port: view.getUint16(10) },
      }
    case 0x21: // TCP over IPv6
      if (body.length < 36) throw new ProxyHeaderError("truncated IPv6 addresses")
      return {
        version: 2,
        source: { address: ipv6Text(body.subarray(0, 16)), port: view.getUint16(32) },
        destination: { address: ipv6Text(body.subarray(16, 32)), port: view.getUint16(34) },
      }
    case 0x00: // UNSPEC: addresses unknown
      return { version: 2, source: undefined, destination: undefined }
    default:
      throw new ProxyHeaderError(`unsupported version 2 family 0x${family.toString(16)}`)
  }
}

const startsWith = (bytes: Uint8Array, prefix: Uint8Array): boolean =>
  bytes.length >= prefix.length && prefix.every((b, i) => bytes[i] === b)

/** Whether `bytes` (the first bytes received) could still be the start of a header. */
const couldBeHeader = (bytes: Uint8Array): boolean => {
  const n = Math.min(bytes.length, V2_SIGNATURE.length)
  return V2_SIGNATURE.subarray(0, n).every((b, i) => bytes[i] === b) ||
    V1_PREFIX.subarray(0, Math.min(n, V1_PREFIX.length)).every((b, i) => bytes[i] === b)
}

/**
 * The header at the start of `bytes`, and how many bytes it took; `undefined` while more bytes
 * are needed. Throws {@link ProxyHeaderError} for anything that is not a valid header.
 *
 * @example
 * ```ts
 * import { parseProxyHeader } from "./proxy.ts"
 * const bytes = new TextEncoder().encode("PROXY TCP4 192.0.2.7 198.51.100.1 50000 21\r\nUSER x")
 * console.log(parseProxyHeader(bytes)?.header.source) // { address: "192.0.2.7", port: 50000 }
 * ```
 */
export const parseProxyHeader = (bytes: Uint8Array): { header: ProxyHeader; length: number } | undefined => {
  if (!couldBeHeader(bytes)) throw new ProxyHeaderError("the connection did not start with a PROXY header")
  if (startsWith(bytes, V2_SIGNATURE)) {
    if (bytes.length < 16) return undefined
    const version = bytes[12] >> 4
    if (version !== 2) throw new ProxyHeaderError(`bad version 2 header version ${version}`)
    const length = (bytes[14] << 8) | bytes[15]
    if (length > V2_MAX_BODY) throw new ProxyHeaderError(`version 2 header of ${length} bytes is too long`)
    if (bytes.length < 16 + length) return undefined
    return { header: parseV2(bytes[12] & 0x0f, bytes[13], bytes.subarray(16, 16 + length)), length: 16 + length }
  }
  if (bytes.length < V1_PREFIX.length) return undefined
  const end = bytes.indexOf(0x0a)
  if (end < 0) {
    if (bytes.length >= V1_MAX) throw new ProxyHeaderError("version 1 header longer than 107 bytes")
    return undefined
  }
  if (end + 1 > V1_MAX || bytes[end - 1] !== 0x0d) throw new ProxyHeaderError("bad version 1 header end")
  return { header: parseV1(decoder.decode(bytes.subarray(0, end - 1))), length: end + 1 }
}

/** `conn`, with `rest` (bytes read past a header) returned first and `remoteAddr` as the header says. */
class ProxiedTransport implements Transport {
  constructor(
    private readonly conn: Transport,
    private rest: Uint8Array,
    readonly remoteAddr: Deno.Addr,
  ) {}

  get localAddr(): Deno.Addr {
    return this.conn.localAddr
  }

  read(buffer: Uint8Array): Promise<number | null> {
    if (this.rest.length === 0) return this.conn.read(buffer)
    const n = Math.min(buffer.length, this.rest.length)
    buffer.set(this.rest.subarray(0, n))
    this.rest = this.rest.subarray(n)
    return Promise.resolve(n)
  }

  write(data: Uint8Array): Promise<number> {
    return this.conn.write(data)
  }

  closeWrite(): Promise<void> {
    return this.conn.closeWrite()
  }

  close(): void {
    this.conn.close()
  }

  /** The connection under this one (for TCP options such as `setNoDelay`). */
  get inner(): Transport {
    return this.conn
  }
}

/** A connection that came through a balancer: the client's side as its header named it. */
export interface Proxied {
  readonly conn: Transport
  readonly header: ProxyHeader
}

/**
 * Read the PROXY header that starts `conn`, within `timeoutMs`. Resolves with `conn` as the
 * client's (its `remoteAddr` the header's source; a `LOCAL` or `UNKNOWN` header leaves the real
 * one), with every byte after the header still to be read (what was read past it comes first).
 * Rejects with {@link ProxyHeaderError} (the caller closes `conn`) for a malformed, truncated,
 * oversized or slow header.
 */
export const readProxyHeader = async (conn: Transport, timeoutMs: number): Promise<Proxied> => {
  let received = new Uint8Array(0)
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ProxyHeaderError(`no complete PROXY header within ${timeoutMs} ms`)), timeoutMs)
  })
  try {
    for (;;) {
      const parsed = parseProxyHeader(received)
      if (parsed !== undefined) {
        const { header, length } = parsed
        const source = header.source
        const remoteAddr: Deno.Addr = source === undefined
          ? conn.remoteAddr
          : { transport: "tcp", hostname: source.address, port: source.port }
        return { conn: new ProxiedTransport(conn, received.slice(length), remoteAddr), header }
      }
      // A balancer sends its header in one piece: usually one read takes all of it.
      const chunk = new Uint8Array(READ_SIZE)
      const n = await Promise.race([conn.read(chunk), timeout])
      if (n === null) throw new ProxyHeaderError("the connection ended inside its PROXY header")
      const next = new Uint8Array(received.length + n)
      next.set(received)
      next.set(chunk.subarray(0, n), received.length)
      received = next
    }
  } finally {
    clearTimeout(timer)
  }
}

/** An address range: `192.0.2.0/24`, `2001:db8::/32`, or one address. */
export class Cidr {
  private constructor(private readonly bits: bigint, private readonly prefix: number, private readonly v4: boolean) {}

  /** Parse `text`; throws a `RangeError` naming it when it is not a range. */
  static parse(text: string): Cidr {
    const [address, length] = text.split("/")
    const v4 = isIPv4(address)
    const bits = v4 ? ipv4Bits(address) : ipv6Bits(address)
    const width = v4 ? 32 : 128
    const prefix = length === undefined ? width : /^\d{1,3}$/.test(length) ? Number(length) : NaN
    if (bits === undefined || !(prefix >= 0 && prefix <= width)) throw new RangeError(`not an address range: ${text}`)
    return new Cidr(bits >> BigInt(width - prefix), prefix, v4)
  }

  /** Whether `address` (IPv4-mapped IPv6 counts as IPv4) lies in the range. */
  contains(address: string): boolean {
    const v4 = isIPv4(address)
    if (v4 !== this.v4) return false
    const bits = v4 ? ipv4Bits(address) : ipv6Bits(address)
    return bits !== undefined && bits >> BigInt((v4 ? 32 : 128) - this.prefix) === this.bits
  }
}

const ipv4Bits = (address: string): bigint | undefined => {
  const normalized = normalizeIPv4(address)
  return normalized === undefined
    ? undefined
    : normalized.split(".").reduce((value, part) => (value << 8n) | BigInt(part), 0n)
}

const ipv6Bits = (address: string): bigint | undefined => {
  if (!address.includes(":") || !URL.canParse(`http://[${address}]/`)) return undefined
  const host = new URL(`http://[${address}]/`).hostname.slice(1, -1)
  const [head, tail] = host.includes("::") ? host.split("::") : [host, undefined]
  const left = head === "" ? [] : head.split(":")
  const right = tail === undefined || tail === "" ? [] : tail.split(":")
  const groups = [...left, ...Array(8 - left.length - right.length).fill("0"), ...right]
  if (groups.length !== 8) return undefined
  return groups.reduce((value, group) => (value << 16n) | BigInt(parseInt(group, 16)), 0n)
}

/** The default trusted balancers: loopback only. */
export const LOOPBACK: ReadonlyArray<Cidr> = [Cidr.parse("127.0.0.0/8"), Cidr.parse("::1/128")]
