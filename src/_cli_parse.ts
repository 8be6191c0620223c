/**
 * Parsing `ftpd`'s command line (pyftpdlib's flags, and ftpd's own) into a {@link CliConfig},
 * without side effects: every bad flag or value is one `UsageError` naming it.
 *
 * @module
 */
import { resolve } from "node:path"
import { parseArgs } from "node:util"
import { DEFAULTS, FLAGS, TLS_ONLY, UNIX_ONLY, USAGE } from "./_cli_flags.ts"
import {
  type MountSpec,
  parseMount,
  parseStorage,
  type S3Settings,
  storageName,
  type StorageSpec,
} from "./_cli_storage.ts"
import type { JailMode } from "./fs/local.ts"
import { bracketed, isIPv4 } from "./net/address.ts"
import { Cidr } from "./net/proxy.ts"
import type { LogFormat } from "./log.ts"
import type { MetricsEndpoint } from "./observability/metrics.ts"
import { parseRate, type ServerOptions, VERSION } from "./options.ts"

/** What the command line asks for, ready to serve. */
export interface CliConfig {
  /** Server options; only what the flags set, the rest keeps the library's defaults. */
  readonly options: ServerOptions
  /**
   * What `-d` shares, as the users' home: the absolute path of a directory (default the current
   * one), `memory:/`, or `s3://BUCKET[/PREFIX]`.
   */
  readonly directory: string
  /** `-d` parsed: a local directory, memory, or a bucket. */
  readonly storage: StorageSpec
  /** `--mount`s, in the order given. */
  readonly mounts: ReadonlyArray<MountSpec>
  /** How `s3://` storage is reached (`--s3-endpoint`, `--s3-region`, `--s3-path-style`). */
  readonly s3: S3Settings
  /** The single user of `-u`/`-P`, or `null` for anonymous access. */
  readonly user: { readonly name: string; readonly password: string } | null
  /** `-w`: the user gets every permission (`elradfmwMT`) instead of read-only (`elr`). */
  readonly write: boolean
  /** `-D`: log every command and reply. */
  readonly debug: boolean
  /** `--workers`: how many workers serve (1: the server runs in this thread alone). */
  readonly workers: number | "auto"
  /** `--jail`: how the shared directory keeps users in (see `LocalFilesystem`). */
  readonly jail: "auto" | JailMode
  /** `--tls`: the certificate and key files (absolute paths), read by {@link loadTls}; `null` without TLS. */
  readonly tls: TlsFiles | null
  /** `--metrics`: where to serve Prometheus metrics; absent: no metrics. */
  readonly metrics?: MetricsEndpoint
  /** `--log-format`; absent: pyftpdlib's. */
  readonly logFormat?: LogFormat
  /** `--log-file` (absolute path); absent: standard error. */
  readonly logFile?: string
  /** `--users FILE` (an absolute path) and `--users-watch`, or `null`. */
  readonly users: { readonly file: string; readonly watch: boolean } | null
  /** `--unix-users` and its options, or `null`. */
  readonly unix: UnixUsers | null
}

/** What `--unix-users` and the `--unix-*` flags ask for (see `UnixAuthorizer`). */
export interface UnixUsers {
  /** Only these may log in (empty: anyone not rejected). */
  readonly allowedUsers: ReadonlyArray<string>
  /** These may not (default `root`; empty when `allowedUsers` is given). */
  readonly rejectedUsers: ReadonlyArray<string>
  /** The system user `anonymous` logs in as, or `null` for no anonymous login. */
  readonly anonymousUser: string | null
  readonly requireValidShell: boolean
  /** Each user kept in their home (`--unix-jail`), or the whole tree seen from it. */
  readonly jail: boolean
}

/** Where `--certfile` and `--keyfile` point. */
export interface TlsFiles {
  readonly certFile: string
  /** The `--keyfile`, or the certfile when it was not given (a file holding both). */
  readonly keyFile: string
}

/** The outcome of {@link parseCli}: serve, print a text and exit 0, or report a usage error. */
export type CliParse =
  | { readonly kind: "run"; readonly config: CliConfig }
  | { readonly kind: "help" | "version"; readonly text: string }
  | { readonly kind: "error"; readonly message: string }

class UsageError {
  constructor(readonly message: string) {}
}

const fail = (message: string): never => {
  throw new UsageError(message)
}

const flagName = (long: string): string => {
  const flag = FLAGS.find((f) => f.long === long)
  return flag?.short ? `-${flag.short}/--${long}` : `--${long}`
}

// Value parsers: each takes the flag's text and its long name (for the error message).

