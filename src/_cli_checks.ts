/**
 * What `ftpd` checks before it binds anything: the Deno permissions its configuration needs, and
 * the certificate and key of `--tls`.
 *
 * @module
 */
import * as Data from "effect/Data"
import { DEFAULTS } from "./_cli_flags.ts"
import { WRITE_PERMISSIONS } from "./auth/authorizer.ts"
import { UnixAuthorizer } from "./auth/unix.ts"
import { readUserFile } from "./auth/_user_file_edit.ts"
import type { CliConfig, TlsFiles } from "./_cli_parse.ts"
import { S3_ENV, s3Host } from "./_cli_storage.ts"
import { bracketed, isIPv4 } from "./net/address.ts"
import { makeSecureContext, type TlsSettings } from "./net/tls.ts"
import { LogFile } from "./observability/log_file.ts"
import { OTEL_ENDPOINT_VARIABLES, OTEL_VARIABLES, type OtlpSettings, otlpSettings } from "./observability/tracing.ts"

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
  const storages = [{ storage: config.storage, readOnly: false }, ...config.mounts]
  // With a users file or the system's users, their homes are checked instead of -d.
  const shared = config.users === null && config.unix === null
  for (const { storage, readOnly } of storages) {
    if (storage.kind !== "local" || (!shared && storage === config.storage)) continue
    const dir = storage.path
    need(await granted({ name: "read", path: dir }), `read access to ${dir}`, `--allow-read=${dir}`)
    if (config.write && !readOnly) {
      need(await granted({ name: "write", path: dir }), `write access to ${dir}`, `--allow-write=${dir}`)
    }
  }
  // Each worker loads ftpd's modules anew, which Deno checks as reads when they are local files.
  const modules = new URL(".", import.meta.url)
  if (config.workers !== 1 && modules.protocol === "file:") {
    const source = decodeURIComponent(modules.pathname).replace(/\/$/, "")
    need(
      await granted({ name: "read", path: source }),
      `read access to ${source}, whose modules each worker of --workers loads`,
      `--allow-read=${source}`,
    )
  }
  if (config.unix !== null) {
    const ffi = await granted({ name: "ffi" })
    need(ffi, "FFI for --unix-users (the system's password check, each user's file rights)", "--allow-ffi")
    const unavailable = ffi ? UnixAuthorizer.missing() : undefined
    if (unavailable !== undefined) {
      missing.push(`ftpd: error: --unix-users needs ${unavailable}: it reads the shadow file and acts as each user`)
    }
  } else if (config.jail === "descriptor") {
    need(await granted({ name: "ffi" }), "FFI for the descriptor jail", "--allow-ffi")
  }
  const buckets = storages.flatMap(({ storage }) => storage.kind === "s3" ? [storage.bucket] : [])
  for (const host of new Set(buckets.map((bucket) => s3Host(config.s3, bucket)))) {
    need(await granted({ name: "net", host }), `net access to the S3 service at ${host}`, `--allow-net=${host}`)
  }
  if (buckets.length > 0) {
    const env = await Promise.all(S3_ENV.map((variable) => granted({ name: "env", variable })))
    need(env.every(Boolean), `env access to the S3 credentials ${S3_ENV.join(", ")}`, `--allow-env=${S3_ENV.join(",")}`)
  }
  if (config.users !== null) missing.push(...await userFileNeeds(config.users.file))
  if (config.tls !== null) {
    for (const file of new Set([config.tls.certFile, config.tls.keyFile])) {
      need(await granted({ name: "read", path: file }), `read access to ${file}`, `--allow-read=${file}`)
    }
  }
  await monitoringPermissions(config, need)
  return missing
}

/**
 * What `--users FILE` needs: reading the file, and each user's home (writing it too for users with
 * write letters). Password checks run in workers made from source text, which need no grant. A file
 * that can't be read or parsed is reported when it is loaded.
 */
const userFileNeeds = async (file: string): Promise<string[]> => {
  if (!(await granted({ name: "read", path: file }))) {
    return [`ftpd: missing permission: read access to ${file} (add --allow-read=${file})`]
  }
  const contents = await readUserFile(file).catch(() => null)
  if (contents === null) return []
  const lines: string[] = []
  const entries = [...contents.users.values(), ...(contents.anonymous === undefined ? [] : [contents.anonymous])]
  for (const entry of entries) {
    if (!(await granted({ name: "read", path: entry.home }))) {
      lines.push(
        `ftpd: missing permission: read access to ${entry.home}, home of ${entry.name} (add --allow-read=${entry.home})`,
      )
    }
    const writes = [...WRITE_PERMISSIONS].some((letter) =>
      entry.perm.includes(letter) || entry.overrides.some((o) => o.perm.includes(letter))
    )
    if (writes && !(await granted({ name: "write", path: entry.home }))) {
      lines.push(
        `ftpd: missing permission: write access to ${entry.home}, home of ${entry.name} (add --allow-write=${entry.home})`,
      )
    }
  }
  return [...new Set(lines)]
}

