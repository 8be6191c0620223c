/**
 * Server options, with pyftpdlib's defaults.
 *
 * @module
 */
import { Cidr, LOOPBACK } from "./net/proxy.ts"

/** A SITE command added by the application: `SITE <name> <arg>` runs `handler`. */
export interface SiteCommand {
  /** Upper-case name after `SITE`, e.g. `"UPTIME"`. */
  readonly name: string
  /** One line for `HELP SITE <name>` and `SITE HELP`, e.g. `"Syntax: SITE UPTIME (show server uptime)."` */
  readonly help: string
  /** A permission letter the user must have on the current directory, if any. */
  readonly perm?: import("./auth/authorizer.ts").Permission
  /** Whether the command needs a logged-in user (default `true`). */
  readonly needsLogin?: boolean
  /** Produce the reply. The argument is everything after `SITE <name> `. */
  readonly handler: (
    context: SiteCommandContext,
  ) => import("effect").Effect.Effect<
    { readonly code: number; readonly text: string },
    import("./errors.ts").FilesystemError
  >
}

/** What a SITE command handler can see of the session that runs it. */
export interface SiteCommandContext {
  readonly arg: string
  readonly user: string | null
  /** The session's current virtual directory. */
  readonly cwd: string
  readonly remoteAddress: string
  /**
   * Resolve a path argument (relative to `cwd`) inside the user's home, with the jail's checks.
   * A `FilesystemError` the handler fails with is replied to like any other (550, 553, ...).
   */
  readonly resolve: (
    path: string,
  ) => import("effect").Effect.Effect<import("./fs/filesystem.ts").FtpPath, import("./errors.ts").FilesystemError>
  /** The server's filesystem, for operations on resolved paths. */
  readonly filesystem: import("./fs/filesystem.ts").FilesystemShape
}