const integer = (text: string, long: string, min: number, max: number): number => {
  const value = /^-?\d+$/.test(text) ? Number(text) : NaN
  if (!(value >= min && value <= max)) {
    const expected = max === Infinity ? `an integer >= ${min}` : `an integer from ${min} to ${max}`
    fail(`argument ${flagName(long)}: expected ${expected}, got '${text}'`)
  }
  return value
}

const port = (text: string, long: string): number => integer(text, long, 0, 65535)

const count = (text: string, long: string): number => integer(text, long, 0, Infinity)

const seconds = (text: string, long: string): number => {
  if (!/^\d+(\.\d+)?$/.test(text)) fail(`argument ${flagName(long)}: expected a number of seconds >= 0, got '${text}'`)
  return Number(text)
}

/** Bytes per second: `512`, `64K`, `1.5M`, `1G` (binary units), rounded down to whole bytes. */
const rate = (text: string, long: string): number =>
  parseRate(text) ??
    fail(
      `argument ${
        flagName(long)
      }: expected bytes per second, a number with an optional K, M or G suffix, got '${text}'`,
    )

const portRange = (text: string): readonly [number, number] => {
  const match = /^(\d+)-(\d+)$/.exec(text)
  const from = match ? Number(match[1]) : NaN
  const to = match ? Number(match[2]) : NaN
  if (!(from >= 1 && to <= 65535 && from < to)) {
    fail(`argument -r/--range: expected FROM-TO with 1 <= FROM < TO <= 65535 (e.g. 8000-9000), got '${text}'`)
  }
  return [from, to]
}

const address = (text: string): string => {
  if (text === "" || !URL.canParse(`ftp://${bracketed(text)}/`)) {
    fail(`argument -i/--interface: invalid address '${text}'`)
  }
  return text
}

// PASV replies carry an IPv4 address (RFC 959 4.1.2), so the NAT address must be one.
const ipv4 = (text: string): string => {
  if (!isIPv4(text)) fail(`argument -n/--nat-address: expected an IPv4 address, got '${text}'`)
  return text
}

const jailMode = (text: string): "auto" | JailMode => {
  if (text !== "auto" && text !== "descriptor" && text !== "path") {
    fail(`argument --jail: expected auto, descriptor or path, got '${text}'`)
  }
  return text as "auto" | JailMode
}

const workerCount = (text: string, long: string): number | "auto" => {
  if (text === "auto") return "auto"
  const value = /^\d+$/.test(text) ? Number(text) : NaN
  if (!(value >= 1 && value <= 256)) {
    fail(`argument ${flagName(long)}: expected 'auto' or an integer from 1 to 256, got '${text}'`)
  }
  return value
}

const cidrs = (text: string): string[] => {
  const ranges = text.split(",").map((range) => range.trim())
  for (const range of ranges) {
    try {
      Cidr.parse(range)
    } catch {
      fail(`argument --proxy-trusted: not an address or range: '${range}'`)
    }
  }
  return ranges
}

/** `alice,bob`: user names, none empty. */
const names = (text: string, long: string): string[] => {
  const list = text.split(",").map((name) => name.trim())
  if (list.some((name) => name === "" || /\s/.test(name))) {
    fail(`argument --${long}: expected user names separated by commas, got '${text}'`)
  }
  return list
}

const encoding = (text: string): string => {
  if (!/^utf-?8$/i.test(text)) fail(`argument --encoding: unsupported encoding '${text}' (only utf8 is supported)`)
  return text
}

/**
 * `-p -1` would make `parseArgs` refuse `-1` as "ambiguous"; pass it on as `--port=-1` so that
 * the value check reports what is wrong with it.
 */
const joinNegativeValues = (argv: ReadonlyArray<string>): string[] => {
  const out: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const flag = FLAGS.find((f) => f.metavar && (argv[i] === `--${f.long}` || argv[i] === `-${f.short}`))
    const next = argv[i + 1]
    if (flag && next !== undefined && /^-\d/.test(next)) {
      out.push(`--${flag.long}=${next}`)
      i++
    } else {
      out.push(argv[i])
    }
  }
  return out
}

/**
 * Parse `ftpd`'s command line (pyftpdlib's flags) without side effects.
 *
 * @example
 * ```ts
 * import { parseCli } from "@ftpd/server/cli"
 * const parsed = parseCli(["-p", "2121", "-w", "-d", "/srv/ftp"])
 * if (parsed.kind === "run") console.log(parsed.config.options.port) // 2121
 * ```
 */
