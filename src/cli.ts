#!/usr/bin/env -S deno run --allow-net --allow-read=. --allow-write=.
import "./_no_async_hooks.ts"
/**
 * `ftpd`: pyftpdlib's command line (`python3 -m pyftpdlib`) under Deno's permission sandbox.
 *
 * ```sh
 * deno run --allow-net --allow-read=. --allow-write=. src/cli.ts -w -p 2121
 * ```
 *
 * Before it binds anything it checks, with `Deno.permissions.query`, that the process may listen
 * on the control and passive ports and read (and with `-w` write) the shared directory, and
 * prints one line per missing grant naming the flag that gives it. With `--tls` it also needs to
 * read the certificate and key, and to listen on `--implicit-tls-port`; a certificate or key that
 * is missing, does not parse or does not match the other stops it there too (exit 2).
 *
 * ```sh
 * deno run --allow-net --allow-read=. src/cli.ts --tls --certfile cert.pem --keyfile key.pem --tls-control-required
 * ```
 *
 * @module
 */
import * as Effect from "effect/Effect"
import { resolve } from "node:path"
import { parseArgs } from "node:util"
import { DEFAULTS, FLAGS, TLS_ONLY, USAGE } from "./_cli_flags.ts"
import { ALL_PERMISSIONS, READ_PERMISSIONS } from "./auth/authorizer.ts"
import { DummyAuthorizer } from "./auth/dummy.ts"
import { AuthorizerError } from "./errors.ts"
import { availableJail, type JailMode, LocalFilesystem } from "./fs/local.ts"
import { makeSecureContext, type TlsSettings } from "./net/tls.ts"
import { FtpLogger } from "./log.ts"
import { type ServerOptions, VERSION } from "./options.ts"
import { bracketed, isIPv4 } from "./net/address.ts"
import { runMain } from "./runtime.ts"
import { FtpServer } from "./server.ts"

/** What the command line asks for, ready to serve. */
export interface CliConfig {
  /** Server options; only what the flags set, the rest keeps the library's defaults. */
  readonly options: ServerOptions
  /** Absolute path of the shared directory (`-d`, default the current directory). */
  readonly directory: string
  /** The single user of `-u`/`-P`, or `null` for anonymous access. */
  readonly user: { readonly name: string; readonly password: string } | null
  /** `-w`: the user gets every permission (`elradfmwMT`) instead of read-only (`elr`). */
  readonly write: boolean
  /** `-D`: log every command and reply. */
  readonly debug: boolean
  /** `--jail`: how the shared directory keeps users in (see `LocalFilesystem`). */
  readonly jail: "auto" | JailMode
  /** `--tls`: the certificate and key files (absolute paths), read by {@link loadTls}; `null` without TLS. */
  readonly tls: TlsFiles | null
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

const RATE_UNITS: Readonly<Record<string, number>> = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }

/** Bytes per second: `512`, `64K`, `1.5M`, `1G` (binary units), rounded down to whole bytes. */
const rate = (text: string, long: string): number => {
  const match = /^(\d+(?:\.\d+)?)([KMG]?)$/i.exec(text)
  const value = match ? Math.floor(Number(match[1]) * RATE_UNITS[match[2].toUpperCase()]) : NaN
  if (!Number.isSafeInteger(value)) {
    fail(
      `argument ${
        flagName(long)
      }: expected bytes per second, a number with an optional K, M or G suffix, got '${text}'`,
    )
  }
  return value
}

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

type Values = Record<string, string | boolean | undefined>

