/**
 * `S3Filesystem`: files as objects in a bucket of any S3-compatible service (AWS, MinIO, Ceph,
 * Garage, R2, ...), requests signed by `aws4fetch`.
 *
 * Paths: the filesystem serves `s3://BUCKET/PREFIX`. A user's home is a key prefix under it,
 * written as a URL inside it (`s3://BUCKET/PREFIX/alice`) or as a path relative to it (`/alice`).
 * A file is the object whose key is the home's prefix joined with the client's path; its real
 * path, which logs and hooks show and per-directory permission overrides match, is
 * `s3://BUCKET/KEY`. A directory is a common prefix (`dir/`) of keys, or a `dir/` marker object
 * (MKD makes one, RMD removes it when nothing else is under it): a directory with no marker
 * vanishes with its last file, as S3 has no directories of its own.
 *
 * - RETR streams one (ranged, after REST) GET; SIZE and MDTM come from HEAD; listings stream
 *   ListObjectsV2 pages grouped at `/`.
 * - STOR streams a multipart upload with bounded memory (`partSize` × `partsInFlight`; a file
 *   that fits in one part is one PUT), and the object appears only when the whole file has
 *   arrived; an upload that fails, is aborted or cut is aborted and leaves nothing.
 * - RNFR/RNTO of a file copies it (a multipart copy above 5 GiB) and deletes the original; of a
 *   directory, copies and deletes each object, only for directories of at most
 *   `maxDirectoryRename` objects (550 above).
 * - S3 can't append, write into an object, keep permission bits or set modification times: the
 *   filesystem declares it (`capabilities`), so APPE and REST+STOR get 550, SITE CHMOD and MFMT 502,
 *   and FEAT and MLSx leave out what does not apply.
 * - A busy or unreachable service (503 SlowDown, 500, connection refused) is retried with backoff,
 *   then fails with 451.
 *
 * @module
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { FilesystemError } from "../errors.ts"
import { basename } from "../protocol/path.ts"
import { checkVirtual } from "./_common.ts"
import { failure, type ListedObject, S3Bucket, type S3Credentials, type S3Endpoint } from "./_s3_client.ts"
import { MIN_PART_SIZE, S3Upload } from "./_s3_upload.ts"
import { byteStream, copyObject, MAX_SINGLE_COPY, renameDirectory } from "./_s3_objects.ts"
import {
  type DirectoryListing,
  type FileInfo,
  Filesystem,
  type FilesystemShape,
  type FtpPath,
  type ReadHandle,
  type WriteHandle,
} from "./filesystem.ts"

export type { S3Credentials, S3Endpoint }

/** Options of {@link S3Filesystem}: the service ({@link S3Endpoint}), the bucket, and how uploads use memory. */
export interface S3FilesystemOptions extends S3Endpoint {
  readonly bucket: string
  /** The key prefix everything is kept under (no leading or trailing `/`); default: the whole bucket. */
  readonly prefix?: string
  /** Bytes per part of a multipart upload, at least 5 MiB; default 8 MiB. */
  readonly partSize?: number
  /** Part buffers of one upload, one filling while the others are sent; default 2. */
  readonly partsInFlight?: number
  /** The most objects a directory rename copies; default 1000. */
  readonly maxDirectoryRename?: number
  /** Keys per ListObjectsV2 page; default 1000 (S3's maximum). */
  readonly listPageSize?: number
  /** The largest object copied with one CopyObject, larger ones part by part; default 5 GiB (S3's limit). */
  readonly maxSingleCopy?: number
}

const SCHEME = "s3://"

const fail = (path: FtpPath | string, reason: FilesystemError["reason"], detail?: string) =>
  new FilesystemError({ path: typeof path === "string" ? path : path.virtual, reason, detail })

/** Run a promise-returning step as an Effect; its `FilesystemError` is the failure, anything else a defect. */
const attempt = <A>(f: () => Promise<A>): Effect.Effect<A, FilesystemError> =>
  Effect.tryPromise({
    try: f,
    catch: (error) => {
      if (error instanceof FilesystemError) return error
      throw error
    },
  })