export const parseCli = (argv: ReadonlyArray<string>): CliParse => {
  try {
    const values = parseFlags(argv)
    if (values.help) return { kind: "help", text: USAGE }
    if (values.version) return { kind: "version", text: `ftpd ${VERSION}` }
    return { kind: "run", config: toConfig(values) }
  } catch (error) {
    if (error instanceof UsageError) return { kind: "error", message: error.message }
    throw error
  }
}

type Values = Record<string, string | boolean | string[] | undefined>

const parseFlags = (argv: ReadonlyArray<string>): Values => {
  try {
    return parseArgs({
      args: joinNegativeValues(argv),
      options: Object.fromEntries(
        FLAGS.map((f) => [f.long, {
          type: f.metavar ? "string" : "boolean",
          ...(f.short ? { short: f.short } : {}),
          ...(f.multiple ? { multiple: true } : {}),
        }]),
      ),
      strict: true,
      allowPositionals: false,
    }).values as Values
  } catch (error) {
    const code = (error as { code?: unknown }).code
    if (typeof code !== "string" || !code.startsWith("ERR_PARSE_ARGS")) throw error
    const line = String((error as Error).message).split("\n")[0]
    return fail(line.charAt(0).toLowerCase() + line.slice(1))
  }
}

/** Drop the keys a flag did not set, so that their defaults stay the library's. */
const setOnly = <T extends object>(record: T): T =>
  Object.fromEntries(Object.entries(record).filter(([, value]) => value !== undefined)) as T

