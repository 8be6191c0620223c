/**
 * What `ftpd` serves: `-d` (a directory, `memory:` or `s3://BUCKET[/PREFIX]`) and the `--mount`s
 * beside it, parsed from their flags, the Deno permissions they need, and the filesystem they make.
 *
 * @module
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { resolve } from "node:path"
import type { FilesystemShape } from "./fs/filesystem.ts"
import { type JailMode, makeLocalFilesystem } from "./fs/local.ts"
import { makeMemoryFilesystem } from "./fs/memory.ts"
import { makeMountFilesystem } from "./fs/mounts.ts"
import type { S3Credentials } from "./fs/s3.ts"
import { endpointUrl } from "./fs/_s3_client.ts"

/** One storage: a local directory, a fresh in-memory tree, or a bucket (and key prefix). */
export type StorageSpec =
  | { readonly kind: "local"; readonly path: string }
  | { readonly kind: "memory" }
  | { readonly kind: "s3"; readonly bucket: string; readonly prefix: string }

/** `--mount AT=SPEC[:ro]`. */
export interface MountSpec {
  readonly at: string
  readonly storage: StorageSpec
  readonly readOnly: boolean
}

/** `--s3-endpoint`, `--s3-region`, `--s3-path-style`: how every `s3://` storage is reached. */
export interface S3Settings {
  readonly endpoint?: string
  readonly region?: string
  readonly pathStyle: boolean
}

/** The environment variables S3 credentials are read from. */
export const S3_ENV = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] as const

const BUCKET = /^[a-z0-9][a-z0-9.\-_]{1,61}[a-z0-9]$/

/**
 * `memory:`, `s3://BUCKET[/PREFIX]` or a local path (made absolute), or the reason it is none of
 * them.
 */
export const parseStorage = (text: string): StorageSpec | string => {
  if (text === "memory:" || text === "memory:/") return { kind: "memory" }
  if (text.startsWith("s3://")) {
    const [bucket, ...rest] = text.slice("s3://".length).split("/")
    if (!BUCKET.test(bucket)) {
      return `expected s3://BUCKET[/PREFIX] with a bucket name of 3 to 63 lowercase letters, digits, '.', '-', got '${text}'`
    }
    const names = rest.filter((name) => name !== "")
    if (names.some((name) => name === "." || name === "..")) return `'.' and '..' are not allowed in '${text}'`
    return { kind: "s3", bucket, prefix: names.join("/") }
  }
  if (/^[a-z][a-z0-9+.-]*:/i.test(text) && !text.includes("/")) return `unknown storage '${text}'`
  if (text === "") return "expected a directory, memory: or s3://BUCKET[/PREFIX]"
  return { kind: "local", path: resolve(text) }
}

/** `AT=SPEC[:ro]`, or the reason it is not one. */
export const parseMount = (text: string): MountSpec | string => {
  const equals = text.indexOf("=")
  if (equals < 0) return `expected AT=STORAGE (e.g. /pub=/srv/pub or /inbox=s3://bucket/inbox), got '${text}'`
  const at = text.slice(0, equals).replace(/\/+$/, "")
  const readOnly = text.endsWith(":ro")
  const spec = text.slice(equals + 1, readOnly ? -":ro".length : undefined)
  if (!at.startsWith("/") || at.split("/").slice(1).some((n) => n === "" || n === "." || n === "..")) {
    return `the mount point must be an absolute path other than /, got '${text.slice(0, equals)}'`
  }
  const storage = parseStorage(spec)
  return typeof storage === "string" ? storage : { at, storage, readOnly }
}

/** The name of a storage in messages and homes: the path, `memory:/` or `s3://bucket/prefix`. */
export const storageName = (storage: StorageSpec): string =>
  storage.kind === "local"
    ? storage.path
    : storage.kind === "memory"
    ? "memory:/"
    : `s3://${storage.bucket}${storage.prefix === "" ? "" : `/${storage.prefix}`}`

/** The host an S3 storage's requests go to (virtual-hosted style puts the bucket in it). */
export const s3Host = (settings: S3Settings, bucket: string): string => {
  const url = endpointUrl(settings)
  return settings.pathStyle ? url.host : `${bucket}.${url.host}`
}

/** The credentials from the environment, or `undefined` when the key id or secret is missing. */
export const s3Credentials = (): S3Credentials | undefined => {
  const [accessKeyId, secretAccessKey, sessionToken] = S3_ENV.map((name) => Deno.env.get(name))
  if (!accessKeyId || !secretAccessKey) return undefined
  return { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) }
}

/** What the storages are made from besides their specs. */
export interface StorageContext {
  readonly jail: "auto" | JailMode
  readonly s3: S3Settings
  readonly credentials: S3Credentials | undefined
}

/**
 * The filesystem serving `storage` with `mounts` (a mount filesystem when there are any). Local
 * storages share one local filesystem; each other storage gets its own. Rejects with what the local
 * filesystem throws for a jail it can't have. The S3 client is loaded only for `s3://` storage: a
 * server of the local disk does not pay for its modules.
 */
export const makeStorage = async (
  storage: StorageSpec,
  mounts: ReadonlyArray<MountSpec>,
  context: StorageContext,
): Promise<FilesystemShape> => {
  let local: FilesystemShape | undefined
  const s3 = [storage, ...mounts.map((mount) => mount.storage)].some((spec) => spec.kind === "s3")
    ? await import("./fs/s3.ts")
    : undefined
  const make = (spec: StorageSpec): FilesystemShape => {
    switch (spec.kind) {
      case "local":
        return local ??= makeLocalFilesystem({ jail: context.jail })
      case "memory":
        return makeMemoryFilesystem()
      case "s3":
        return s3!.makeS3Filesystem({
          bucket: spec.bucket,
          prefix: spec.prefix,
          endpoint: context.s3.endpoint,
          region: context.s3.region,
          pathStyle: context.s3.pathStyle,
          credentials: context.credentials!,
        })
    }
  }
  const base = make(storage)
  if (mounts.length === 0) return base
  return makeMountFilesystem({
    base,
    mounts: mounts.map((mount) => ({
      at: mount.at,
      filesystem: make(mount.storage),
      root: storageName(mount.storage),
      readOnly: mount.readOnly,
    })),
  })
}

/**
 * Read the first page of a bucket's listing, so that a wrong endpoint, bucket or credentials stop
 * the command at startup rather than failing every command. The error's message, or `undefined`.
 */
export const checkS3 = async (storage: StorageSpec, context: StorageContext): Promise<string | undefined> => {
  const fs = await makeStorage(storage, [], context)
  const scope = Effect.runSync(Scope.make())
  const check = Effect.gen(function* () {
    const root = yield* fs.resolve(storageName(storage), "/")
    const listing = yield* Scope.provide(scope)(fs.list(root))
    return yield* Effect.tryPromise({
      try: async () => {
        for await (const _ of listing) break
      },
      catch: (error) => error as Error,
    })
  })
  const exit = await Effect.runPromiseExit(check)
  await Effect.runPromise(Scope.close(scope, Exit.void))
  if (Exit.isSuccess(exit)) return undefined
  const error = Cause.squash(exit.cause)
  return error instanceof Error ? error.message : String(error)
}