const parseFlags = (argv: ReadonlyArray<string>): Values => {
  try {
    return parseArgs({
      args: joinNegativeValues(argv),
      options: Object.fromEntries(
        FLAGS.map((f) => [f.long, { type: f.metavar ? "string" : "boolean", ...(f.short ? { short: f.short } : {}) }]),
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
  for (const long of ["ban-window", "ban-duration"]) {
    if (values[long] !== undefined && values["ban-after-failures"] === undefined) {
      fail(`argument --${long}: requires --ban-after-failures`)
    }
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
  return {
    options: setOnly<ServerOptions>({
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
      implicitTlsPort,
      tlsControlRequired: on("tls-control-required"),
      tlsDataRequired: on("tls-data-required"),
      requireSessionReuse: on("require-session-reuse"),
    }),
    directory: resolve(value("directory", String) ?? "."),
    user: username === undefined ? null : { name: username, password: password! },
    write: flag("write"),
    debug: flag("debug"),
    jail: value("jail", jailMode) ?? "auto",
    tls: tls ? { certFile: resolve(certFile!), keyFile: resolve(keyFile ?? certFile!) } : null,
  }
}

/** Whether `host` is one IP address, not a wildcard (`::`, `0.0.0.0`) or a name. */
const isOneAddress = (host: string): boolean =>
  host.includes(":") ? !/^[0:]+$/.test(host) : isIPv4(host) && host !== "0.0.0.0"

const granted = async (descriptor: Deno.PermissionDescriptor): Promise<boolean> =>
  (await Deno.permissions.query(descriptor)).state === "granted"

/** A host-only grant covers every port; otherwise each port of the range must be granted. */
const passivePortsGranted = async (host: string, [from, to]: readonly [number, number]): Promise<boolean> => {
  if (await granted({ name: "net", host })) return true
  for (let port = from; port <= to; port++) {
    if (!(await granted({ name: "net", host: `${host}:${port}` }))) return false
  }
  return true
}

/**
 * The Deno permissions `config` needs and the process lacks, one line each naming the flag that
 * grants it. Queries only: never prompts. The check must come first, because a `node:net` listen
 * without permission crashes the process instead of failing.
 *
 * @example
 * ```ts
 * import { missingPermissions, parseCli } from "@ftpd/server/cli"
 * const parsed = parseCli(["-w"])
 * if (parsed.kind === "run") for (const line of await missingPermissions(parsed.config)) console.error(line)
 * ```
 */
export const missingPermissions = async (config: CliConfig): Promise<string[]> => {
  const address = config.options.host ?? DEFAULTS.host
  const host = bracketed(address)
  const port = config.options.port ?? DEFAULTS.port
  const passive = config.options.passivePorts
  const dir = config.directory
  const missing: string[] = []
  const need = (ok: boolean, what: string, flag: string) => {
    if (!ok) missing.push(`ftpd: missing permission: ${what} (add ${flag})`)
  }
  need(
    await granted({ name: "net", host: `${host}:${port}` }),
    `net access to listen on ${host}:${port}`,
    `--allow-net=${host}:${port}`,
  )
  if (!isOneAddress(address)) {
    // PASV listens on the local address the client reached (as pyftpdlib does), which a wildcard or a
    // name does not tell in advance: only an unrestricted grant covers every one.
    const what = "net access to passive ports on whichever local address a client connects to"
    need(await granted({ name: "net" }), what, "--allow-net, or give -i one IP address")
  } else if (passive !== undefined) {
    const what = `net access to passive ports ${passive[0]}-${passive[1]} on ${host}`
    need(await passivePortsGranted(host, passive), what, `--allow-net=${host}`)
  } else if (port !== 0) {
    // A passive listener gets its port from the system, which Deno checks as port 0.
    const what = `net access to passive ports chosen by the system on ${host}`
    need(await granted({ name: "net", host: `${host}:0` }), what, `--allow-net=${host}:0`)
  }
  const implicitPort = config.options.implicitTlsPort
  if (implicitPort !== undefined) {
    need(
      await granted({ name: "net", host: `${host}:${implicitPort}` }),
      `net access to listen on ${host}:${implicitPort} for implicit TLS`,
      `--allow-net=${host}:${implicitPort}`,
    )
  }
  need(await granted({ name: "read", path: dir }), `read access to ${dir}`, `--allow-read=${dir}`)
  if (config.jail === "descriptor") {
    need(await granted({ name: "ffi" }), "FFI for the descriptor jail", "--allow-ffi")
  }
  if (config.write) need(await granted({ name: "write", path: dir }), `write access to ${dir}`, `--allow-write=${dir}`)
  if (config.tls !== null) {
    for (const file of new Set([config.tls.certFile, config.tls.keyFile])) {
      need(await granted({ name: "read", path: file }), `read access to ${file}`, `--allow-read=${file}`)
    }
  }
  return missing
}

/** Why the TLS files of `--tls` can't be used; `message` names the flag and the file. */
export class TlsFilesError extends Error {
  override readonly name = "TlsFilesError"
}

const readPem = async (long: "certfile" | "keyfile", path: string): Promise<string> => {
  try {
    return await Deno.readTextFile(path)
  } catch (error) {
    const reason = error instanceof Deno.errors.NotFound
      ? "no such file"
      : error instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : error instanceof Deno.errors.IsADirectory
      ? "is a directory"
      : String((error as Error).message ?? error)
    throw new TlsFilesError(`argument --${long}: can't read ${path}: ${reason}`)
  }
}

/**
 * Read the certificate and key of `--tls` and check that they parse and belong together, so that
 * a bad pair stops the command at startup rather than failing every AUTH TLS. Throws a
 * {@link TlsFilesError} naming the flag and the file.
 *
 * @example
 * ```ts
 * import { loadTls, parseCli } from "@ftpd/server/cli"
 * const parsed = parseCli(["--tls", "--certfile", "/etc/ssl/ftpd.pem"])
 * if (parsed.kind === "run" && parsed.config.tls) console.log((await loadTls(parsed.config.tls)).cert.length)
 * ```
 */
export const loadTls = async (files: TlsFiles): Promise<TlsSettings> => {
  const cert = await readPem("certfile", files.certFile)
  const key = files.keyFile === files.certFile ? cert : await readPem("keyfile", files.keyFile)
  try {
    makeSecureContext({ cert, key })
  } catch (error) {
    const named = files.keyFile === files.certFile
      ? `--certfile ${files.certFile} (which must hold the key too, since --keyfile is not given)`
      : `--certfile ${files.certFile} and --keyfile ${files.keyFile}`
    throw new TlsFilesError(`${named}: ${(error as Error).message}`)
  }
  return { cert, key }
}

const usageError = (message: string): never => {
  console.error(`ftpd: error: ${message}`)
  console.error("Try 'ftpd --help'.")
  return Deno.exit(2)
}

const serve = (config: CliConfig, authorizer: DummyAuthorizer) =>
  FtpServer.serve(config.options).pipe(
    Effect.provide([authorizer.toLayer(), LocalFilesystem.layerWith({ jail: config.jail })]),
    // Outermost, so that the authorizer's warnings, logged while its layer is built, use it too.
    Effect.provide(FtpLogger.layer({ debug: config.debug })),
  )

const main = async (argv: ReadonlyArray<string>): Promise<void> => {
  const parsed = parseCli(argv)
  if (parsed.kind === "error") return usageError(parsed.message)
  if (parsed.kind !== "run") return console.log(parsed.text)
  const { config } = parsed
  const missing = await missingPermissions(config)
  if (missing.length > 0) {
    for (const line of missing) console.error(line)
    return Deno.exit(2)
  }
  if (config.jail === "descriptor" && availableJail() !== "descriptor") {
    return usageError(`argument --jail: the descriptor jail needs Linux on x86_64 or aarch64 with glibc or musl`)
  }
  let tls: TlsSettings | undefined
  try {
    tls = config.tls === null ? undefined : await loadTls(config.tls)
  } catch (error) {
    if (!(error instanceof TlsFilesError)) throw error
    // Not a usage mistake: the files are wrong, so no "Try 'ftpd --help'" hint.
    console.error(`ftpd: error: ${error.message}`)
    return Deno.exit(2)
  }
  const perm = config.write ? ALL_PERMISSIONS : READ_PERMISSIONS
  let authorizer: DummyAuthorizer
  try {
    authorizer = config.user === null
      ? new DummyAuthorizer().addAnonymous(config.directory, { perm })
      : new DummyAuthorizer().addUser(config.user.name, config.user.password, config.directory, { perm })
  } catch (error) {
    // The directory is the only thing here a user can get wrong: "no such directory: '/srv/ftp'".
    if (error instanceof AuthorizerError) return usageError(`argument -d/--directory: ${error.message}`)
    throw error
  }
  runMain(serve({ ...config, options: { ...config.options, tls } }, authorizer))
}

if (import.meta.main) await main(Deno.args)
