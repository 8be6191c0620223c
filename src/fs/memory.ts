/**
 * `MemoryFilesystem`: a tree of directories and files kept in memory. Nothing touches the disk,
 * which makes it the storage of tests, demos and FTP-client development (with the in-memory
 * network, a whole session runs with no socket and no disk).
 *
 * Paths: a home is a path in the tree, written `memory:/alice` (or plainly `/alice`); it is made
 * when a user first reaches it. The real path of a file, which logs and hooks show and per-directory
 * permission overrides match, is `memory:` followed by its path in the tree (`memory:/alice/a.txt`).
 *
 * Uploads are kept aside and replace the file only when the client has sent all of it: a failed,
 * aborted or cut upload changes nothing, and the size cap (`maxBytes`) counts an upload's bytes as
 * they arrive, so an upload that would exceed it fails with 552 and stores nothing.
 *
 * @module
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { FilesystemError } from "../errors.ts"
import { basename } from "../protocol/path.ts"
import { attemptSync, checkVirtual, LIST_BATCH } from "./_common.ts"
import { type Content, ContentBuilder, contentStream, EMPTY, sliceContent } from "./_content.ts"
import {
  type DirectoryListing,
  type FileInfo,
  Filesystem,
  type FilesystemShape,
  type FtpPath,
  type ReadHandle,
  type WriteHandle,
} from "./filesystem.ts"

/** Options of {@link MemoryFilesystem}. */
export interface MemoryFilesystemOptions {
  /** The most bytes all files together may hold; an upload over it fails with 552. Default: no limit. */
  readonly maxBytes?: number
}

interface FileNode {
  readonly kind: "file"
  content: Content
  mtime: Date
  mode: number
  readonly ino: number
}

interface DirectoryNode {
  readonly kind: "directory"
  readonly children: Map<string, Node>
  mtime: Date
  mode: number
  readonly ino: number
}

type Node = FileNode | DirectoryNode

const SCHEME = "memory:"

const info = (name: string, node: Node): FileInfo => ({
  name,
  kind: node.kind,
  size: node.kind === "file" ? node.content.size : 0,
  mtime: node.mtime,
  mode: node.mode,
  nlink: node.kind === "directory" ? 2 : 1,
  uid: null,
  gid: null,
  dev: 0,
  ino: node.ino,
})

/** A home as a path in the tree: `memory:/alice` or `/alice`. */
const homePath = (home: string): string | undefined => {
  const path = home.startsWith(SCHEME) ? home.slice(SCHEME.length) : home
  return checkVirtual(path) === undefined ? (path.length > 1 ? path.replace(/\/+$/, "") : path) : undefined
}

/**
 * An empty in-memory filesystem.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { makeMemoryFilesystem } from "@ftpd/server"
 * const fs = makeMemoryFilesystem({ maxBytes: 64 << 20 })
 * const dir = await Effect.runPromise(fs.resolve("memory:/", "/docs"))
 * await Effect.runPromise(fs.mkdir(dir))
 * console.log(dir.real) // "memory:/docs"
 * ```
 */
