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
import { bracketed, isIPv4 } from "./net/address.ts"
import { makeSecureContext, type TlsSettings } from "./net/tls.ts"

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
  if (config.users === null && config.unix === null) {
    need(await granted({ name: "read", path: dir }), `read access to ${dir}`, `--allow-read=${dir}`)
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
  if (config.write) need(await granted({ name: "write", path: dir }), `write access to ${dir}`, `--allow-write=${dir}`)
  if (config.users !== null) missing.push(...await userFileNeeds(config.users.file))
  if (config.tls !== null) {
    for (const file of new Set([config.tls.certFile, config.tls.keyFile])) {
      need(await granted({ name: "read", path: file }), `read access to ${file}`, `--allow-read=${file}`)
    }
  }
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