/** Everything a server can be configured with. Every field has pyftpdlib's default. */
export interface ServerOptions {
  /** Address to listen on; `"::"` (the default) is dual stack where the OS allows it. */
  readonly host?: string
  /** Control port; `0` picks a free one (read it from the server's `address`). Default 2121. */
  readonly port?: number
  /** Inclusive passive port range `[from, to]`; without it the OS picks passive ports. */
  readonly passivePorts?: readonly [number, number]
  /** Address announced in PASV replies (NAT). */
  readonly masqueradeAddress?: string
  /** Per local address masquerade, e.g. `{ "192.168.1.10": "203.0.113.7" }`. */
  readonly masqueradeAddressMap?: Readonly<Record<string, string>>
  /** Allow data connections to and from addresses other than the client's (FXP). Default false. */
  readonly permitForeignAddresses?: boolean
  /** Allow PORT/EPRT to ports below 1024. Default false. */
  readonly permitPrivilegedPorts?: boolean
  /** Most simultaneous sessions; 0 for no limit. Default 512. */
  readonly maxCons?: number
  /** Most simultaneous sessions from one IP; 0 for no limit (the default). */
  readonly maxConsPerIp?: number
  /** Idle control connection timeout in seconds; 0 disables. Default 300. */
  readonly timeout?: number
  /** Seconds a data connection may stall (and a passive accept may wait) before 426/425. Default 300. */
  readonly dataTimeout?: number
  /** Greeting text after `220`. */
  readonly banner?: string
  /** Failed logins before the session is closed. Default 3. */
  readonly maxLoginAttempts?: number
  /** Seconds to wait before replying 530 to a bad password. Default 3. */
  readonly authFailedTimeout?: number
  /** Most simultaneous logged-in sessions of one user (530 at the login over it); 0 for no limit (the default). */
  readonly maxSessionsPerUser?: number
  /** Seconds a connection may take to log in before 421 and close; 0 disables. Default 60. */
  readonly loginTimeout?: number
  /**
   * Failed logins from one address within `banWindow` seconds that ban it for `banDuration`
   * seconds (421 at connect); 0 never bans (the default). Used when no `Bans` layer is provided.
   */
  readonly banAfterFailures?: number
  /** Seconds over which failed logins are counted for `banAfterFailures`. Default 600. */
  readonly banWindow?: number
  /** Seconds a ban lasts. Default 3600. */
  readonly banDuration?: number
  /**
   * Commands one session may send per second; the session that sends more gets 421 and is closed
   * (pyftpdlib's anti_flood demo, which uses 300). 0 for no limit (the default, as in pyftpdlib).
   */
  readonly maxCommandsPerSecond?: number
  /**
   * Let SITE CHMOD set the setuid, setgid and sticky bits (modes above 0777). Default false: an
   * uploader could otherwise make a setuid program owned by the server's user.
   */
  readonly permitSpecialModeBits?: boolean
  /** Show times in listings in local time instead of UTC. Default false. */
  readonly useLocaltime?: boolean
  /** Name of the encoding paths use on the wire; only `utf8` is supported. */
  readonly encoding?: string
  /** SITE commands added to the built-in CHMOD and HELP. */
  readonly siteCommands?: ReadonlyArray<SiteCommand>
  /** Certificate and key for FTPS; without them AUTH TLS is refused and no implicit listener starts. */
  readonly tls?: import("./net/tls.ts").TlsSettings
  /** Also listen on this port with implicit TLS (TLS from the first byte; conventionally 990). */
  readonly implicitTlsPort?: number
  /** Refuse USER and PASS until the control connection is secured with AUTH TLS. Default false. */
  readonly tlsControlRequired?: boolean
  /** Refuse PASV/EPSV/PORT/EPRT until PROT P. Default false. */
  readonly tlsDataRequired?: boolean
  /**
   * Refuse a PROT P data connection that does not resume a TLS session (RFC 4217 10.2; vsftpd's
   * `require_ssl_reuse`). Default false: many clients do not resume. Turning it on moves PROT P
   * passive data connections from Deno's native TLS to `node:tls`, which can tell a resumed
   * session but moves about a quarter fewer bytes per second.
   */
  readonly requireSessionReuse?: boolean
  /** Seconds a TLS handshake may take before the connection is dropped. Default 30. */
  readonly tlsHandshakeTimeout?: number
  /** Upload bandwidth (client to server: STOR, APPE, STOU) of each session in bytes/s; 0 for none (the default). */
  readonly readLimit?: number
  /**
   * Download bandwidth (server to client: RETR, LIST, NLST, MLSD, and what checksums read) of each
   * session in bytes/s; 0 for none (the default).
   */
  readonly writeLimit?: number
  /** Upload bandwidth of each user in bytes/s, shared by all of that user's sessions; 0 for none (the default). */
  readonly userReadLimit?: number
  /** Download bandwidth of each user in bytes/s, shared by all of that user's sessions; 0 for none (the default). */
  readonly userWriteLimit?: number
  /** Upload bandwidth of the whole server in bytes/s; 0 for no limit (the default). */
  readonly globalReadLimit?: number
  /** Download bandwidth of the whole server in bytes/s; 0 for no limit (the default). */
  readonly globalWriteLimit?: number
  /**
   * Store uploads (STOR, STOU) under a hidden temporary name in the same directory
   * (`.ftpd-upload-<random>-<name>`) and rename it over the target only once the whole file has
   * arrived, so that nobody ever sees half a file; a failed or cut upload deletes the temporary file
   * and leaves the target as it was. REST before STOR is refused (550): a cut upload leaves nothing to
   * resume. APPE still appends in place (making it atomic would copy the whole file first).
   * `onFileReceived` gets the target's real path; `onIncompleteFileReceived` gets the temporary
   * file's (removed by then). A symlink at the target is replaced, not written through. Default false.
   */
  readonly atomicUploads?: boolean
  /**
   * The checksum commands: HASH (with `OPTS HASH`) and the older XCRC, XMD5, XSHA1, XSHA256 and
   * XSHA512. Off, they are left out of FEAT and answered 502. Default true.
   */
  readonly hashCommands?: boolean
  /**
   * Most checksums computed at once by the whole server (a checksum reads a whole file and costs
   * CPU without moving data); a checksum over it gets 450, which a client may retry. 0 for no
   * limit. Default 2.
   */
  readonly maxHashes?: number
  /**
   * Seconds a graceful stop (the first SIGINT/SIGTERM under `runMain`, or `RunningServer.close()`)
   * lets running transfers finish before every session left is cut; 0 cuts them at once. Default 10.
   */
  readonly shutdownGrace?: number
  /**
   * Expect HAProxy's PROXY protocol (version 1 or 2) on control connections and passive data
   * connections from `proxyTrusted` sources: the client's address is the one the header names, for
   * logs, hooks, bans, limits and the data-connection checks. A connection from a trusted source
   * without a valid header in time (`loginTimeout`) is closed; one from any other source is refused.
   * Default false.
   */
  readonly proxyProtocol?: boolean
  /** The balancers trusted to send PROXY headers: addresses or CIDR ranges. Default loopback. */
  readonly proxyTrusted?: ReadonlyArray<string>
  /**
   * Share the control port with other servers listening on it (`SO_REUSEPORT`): the kernel spreads
   * new connections over them. Workers (`runWorkers`) set it; default false.
   */
  readonly reusePort?: boolean
  /**
   * Write the transfer log to this file in the xferlog format of wu-ftpd, ProFTPD and vsftpd: one
   * line per completed or cut file transfer. Under `runMain`, SIGHUP reopens it (for logrotate).
   * Default: none.
   */
  readonly xferlog?: string
  /**
   * Run this program (no shell, no arguments) after each completed upload, with the upload in its
   * environment: `FTPD_PATH` (real path), `FTPD_VIRTUAL_PATH`, `FTPD_SIZE`, `FTPD_USER`,
   * `FTPD_REMOTE_ADDRESS`, `FTPD_REMOTE_PORT`, `FTPD_SESSION`. Never waited for by a session;
   * bounded by `actionConcurrency`, `actionQueue` and `actionTimeout`. Default: none.
   */
  readonly onUpload?: string
  /**
   * POST a JSON event to this http(s) URL for every upload, download, delete, rename, login and
   * failed login; retried with backoff on failure, bounded like `onUpload`. Default: none.
   */
  readonly webhook?: string
  /** Upload actions (`onUpload`, `webhook`) running at once, each. Default 4. */
  readonly actionConcurrency?: number
  /** Upload actions waiting to run, each; past it new ones are dropped (logged and counted). Default 1000. */
  readonly actionQueue?: number
  /** Seconds an upload action may take (a webhook: each attempt) before it is given up. Default 30. */
  readonly actionTimeout?: number
}