export const makeMemoryFilesystem = (options: MemoryFilesystemOptions = {}): FilesystemShape => {
  const maxBytes = options.maxBytes ?? Infinity
  let inodes = 0
  const directory = (): DirectoryNode => ({
    kind: "directory",
    children: new Map(),
    mtime: new Date(),
    mode: 0o755,
    ino: ++inodes,
  })
  const root = directory()
  /** Bytes stored in files plus bytes of uploads in progress. */
  let used = 0
  /** The tree path of each resolved path: the home joined with the virtual path. */
  const treePaths = new WeakMap<FtpPath, string>()

  const fail = (path: FtpPath, reason: FilesystemError["reason"], detail?: string) =>
    new FilesystemError({ path: path.virtual, reason, ...(detail === undefined ? {} : { detail }) })

  const components = (path: FtpPath): string[] => {
    const tree = treePaths.get(path)
    if (tree === undefined) throw fail(path, "Other", "Not a path of this filesystem.")
    return tree.split("/").filter((c) => c !== "")
  }

  /** The node at `names`, or `undefined`; a file met on the way is `NotADirectory`. */
  const find = (path: FtpPath, names: ReadonlyArray<string>): Node | undefined => {
    let node: Node = root
    for (const name of names) {
      if (node.kind !== "directory") throw fail(path, "NotADirectory")
      const next = node.children.get(name)
      if (next === undefined) return undefined
      node = next
    }
    return node
  }

  const existing = (path: FtpPath): Node => {
    const node = find(path, components(path))
    if (node === undefined) throw fail(path, "NotFound")
    return node
  }

  /** The directory that holds `path`, and the name in it. */
  const parentOf = (path: FtpPath): { readonly dir: DirectoryNode; readonly name: string } => {
    const names = components(path)
    if (names.length === 0) throw fail(path, "PermissionDenied", "Not allowed on the root directory.")
    const dir = find(path, names.slice(0, -1))
    if (dir === undefined) throw fail(path, "NotFound")
    if (dir.kind !== "directory") throw fail(path, "NotADirectory")
    return { dir, name: names[names.length - 1] }
  }

  const makeHome = (names: ReadonlyArray<string>): void => {
    let node: DirectoryNode = root
    for (const name of names) {
      const next = node.children.get(name)
      if (next?.kind === "file") return
      if (next === undefined) {
        const made = directory()
        node.children.set(name, made)
        node = made
      } else {
        node = next
      }
    }
  }

  const resolve: FilesystemShape["resolve"] = (home, virtual) =>
    Effect.suspend(() => {
      const invalid = checkVirtual(virtual)
      if (invalid !== undefined) return Effect.fail(invalid)
      const base = homePath(home)
      if (base === undefined) {
        return Effect.fail(new FilesystemError({ path: virtual, reason: "OutsideHome", detail: "Not a memory: home." }))
      }
      makeHome(base.split("/").filter((c) => c !== ""))
      const tree = base === "/" ? virtual : virtual === "/" ? base : `${base}${virtual}`
      const path: FtpPath = { virtual, real: `${SCHEME}${tree}` }
      treePaths.set(path, tree)
      return Effect.succeed(path)
    })

  const stat = (path: FtpPath) => attemptSync(() => info(basename(path.virtual) || "/", existing(path)))

  const list = (path: FtpPath) =>
    attemptSync((): DirectoryListing => {
      const node = existing(path)
      if (node.kind !== "directory") throw fail(path, "NotADirectory")
      const entries = [...node.children].map(([name, child]) => info(name, child))
      return (async function* () {
        for (let i = 0; i < entries.length; i += LIST_BATCH) yield entries.slice(i, i + LIST_BATCH)
      })()
    })

  const openRead = (path: FtpPath, offset: number) =>
    attemptSync((): ReadHandle => {
      const node = existing(path)
      if (node.kind !== "file") throw fail(path, "IsADirectory")
      if (offset > node.content.size) throw fail(path, "InvalidOffset")
      return { size: node.content.size, readable: contentStream(node.content, offset) }
    })

  const openWrite: FilesystemShape["openWrite"] = (path, options) =>
    Effect.acquireRelease(
      attemptSync(() => {
        const { dir, name } = parentOf(path)
        const old = dir.children.get(name)
        if (old !== undefined && options.exclusive) throw fail(path, "AlreadyExists")
        if (old?.kind === "directory") throw fail(path, "IsADirectory")
        const offset = options.offset ?? 0
        if (options.mode === "resume" && offset > (old?.content.size ?? 0)) throw fail(path, "InvalidOffset")
        const from = options.mode === "truncate" || old === undefined ? EMPTY : old.content
        const builder = new ContentBuilder(from, options.mode === "resume" ? offset : from.size)
        const tail = options.mode === "resume" && old !== undefined ? old.content : undefined
        return { builder, tail, reserved: 0, stored: 0 }
      }),
      (upload) =>
        Effect.sync(() => {
          used -= upload.reserved
        }),
    ).pipe(Effect.map((upload): WriteHandle => ({
      write: (chunk) => {
        if (used + chunk.length > maxBytes) {
          return Promise.reject(
            fail(path, "QuotaExceeded", `Storage allocation exceeded: the limit is ${maxBytes} bytes.`),
          )
        }
        used += chunk.length
        upload.reserved += chunk.length
        upload.builder.append(chunk)
        upload.stored += chunk.length
        return Promise.resolve()
      },
      written: () => upload.stored,
      // Thrown in the executor, a FilesystemError rejects the promise.
      complete: () =>
        new Promise<void>((resolve) => {
          const { dir, name } = parentOf(path)
          const old = dir.children.get(name)
          if (old?.kind === "directory") throw fail(path, "IsADirectory")
          if (old !== undefined && options.exclusive) throw fail(path, "AlreadyExists")
          // REST+STOR keeps what lies past the rewritten range, as writing into a file does.
          const end = (options.offset ?? 0) + upload.stored
          if (upload.tail !== undefined && upload.tail.size > end) upload.builder.append(sliceContent(upload.tail, end))
          const content = upload.builder.build()
          // The upload's bytes become the file's; the replaced content is freed.
          used += content.size - upload.reserved - (old?.content.size ?? 0)
          upload.reserved = 0
          if (old === undefined) {
            dir.children.set(name, { kind: "file", content, mtime: new Date(), mode: 0o644, ino: ++inodes })
          } else {
            old.content = content
            old.mtime = new Date()
          }
          dir.mtime = new Date()
          resolve()
        }),
    })))

  return {
    description: `memory${maxBytes === Infinity ? "" : ` (at most ${maxBytes} bytes)`}`,
    capabilities: {
      append: true,
      resume: true,
      chmod: true,
      setMtime: true,
      unixFacts: true,
      partialUploads: false,
      workers: false,
    },
    resolve,
    stat,
    lstat: stat,
    list,
    openRead,
    openWrite,
    mkdir: (path) =>
      attemptSync(() => {
        const { dir, name } = parentOf(path)
        if (dir.children.has(name)) throw fail(path, "AlreadyExists")
        dir.children.set(name, directory())
        dir.mtime = new Date()
      }),
    rmdir: (path) =>
      attemptSync(() => {
        const { dir, name } = parentOf(path)
        const node = dir.children.get(name)
        if (node === undefined) throw fail(path, "NotFound")
        if (node.kind !== "directory") throw fail(path, "NotADirectory")
        if (node.children.size > 0) throw fail(path, "NotEmpty")
        dir.children.delete(name)
        dir.mtime = new Date()
      }),
    remove: (path) =>
      attemptSync(() => {
        const { dir, name } = parentOf(path)
        const node = dir.children.get(name)
        if (node === undefined) throw fail(path, "NotFound")
        if (node.kind === "directory") throw fail(path, "IsADirectory")
        used -= node.content.size
        dir.children.delete(name)
        dir.mtime = new Date()
      }),
    rename: (from, to) =>
      attemptSync(() => {
        const source = parentOf(from)
        const node = source.dir.children.get(source.name)
        if (node === undefined) throw fail(from, "NotFound")
        const target = parentOf(to)
        const fromNames = components(from)
        const toNames = components(to)
        if (node.kind === "directory" && fromNames.every((name, i) => toNames[i] === name)) {
          throw fail(to, "BadName", "Can't move a directory into itself.")
        }
        const replaced = target.dir.children.get(target.name)
        if (replaced === node) return
        if (replaced?.kind === "directory") {
          if (node.kind !== "directory") throw fail(to, "IsADirectory")
          if (replaced.children.size > 0) throw fail(to, "NotEmpty")
        } else if (replaced !== undefined && node.kind === "directory") {
          throw fail(to, "NotADirectory")
        }
        if (replaced?.kind === "file") used -= replaced.content.size
        source.dir.children.delete(source.name)
        target.dir.children.set(target.name, node)
        source.dir.mtime = target.dir.mtime = new Date()
      }),
    chmod: (path, mode) =>
      attemptSync(() => {
        existing(path).mode = mode & 0o7777
      }),
    setMtime: (path, mtime) =>
      attemptSync(() => {
        existing(path).mtime = mtime
      }),
  }
}

/**
 * The in-memory filesystem and its layers: each layer builds a fresh, empty tree.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { DummyAuthorizer, FtpServer, MemoryFilesystem } from "@ftpd/server"
 * const users = DummyAuthorizer.layer((a) => a.addUser("user", "12345", "memory:/", { perm: "elradfmwMT" }), {
 *   localHomes: false,
 * })
 * const server = FtpServer.layer({ port: 2121 })
 * Layer.launch(server.pipe(Layer.provide([users, MemoryFilesystem.layer]))).pipe(Effect.runFork)
 * ```
 */
export const MemoryFilesystem: {
  /** A fresh tree with no size cap. */
  readonly layer: Layer.Layer<Filesystem>
  /** A fresh tree with `options` (a size cap). */
  readonly layerWith: (options: MemoryFilesystemOptions) => Layer.Layer<Filesystem>
  readonly make: (options?: MemoryFilesystemOptions) => FilesystemShape
} = {
  layer: Layer.sync(Filesystem, () => makeMemoryFilesystem()),
  layerWith: (options) => Layer.sync(Filesystem, () => makeMemoryFilesystem(options)),
  make: makeMemoryFilesystem,
}