/**
 * Why the TLS files of `--tls` can't be used; `message` names the flag and the file.
 *
 * @example
 * ```ts
 * import { TlsFilesError } from "@ftpd/server/cli"
 * console.log(new TlsFilesError({ message: "argument --certfile: can't read cert.pem: no such file" })._tag)
 * ```
 */
export class TlsFilesError extends Data.Error<{ readonly message: string }> {
  /** Discriminator for `Effect.catchTag`. */
  readonly _tag = "TlsFilesError" as const
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
    throw new TlsFilesError({ message: `argument --${long}: can't read ${path}: ${reason}` })
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
    throw new TlsFilesError({ message: `${named}: ${(error as Error).message}` })
  }
  return { cert, key }
}

// Monitoring, logs and upload actions.

/** The grant a URL's host needs: `host:port`, with the scheme's default port filled in. */
const urlHost = (url: URL): string => `${url.hostname}:${url.port || (url.protocol === "https:" ? "443" : "80")}`

/** The grants of `--metrics`, `--log-file`, `--xferlog`, `--on-upload` and `--webhook`. */
const monitoringPermissions = async (
  config: CliConfig,
  need: (ok: boolean, what: string, flag: string) => void,
): Promise<void> => {
  if (config.metrics !== undefined) {
    const at = `${bracketed(config.metrics.hostname)}:${config.metrics.port}`
    need(await granted({ name: "net", host: at }), `net access to listen on ${at} for --metrics`, `--allow-net=${at}`)
  }
  for (const file of [config.logFile, config.options.xferlog]) {
    if (file !== undefined) {
      need(await granted({ name: "write", path: file }), `write access to ${file}`, `--allow-write=${file}`)
    }
  }
  const program = config.options.onUpload
  if (program !== undefined) {
    need(await granted({ name: "run", command: program }), `permission to run ${program}`, `--allow-run=${program}`)
  }
  if (config.options.webhook !== undefined) {
    const host = urlHost(new URL(config.options.webhook))
    need(await granted({ name: "net", host }), `net access to ${host} for --webhook`, `--allow-net=${host}`)
  }
}

/**
 * Open (creating it if need be) and close each log file of `config`, so that a file that can't be
 * written stops the command before it starts: the message names the flag, or `undefined`.
 */
export const checkLogFiles = (config: CliConfig): string | undefined => {
  const files: Array<[string, string | undefined]> = [["log-file", config.logFile], ["xferlog", config.options.xferlog]]
  for (const [long, path] of files) {
    if (path === undefined) continue
    try {
      new LogFile(path).close()
    } catch (error) {
      return `argument --${long}: ${(error as Error).message}`
    }
  }
  return undefined
}

/** What the environment says about traces: their settings (`null`: none), and the grants they lack. */
export interface TracingCheck {
  readonly settings: OtlpSettings | null
  readonly missing: ReadonlyArray<string>
}

/**
 * Read the OpenTelemetry variables this process may read (never prompting). Traces are on when
 * `OTEL_EXPORTER_OTLP_ENDPOINT` (or its `TRACES` form) is set and readable; the other variables
 * must then be readable too, and the collector reachable. Throws a `RangeError` naming a variable
 * whose value is bad.
 *
 * @example
 * ```ts
 * import { tracingFromEnvironment } from "@ftpd/server/cli"
 * const { settings, missing } = await tracingFromEnvironment()
 * console.log(settings?.url ?? "no traces", missing)
 * ```
 */
export const tracingFromEnvironment = async (): Promise<TracingCheck> => {
  const readable = new Map<string, boolean>()
  for (const variable of OTEL_VARIABLES) readable.set(variable, await granted({ name: "env", variable }))
  const get = (name: string) => (readable.get(name) ? Deno.env.get(name) : undefined)
  if (OTEL_ENDPOINT_VARIABLES.every((name) => get(name) === undefined)) return { settings: null, missing: [] }
  const missing: string[] = []
  const unreadable = OTEL_VARIABLES.filter((name) => !readable.get(name))
  if (unreadable.length > 0) {
    missing.push(
      `ftpd: missing permission: env access to ${unreadable.join(", ")} for traces (add --allow-env=OTEL_*)`,
    )
  }
  const settings = otlpSettings(get)
  if (settings !== null) {
    const host = urlHost(new URL(settings.url))
    if (!(await granted({ name: "net", host }))) {
      missing.push(`ftpd: missing permission: net access to ${host} for traces (add --allow-net=${host})`)
    }
  }
  return { settings, missing }
}