const fileInfo = (name: string, object: ListedObject): FileInfo => ({
  name,
  kind: "file",
  size: object.size,
  mtime: object.lastModified,
  mode: null,
  nlink: 1,
  uid: null,
  gid: null,
  dev: null,
  ino: null,
})

const directoryInfo = (name: string, mtime: Date | null = null): FileInfo => ({
  ...fileInfo(name, { key: "", size: 0, lastModified: mtime }),
  kind: "directory",
})

/**
 * A filesystem over `s3://bucket/prefix`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { makeS3Filesystem } from "@ftpd/server"
 * const fs = makeS3Filesystem({
 *   bucket: "uploads",
 *   endpoint: "http://127.0.0.1:9000",
 *   pathStyle: true,
 *   credentials: { accessKeyId: "minio", secretAccessKey: "minio123" },
 * })
 * console.log((await Effect.runPromise(fs.resolve("/alice", "/a.txt"))).real) // "s3://uploads/alice/a.txt"
 * ```
 */
export const makeS3Filesystem = (options: S3FilesystemOptions): FilesystemShape => {
  const bucket = new S3Bucket(options.bucket, options)
  const base = (options.prefix ?? "").replace(/^\/+|\/+$/g, "")
  const root = `${SCHEME}${options.bucket}${base === "" ? "" : `/${base}`}`
  const partSize = options.partSize ?? 8 << 20
  if (partSize < MIN_PART_SIZE) throw new RangeError(`partSize must be at least ${MIN_PART_SIZE} bytes`)
  const limits = { partSize, partsInFlight: Math.max(1, options.partsInFlight ?? 2) }
  const maxDirectoryRename = options.maxDirectoryRename ?? 1000
  const maxSingleCopy = options.maxSingleCopy ?? MAX_SINGLE_COPY
  const listPageSize = options.listPageSize ?? 1000
  /** Each resolved path's key, and its home's key (the directory a user can't leave or remove). */
  const keys = new WeakMap<FtpPath, { readonly key: string; readonly home: string }>()

  const keyOf = (path: FtpPath) => {
    const found = keys.get(path)
    if (found === undefined) throw fail(path, "Other", "Not a path of this filesystem.")
    return found
  }
  /** The prefix of the keys inside the directory `key`. */
  const inside = (key: string) => (key === "" ? "" : `${key}/`)
  const parentKey = (key: string) => key.slice(0, Math.max(0, key.lastIndexOf("/")))

  /** The home's key: a URL inside the root, or a path relative to it. */
  const homeKey = (home: string): string | undefined => {
    const relative = home.startsWith(SCHEME)
      ? home === root ? "" : home.startsWith(`${root}/`) ? home.slice(root.length) : undefined
      : home
    if (relative === undefined) return undefined
    const names = relative.split("/").filter((c) => c !== "")
    if (names.some((c) => c === "." || c === "..")) return undefined
    return [...(base === "" ? [] : [base]), ...names].join("/")
  }

  const resolve: FilesystemShape["resolve"] = (home, virtual) =>
    Effect.suspend(() => {
      const invalid = checkVirtual(virtual)
      if (invalid !== undefined) return Effect.fail(invalid)
      const homePrefix = homeKey(home)
      if (homePrefix === undefined) {
        return Effect.fail(fail(virtual, "OutsideHome", `The home ${home} is not inside ${root}.`))
      }
      const rest = virtual.slice(1)
      const key = homePrefix === "" ? rest : rest === "" ? homePrefix : `${homePrefix}/${rest}`
      const path: FtpPath = { virtual, real: `${SCHEME}${options.bucket}${key === "" ? "" : `/${key}`}` }
      keys.set(path, { key, home: homePrefix })
      return Effect.succeed(path)
    })

  /** The file at `key` (its object), a directory (a common prefix or a marker), or `undefined`. */
  const findKey = async (key: string, home: string, virtual: string): Promise<FileInfo | undefined> => {
    const name = basename(virtual) || "/"
    if (key === home) return directoryInfo(name)
    const object = await bucket.head(key, virtual)
    if (object !== undefined) return fileInfo(name, object)
    const page = await bucket.list(inside(key), virtual, { max: 1, flat: true })
    const marker = page.objects.find((o) => o.key === inside(key))
    return page.objects.length > 0 ? directoryInfo(name, marker?.lastModified) : undefined
  }
  const find = (path: FtpPath) => {
    const { key, home } = keyOf(path)
    return findKey(key, home, path.virtual)
  }

  const stat = (path: FtpPath) =>
    attempt(async () => {
      const found = await find(path)
      if (found === undefined) throw fail(path, "NotFound")
      return found
    })

  /** Fail unless the directory that holds `path` exists. */
  const parentExists = async (path: FtpPath) => {
    const { key, home } = keyOf(path)
    const parent = parentKey(key)
    if (key === home || parent.length <= home.length) return
    const found = await findKey(parent, home, path.virtual.slice(0, path.virtual.lastIndexOf("/")))
    if (found === undefined) throw fail(path, "NotFound")
    if (found.kind !== "directory") throw fail(path, "NotADirectory")
  }

  const list = (path: FtpPath) =>
    Effect.sync((): DirectoryListing => {
      const prefix = inside(keyOf(path).key)
      return (async function* () {
        let next: string | undefined
        do {
          const page = await bucket.list(prefix, path.virtual, { next, max: listPageSize })
          const batch: FileInfo[] = []
          for (const dir of page.prefixes) {
            const name = dir.slice(prefix.length, -1)
            if (name !== "") batch.push(directoryInfo(name))
          }
          for (const object of page.objects) {
            const name = object.key.slice(prefix.length)
            if (name !== "" && !name.endsWith("/")) batch.push(fileInfo(name, object))
          }
          yield batch
          next = page.next
        } while (next !== undefined)
      })()
    })

  const openRead = (path: FtpPath, offset: number) =>
    Effect.acquireRelease(
      attempt(async (): Promise<ReadHandle & { readonly cancel: () => Promise<void> }> => {
        const { key } = keyOf(path)
        const headers: Record<string, string> = offset > 0 ? { range: `bytes=${offset}-` } : {}
        const response = await bucket.send("GET", key, path.virtual, { headers })
        if (response.status === 416) {
          await response.body?.cancel()
          const object = await bucket.head(key, path.virtual)
          if (object === undefined) throw fail(path, "NotFound")
          if (offset !== object.size) throw fail(path, "InvalidOffset")
          return { size: object.size, readable: byteStream(path.virtual, null), cancel: () => Promise.resolve() }
        }
        if (!response.ok) throw await failure(response, path.virtual, `GET ${path.virtual}`)
        const range = response.headers.get("content-range")
        const length = Number(response.headers.get("content-length") ?? 0)
        const size = range === null ? length : Number(range.slice(range.lastIndexOf("/") + 1))
        const body = response.body
        return { size, readable: byteStream(path.virtual, body), cancel: () => body?.cancel() ?? Promise.resolve() }
      }),
      (handle) => Effect.promise(() => handle.cancel().catch(() => undefined)),
    )

  const openWrite: FilesystemShape["openWrite"] = (path, writeOptions) =>
    Effect.acquireRelease(
      attempt(async () => {
        const { key, home } = keyOf(path)
        if (writeOptions.mode === "append" || (writeOptions.offset ?? 0) > 0) {
          throw fail(path, "PermissionDenied", "This storage can't write into an existing file.")
        }
        if (key === home) throw fail(path, "IsADirectory")
        await parentExists(path)
        const found = await find(path)
        if (found?.kind === "directory") throw fail(path, "IsADirectory")
        if (found !== undefined && writeOptions.exclusive) throw fail(path, "AlreadyExists")
        return new S3Upload(bucket, key, path.virtual, limits)
      }),
      // Whatever ended the transfer, an upload not completed by now is given up.
      (upload) =>
        Effect.flatMap(
          Effect.promise(() => upload.abort()),
          (problem) => problem === undefined ? Effect.void : Effect.logWarning(`S3: ${problem}`),
        ),
    ).pipe(Effect.map((upload): WriteHandle => ({
      write: (chunk) => upload.write(chunk),
      written: () => upload.written,
      complete: () => upload.complete(),
    })))

  return {
    description: `S3 ${root} at ${bucket.host}`,
    capabilities: {
      append: false,
      resume: false,
      chmod: false,
      setMtime: false,
      unixFacts: false,
      partialUploads: false,
      workers: true,
    },
    resolve,
    stat,
    lstat: stat,
    list,
    openRead,
    openWrite,
    mkdir: (path) =>
      attempt(async () => {
        if (await find(path) !== undefined) throw fail(path, "AlreadyExists")
        await parentExists(path)
        await bucket.put(inside(keyOf(path).key), path.virtual, new Uint8Array(0))
      }),
    rmdir: (path) =>
      attempt(async () => {
        const { key, home } = keyOf(path)
        if (key === home) throw fail(path, "PermissionDenied", "Can't remove the home directory.")
        const found = await find(path)
        if (found === undefined) throw fail(path, "NotFound")
        if (found.kind !== "directory") throw fail(path, "NotADirectory")
        const page = await bucket.list(inside(key), path.virtual, { max: 2, flat: true })
        if (page.objects.some((o) => o.key !== inside(key))) throw fail(path, "NotEmpty")
        await bucket.delete(inside(key), path.virtual)
      }),
    remove: (path) =>
      attempt(async () => {
        const found = await find(path)
        if (found === undefined) throw fail(path, "NotFound")
        if (found.kind === "directory") throw fail(path, "IsADirectory")
        await bucket.delete(keyOf(path).key, path.virtual)
      }),
    rename: (from, to) =>
      attempt(async () => {
        const source = keyOf(from)
        const target = keyOf(to)
        if (source.key === target.key) return
        const found = await find(from)
        if (found === undefined) throw fail(from, "NotFound")
        const existing = await find(to)
        await parentExists(to)
        if (found.kind === "file") {
          if (existing?.kind === "directory") throw fail(to, "IsADirectory")
          await copyObject(bucket, source.key, target.key, found.size, to.virtual, maxSingleCopy)
          await bucket.delete(source.key, from.virtual)
          return
        }
        if (existing !== undefined) throw fail(to, "AlreadyExists")
        if (target.key.startsWith(inside(source.key))) throw fail(to, "BadName", "Can't move a directory into itself.")
        await renameDirectory(
          bucket,
          inside(source.key),
          inside(target.key),
          from.virtual,
          maxDirectoryRename,
          maxSingleCopy,
        )
      }),
    chmod: (path) => Effect.fail(fail(path, "PermissionDenied", "This storage keeps no permission bits.")),
    setMtime: (path) => Effect.fail(fail(path, "PermissionDenied", "This storage keeps no modification times.")),
  }
}

/**
 * The S3 filesystem and its layer.
 *
 * @example
 * ```ts
 * import { S3Filesystem } from "@ftpd/server"
 * const storage = S3Filesystem.layer({
 *   bucket: "uploads",
 *   region: "eu-west-1",
 *   credentials: {
 *     accessKeyId: Deno.env.get("AWS_ACCESS_KEY_ID") ?? "",
 *     secretAccessKey: Deno.env.get("AWS_SECRET_ACCESS_KEY") ?? "",
 *   },
 * })
 * ```
 */
export const S3Filesystem: {
  readonly layer: (options: S3FilesystemOptions) => Layer.Layer<Filesystem>
  readonly make: (options: S3FilesystemOptions) => FilesystemShape
} = {
  layer: (options) => Layer.sync(Filesystem, () => makeS3Filesystem(options)),
  make: makeS3Filesystem,
}