const toConfig = (values: Values): CliConfig => {
  const value = <A>(long: string, parse: (text: string, long: string) => A): A | undefined => {
    const text = values[long]
    return typeof text === "string" ? parse(text, long) : undefined
  }
  const flag = (long: string): boolean => values[long] === true
  const username = value("username", String)
  const password = value("password", String)
  if (username === "") fail("argument -u/--username: must not be empty")
  if (username !== undefined && !password) fail("argument -u/--username: requires a password (-P/--password)")
  // pyftpdlib ignores -P alone; refusing it keeps a server the user meant to protect from going anonymous.
  if (username === undefined && password !== undefined) fail("argument -P/--password: requires -u/--username")
  const timeout = value("timeout", seconds)
  const tls = flag("tls")
  if (!tls) {
    const given = TLS_ONLY.find((long) => values[long] !== undefined)
    if (given !== undefined) fail(`argument --${given}: requires --tls`)
  }
  if (values["proxy-trusted"] !== undefined && values["proxy-protocol"] !== true) {
    fail("argument --proxy-trusted: requires --proxy-protocol")
  }
  for (const long of ["ban-window", "ban-duration"]) {
    if (values[long] !== undefined && values["ban-after-failures"] === undefined) {
      fail(`argument --${long}: requires --ban-after-failures`)
    }
  }
  const storage = value("directory", (text) => {
    const parsed = parseStorage(text)
    return typeof parsed === "string" ? fail(`argument -d/--directory: ${parsed}`) : parsed
  }) ?? { kind: "local" as const, path: resolve(".") }
  const mountTexts = values.mount
  const mounts = (Array.isArray(mountTexts) ? mountTexts : []).map((text) => {
    const parsed = parseMount(text)
    return typeof parsed === "string" ? fail(`argument --mount: ${parsed}`) : parsed
  })
  for (const [i, mount] of mounts.entries()) {
    if (mounts.findIndex((m) => m.at === mount.at) !== i) fail(`argument --mount: two mounts at ${mount.at}`)
  }
  const endpoint = value("s3-endpoint", (text) => {
    if (!/^https?:\/\/[^/?#]+\/?$/.test(text) || !URL.canParse(text)) {
      fail(`argument --s3-endpoint: expected an http:// or https:// URL of the service, got '${text}'`)
    }
    return text
  })
  const region = value("s3-region", (text) => {
    if (!/^[a-z0-9-]+$/.test(text)) fail(`argument --s3-region: expected a region name (e.g. eu-west-1), got '${text}'`)
    return text
  })
  const usesS3 = [storage, ...mounts.map((m) => m.storage)].some((spec) => spec.kind === "s3")
  if (!usesS3) {
    const given = ["s3-endpoint", "s3-region", "s3-path-style"].find((long) => values[long] !== undefined)
    if (given !== undefined) {
      fail(`argument --${given}: requires s3:// storage (-d s3://BUCKET or --mount AT=s3://BUCKET)`)
    }
  }
  if (storage.kind !== "local" && values.jail !== undefined && !mounts.some((m) => m.storage.kind === "local")) {
    fail("argument --jail: requires a local directory (-d or --mount)")
  }
  const workers = value("workers", workerCount) ?? 1
  if (workers !== 1 && [storage, ...mounts.map((m) => m.storage)].some((spec) => spec.kind === "memory")) {
    // Each worker would hold a tree of its own, and a client would see whichever its connection reached.
    fail("argument --workers: memory: storage lives in one process and can't be shared by workers")
  }
  const certFile = value("certfile", String)
  const keyFile = value("keyfile", String)
  if (tls && !certFile) fail("argument --tls: requires a certificate (--certfile PATH)")
  if (keyFile === "") fail("argument --keyfile: must not be empty")
  const controlPort = value("port", port) ?? DEFAULTS.port
  const implicitTlsPort = value("implicit-tls-port", port)
  if (implicitTlsPort !== undefined && implicitTlsPort !== 0 && implicitTlsPort === controlPort) {
    fail(`argument --implicit-tls-port: must differ from the control port (${controlPort})`)
  }
  /** A switch present only when on, so that the options without it stay as they were. */
  const on = (long: string): true | undefined => flag(long) || undefined
  const monitoring = monitoringConfig(values, value("interface", address) ?? DEFAULTS.host, controlPort)
  const users = value("users", String)
  if (users === "") fail("argument --users: must not be empty")
  if (users === undefined && flag("users-watch")) fail("argument --users-watch: requires --users")
  const unixUsers = flag("unix-users")
  if (!unixUsers) {
    const given = UNIX_ONLY.find((long) => values[long] !== undefined)
    if (given !== undefined) fail(`argument --${given}: requires --unix-users`)
  }
  // Each way of naming users excludes the others; the file or the system gives homes and permissions.
  for (const [source, set] of [["--users", users !== undefined], ["--unix-users", unixUsers]] as const) {
    if (!set) continue
    if (username !== undefined) fail(`argument -u/--username: not allowed with ${source}`)
    if (source === "--unix-users" && users !== undefined) fail("argument --users: not allowed with --unix-users")
    if (values.directory !== undefined) {
      fail(`argument -d/--directory: not allowed with ${source} (each user has a home)`)
    }
    if (flag("write")) fail(`argument -w/--write: not allowed with ${source} (each user has permissions)`)
  }
  const allowedUsers = value("unix-allowed-users", names)
  const rejectedUsers = value("unix-rejected-users", names)
  if (allowedUsers !== undefined && rejectedUsers !== undefined) {
    fail("argument --unix-rejected-users: not allowed with --unix-allowed-users")
  }
  if (values["unix-anonymous-user"] === "") fail("argument --unix-anonymous-user: must not be empty")
  const jail = value("jail", jailMode) ?? "auto"
  if (unixUsers && jail === "path") fail("argument --jail: --unix-users needs the descriptor jail")
  return {
    ...monitoring.config,
    options: setOnly<ServerOptions>({
      ...monitoring.options,
      host: value("interface", address) ?? DEFAULTS.host,
      port: controlPort,
      passivePorts: value("range", portRange),
      masqueradeAddress: value("nat-address", ipv4),
      timeout,
      // As in pyftpdlib, --timeout also bounds stalled data connections, unless --data-timeout says otherwise.
      dataTimeout: value("data-timeout", seconds) ?? timeout,
      loginTimeout: value("login-timeout", seconds),
      banner: value("banner", String),
      permitForeignAddresses: flag("permit-foreign-addresses"),
      permitPrivilegedPorts: flag("permit-privileged-ports"),
      permitSpecialModeBits: on("permit-special-mode-bits"),
      encoding: value("encoding", encoding),
      useLocaltime: flag("use-localtime"),
      maxCons: value("max-cons", count),
      maxConsPerIp: value("max-cons-per-ip", count),
      maxSessionsPerUser: value("max-sessions-per-user", count),
      maxLoginAttempts: value("max-login-attempts", count),
      authFailedTimeout: value("auth-failed-timeout", seconds),
      banAfterFailures: value("ban-after-failures", count),
      banWindow: value("ban-window", seconds),
      banDuration: value("ban-duration", seconds),
      maxCommandsPerSecond: value("max-commands-per-second", count),
      readLimit: value("read-limit", rate),
      writeLimit: value("write-limit", rate),
      userReadLimit: value("user-read-limit", rate),
      userWriteLimit: value("user-write-limit", rate),
      globalReadLimit: value("global-read-limit", rate),
      globalWriteLimit: value("global-write-limit", rate),
      atomicUploads: on("atomic-uploads"),
      shutdownGrace: value("shutdown-grace", seconds),
      proxyProtocol: on("proxy-protocol"),
      proxyTrusted: value("proxy-trusted", cidrs),
      hashCommands: flag("no-hash") ? false : undefined,
      maxHashes: value("max-hashes", count),
      implicitTlsPort,
      tlsControlRequired: on("tls-control-required"),
      tlsDataRequired: on("tls-data-required"),
      requireSessionReuse: on("require-session-reuse"),
    }),
    directory: storageName(storage),
    storage,
    mounts,
    s3: { ...(endpoint ? { endpoint } : {}), ...(region ? { region } : {}), pathStyle: flag("s3-path-style") },
    user: username === undefined ? null : { name: username, password: password! },
    write: flag("write"),
    debug: flag("debug"),
    jail: unixUsers ? "descriptor" : jail,
    workers,
    tls: tls ? { certFile: resolve(certFile!), keyFile: resolve(keyFile ?? certFile!) } : null,
    users: users === undefined ? null : { file: resolve(users), watch: flag("users-watch") },
    unix: unixUsers
      ? {
        allowedUsers: allowedUsers ?? [],
        rejectedUsers: rejectedUsers ?? (allowedUsers === undefined ? ["root"] : []),
        anonymousUser: value("unix-anonymous-user", String) ?? null,
        requireValidShell: !flag("unix-no-shell-check"),
        jail: flag("unix-jail"),
      }
      : null,
  }
}

// Monitoring, logs and upload actions.

/** `HOST:PORT`, `[IPv6]:PORT`. */
const endpoint = (text: string, long: string): MetricsEndpoint => {
  const match = /^(?:\[([^\]]+)\]|([^:\[\]]+)):(\d+)$/.exec(text)
  const hostname = match?.[1] ?? match?.[2] ?? ""
  const port = Number(match?.[3])
  if (match === null || !URL.canParse(`http://${bracketed(hostname)}/`) || !(port <= 65535)) {
    fail(`argument --${long}: expected HOST:PORT with a port from 0 to 65535 (e.g. 127.0.0.1:9100), got '${text}'`)
  }
  return { hostname, port }
}