/** Options with every default filled in. */
export type ResolvedOptions =
  & Required<
    Omit<
      ServerOptions,
      | "passivePorts"
      | "masqueradeAddress"
      | "tls"
      | "implicitTlsPort"
      | "proxyTrusted"
      | "xferlog"
      | "onUpload"
      | "webhook"
    >
  >
  & {
    /** The trusted balancers, parsed. */
    readonly proxyTrusted: ReadonlyArray<Cidr>
    readonly passivePorts: readonly [number, number] | null
    readonly masqueradeAddress: string | null
    readonly tls: import("./net/tls.ts").TlsSettings | null
    readonly implicitTlsPort: number | null
    readonly xferlog: string | null
    readonly onUpload: string | null
    readonly webhook: string | null
  }

const RATE_UNITS: Readonly<Record<string, number>> = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }

/**
 * Bytes per second written as a number with an optional `K`, `M` or `G` suffix in powers of 1024
 * (`512`, `64K`, `1.5M`, `1G`), rounded down to whole bytes; `undefined` when it is not one.
 *
 * @example
 * ```ts
 * import { parseRate } from "./options.ts"
 * console.log(parseRate("64K"), parseRate("fast")) // 65536 undefined
 * ```
 */
export const parseRate = (text: string): number | undefined => {
  const match = /^(\d+(?:\.\d+)?)([KMG]?)$/i.exec(text)
  const value = match ? Math.floor(Number(match[1]) * RATE_UNITS[match[2].toUpperCase()]) : NaN
  return Number.isSafeInteger(value) ? value : undefined
}