const logFormat = (text: string, long: string): LogFormat => {
  if (text !== "pyftpdlib" && text !== "json") fail(`argument --${long}: expected pyftpdlib or json, got '${text}'`)
  return text as LogFormat
}

const nonEmpty = (text: string, long: string): string => {
  if (text.trim() === "") fail(`argument --${long}: must not be empty`)
  return text
}

const file = (text: string, long: string): string => resolve(nonEmpty(text, long))

const httpUrl = (text: string, long: string): string => {
  if (!/^https?:$/.test(URL.parse(text)?.protocol ?? "")) {
    fail(`argument --${long}: expected an http or https URL, got '${text}'`)
  }
  return text
}

const atLeastOne = (text: string, long: string): number => integer(text, long, 1, Infinity)

const positiveSeconds = (text: string, long: string): number => {
  const value = /^\d+(\.\d+)?$/.test(text) ? Number(text) : 0
  if (!(value > 0)) fail(`argument ${flagName(long)}: expected a number of seconds > 0, got '${text}'`)
  return value
}

const ACTION_LIMITS = ["action-concurrency", "action-queue", "action-timeout"]

/** The monitoring, log and upload-action flags: options for the server, and settings for the command. */
const monitoringConfig = (
  values: Values,
  controlHost: string,
  controlPort: number,
): { readonly options: ServerOptions; readonly config: Pick<CliConfig, "metrics" | "logFormat" | "logFile"> } => {
  const value = <A>(long: string, parse: (text: string, long: string) => A): A | undefined => {
    const text = values[long]
    return typeof text === "string" ? parse(text, long) : undefined
  }
  const metrics = value("metrics", endpoint)
  if (metrics !== undefined && metrics.port !== 0 && metrics.port === controlPort && metrics.hostname === controlHost) {
    fail(`argument --metrics: must differ from the control port (${controlPort})`)
  }
  const logFile = value("log-file", file)
  const xferlog = value("xferlog", file)
  if (xferlog !== undefined && xferlog === logFile) fail("argument --xferlog: must differ from --log-file")
  const onUpload = value("on-upload", nonEmpty)
  const webhook = value("webhook", httpUrl)
  if (onUpload === undefined && webhook === undefined) {
    const given = ACTION_LIMITS.find((long) => values[long] !== undefined)
    if (given !== undefined) fail(`argument --${given}: requires --on-upload or --webhook`)
  }
  const logFormatValue = value("log-format", logFormat)
  return {
    options: setOnly<ServerOptions>({
      xferlog,
      onUpload,
      webhook,
      actionConcurrency: value("action-concurrency", atLeastOne),
      actionQueue: value("action-queue", atLeastOne),
      actionTimeout: value("action-timeout", positiveSeconds),
    }),
    config: setOnly({ metrics, logFormat: logFormatValue, logFile }),
  }
}