/** The version of this package, as `-v` prints it. */
export const VERSION = "0.1.0"

const limitNames = [
  "readLimit",
  "writeLimit",
  "userReadLimit",
  "userWriteLimit",
  "globalReadLimit",
  "globalWriteLimit",
] as const

/** Fill in defaults and check ranges; throws a `RangeError` with a clear text on a bad value. */
export const resolveOptions = (options: ServerOptions = {}): ResolvedOptions => {
  const resolved: ResolvedOptions = {
    host: options.host ?? "::",
    port: options.port ?? 2121,
    passivePorts: options.passivePorts ?? null,
    masqueradeAddress: options.masqueradeAddress ?? null,
    masqueradeAddressMap: options.masqueradeAddressMap ?? {},
    permitForeignAddresses: options.permitForeignAddresses ?? false,
    permitPrivilegedPorts: options.permitPrivilegedPorts ?? false,
    permitSpecialModeBits: options.permitSpecialModeBits ?? false,
    maxCons: options.maxCons ?? 512,
    maxConsPerIp: options.maxConsPerIp ?? 0,
    timeout: options.timeout ?? 300,
    dataTimeout: options.dataTimeout ?? 300,
    banner: options.banner ?? `ftpd ${VERSION} ready.`,
    maxLoginAttempts: options.maxLoginAttempts ?? 3,
    authFailedTimeout: options.authFailedTimeout ?? 3,
    maxSessionsPerUser: options.maxSessionsPerUser ?? 0,
    loginTimeout: options.loginTimeout ?? 60,
    banAfterFailures: options.banAfterFailures ?? 0,
    banWindow: options.banWindow ?? 600,
    banDuration: options.banDuration ?? 3600,
    maxCommandsPerSecond: options.maxCommandsPerSecond ?? 0,
    useLocaltime: options.useLocaltime ?? false,
    encoding: options.encoding ?? "utf8",
    siteCommands: options.siteCommands ?? [],
    tls: options.tls ?? null,
    implicitTlsPort: options.implicitTlsPort ?? null,
    tlsControlRequired: options.tlsControlRequired ?? false,
    tlsDataRequired: options.tlsDataRequired ?? false,
    requireSessionReuse: options.requireSessionReuse ?? false,
    tlsHandshakeTimeout: options.tlsHandshakeTimeout ?? 30,
    readLimit: options.readLimit ?? 0,
    writeLimit: options.writeLimit ?? 0,
    userReadLimit: options.userReadLimit ?? 0,
    userWriteLimit: options.userWriteLimit ?? 0,
    globalReadLimit: options.globalReadLimit ?? 0,
    globalWriteLimit: options.globalWriteLimit ?? 0,
    atomicUploads: options.atomicUploads ?? false,
    shutdownGrace: options.shutdownGrace ?? 10,
    proxyProtocol: options.proxyProtocol ?? false,
    reusePort: options.reusePort ?? false,
    proxyTrusted: options.proxyTrusted === undefined ? LOOPBACK : options.proxyTrusted.map((range) => {
      try {
        return Cidr.parse(range)
      } catch (error) {
        throw new RangeError(`proxyTrusted: ${(error as Error).message}`)
      }
    }),
    xferlog: options.xferlog ?? null,
    onUpload: options.onUpload ?? null,
    webhook: options.webhook ?? null,
    actionConcurrency: options.actionConcurrency ?? 4,
    actionQueue: options.actionQueue ?? 1000,
    actionTimeout: options.actionTimeout ?? 30,
    hashCommands: options.hashCommands ?? true,
    maxHashes: options.maxHashes ?? 2,
  }
  const port = (name: string, value: number) => {
    if (!Number.isInteger(value) || value < 0 || value > 65535) {
      throw new RangeError(`${name} must be an integer from 0 to 65535, got ${value}`)
    }
  }
  const nonNegative = (name: string, value: number) => {
    if (!Number.isFinite(value) || value < 0) throw new RangeError(`${name} must be a number >= 0, got ${value}`)
  }
  port("port", resolved.port)
  if (resolved.passivePorts !== null) {
    const [from, to] = resolved.passivePorts
    port("passivePorts[0]", from)
    port("passivePorts[1]", to)
    if (from === 0 || from > to) throw new RangeError(`passivePorts must be 1 <= from <= to, got ${from}-${to}`)
  }
  nonNegative("maxCons", resolved.maxCons)
  nonNegative("maxConsPerIp", resolved.maxConsPerIp)
  nonNegative("timeout", resolved.timeout)
  nonNegative("dataTimeout", resolved.dataTimeout)
  nonNegative("maxLoginAttempts", resolved.maxLoginAttempts)
  nonNegative("authFailedTimeout", resolved.authFailedTimeout)
  nonNegative("maxSessionsPerUser", resolved.maxSessionsPerUser)
  nonNegative("loginTimeout", resolved.loginTimeout)
  nonNegative("banAfterFailures", resolved.banAfterFailures)
  nonNegative("banWindow", resolved.banWindow)
  nonNegative("banDuration", resolved.banDuration)
  nonNegative("maxCommandsPerSecond", resolved.maxCommandsPerSecond)
  if (resolved.implicitTlsPort !== null) port("implicitTlsPort", resolved.implicitTlsPort)
  nonNegative("tlsHandshakeTimeout", resolved.tlsHandshakeTimeout)
  for (const name of limitNames) nonNegative(name, resolved[name])
  nonNegative("shutdownGrace", resolved.shutdownGrace)
  if (!Number.isInteger(resolved.maxHashes) || resolved.maxHashes < 0) {
    throw new RangeError(`maxHashes must be an integer >= 0, got ${resolved.maxHashes}`)
  }
  if (resolved.tls === null) {
    const needTls = [
      ["implicitTlsPort", resolved.implicitTlsPort !== null],
      ["tlsControlRequired", resolved.tlsControlRequired],
      ["tlsDataRequired", resolved.tlsDataRequired],
      ["requireSessionReuse", resolved.requireSessionReuse],
    ] as const
    for (const [name, set] of needTls) if (set) throw new RangeError(`${name} needs tls (a certificate and key)`)
  }
  if (resolved.xferlog === "") throw new RangeError("xferlog must be a file path, got an empty string")
  if (resolved.onUpload === "") throw new RangeError("onUpload must be a program, got an empty string")
  if (resolved.webhook !== null && !/^https?:$/.test(URL.parse(resolved.webhook)?.protocol ?? "")) {
    throw new RangeError(`webhook must be an http or https URL, got ${resolved.webhook}`)
  }
  for (const name of ["actionConcurrency", "actionQueue"] as const) {
    if (!Number.isInteger(resolved[name]) || resolved[name] < 1) {
      throw new RangeError(`${name} must be an integer >= 1, got ${resolved[name]}`)
    }
  }
  if (!(resolved.actionTimeout > 0) || !Number.isFinite(resolved.actionTimeout)) {
    throw new RangeError(`actionTimeout must be a number of seconds > 0, got ${resolved.actionTimeout}`)
  }
  if (!/^utf-?8$/i.test(resolved.encoding)) {
    throw new RangeError(`encoding ${resolved.encoding} is not supported (only utf8)`)
  }
  return resolved
}
