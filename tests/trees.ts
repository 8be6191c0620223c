/**
 * The storage a test server serves, seen from the test: the local disk (a temporary directory,
 * checked with Deno's own file APIs) or a {@link MemoryFilesystem} (checked through its own
 * operations, there being no other view of it). Tests written against a {@link TestTree} run on both.
 */
import { Effect, Exit, Scope } from "effect"
import type { FtpPath } from "../src/fs/filesystem.ts"
import { makeMemoryFilesystem } from "../src/fs/memory.ts"
import type { TestServerOptions } from "./helpers.ts"

/** What a test reads and writes in the served tree; paths are relative to the users' home. */
export interface TestTree {
  /** What `startServer` needs to serve this tree (with `users` given by the test, if any). */
  readonly options: TestServerOptions
  /** A root for `startServer({ root })`, made before the server (to prepare directories in it). */
  makeRoot(): Promise<string>
  /** Remove a root made by `makeRoot`. */
  removeRoot(root: string): Promise<void>
  /** The real path of `relative` (what permission overrides name). */
  real(root: string, relative: string): string
  writeFile(root: string, relative: string, text: string): Promise<void>
  mkdir(root: string, relative: string): Promise<void>
  chmod(root: string, relative: string, mode: number): Promise<void>
  utime(root: string, relative: string, mtime: Date): Promise<void>
  readText(root: string, relative: string): Promise<string>
  exists(root: string, relative: string): Promise<boolean>
  isDirectory(root: string, relative: string): Promise<boolean>
  mode(root: string, relative: string): Promise<number>
  mtime(root: string, relative: string): Promise<Date | null>
  /** Every entry with what a command could change: kind, size, mode, mtime, content. */
  snapshot(root: string): Promise<Record<string, string>>
}

/** A fresh temporary directory on the local disk (the test server's default). */
export const diskTree = (): TestTree => ({
  options: {},
  makeRoot: async () => await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-tree-" })),
  removeRoot: (root) => Deno.remove(root, { recursive: true }),
  real: (root, relative) => `${root}/${relative}`,
  writeFile: (root, relative, text) => Deno.writeTextFile(`${root}/${relative}`, text),
  mkdir: (root, relative) => Deno.mkdir(`${root}/${relative}`, { recursive: true }),
  chmod: (root, relative, mode) => Deno.chmod(`${root}/${relative}`, mode),
  utime: (root, relative, mtime) => Deno.utime(`${root}/${relative}`, mtime, mtime),
  readText: (root, relative) => Deno.readTextFile(`${root}/${relative}`),
  exists: (root, relative) => Deno.lstat(`${root}/${relative}`).then(() => true, () => false),
  isDirectory: async (root, relative) => (await Deno.stat(`${root}/${relative}`)).isDirectory,
  mode: async (root, relative) => (await Deno.stat(`${root}/${relative}`)).mode! & 0o7777,
  mtime: async (root, relative) => (await Deno.stat(`${root}/${relative}`)).mtime,
  snapshot: async (root) => {
    const result: Record<string, string> = {}
    const walk = async (dir: string, prefix: string) => {
      for await (const entry of Deno.readDir(dir)) {
        const path = `${dir}/${entry.name}`
        const info = await Deno.lstat(path)
        const content = info.isFile ? await Deno.readTextFile(path) : ""
        result[`${prefix}${entry.name}`] = `${entry.isDirectory ? "d" : "f"} ${info.size} ${
          (info.mode ?? 0).toString(8)
        } ${info.mtime?.getTime()} ${content}`
        if (entry.isDirectory) await walk(path, `${prefix}${entry.name}/`)
      }
    }
    await walk(root, "")
    return result
  },
})

const decoder = new TextDecoder()

/** A fresh {@link MemoryFilesystem}, served with the home `memory:/`. */
export const memoryTree = (): TestTree => {
  const fs = makeMemoryFilesystem()
  const run = <A>(effect: Effect.Effect<A, unknown>) => Effect.runPromise(effect)
  const at = (root: string, relative: string): Promise<FtpPath> =>
    run(fs.resolve(root, relative === "" ? "/" : `/${relative}`))
  const scoped = async <A>(f: (scope: Scope.Closeable) => Promise<A>): Promise<A> => {
    const scope = Effect.runSync(Scope.make())
    try {
      return await f(scope)
    } finally {
      await run(Scope.close(scope, Exit.void))
    }
  }
  const readText = (root: string, relative: string) =>
    scoped(async (scope) => {
      const handle = await run(Scope.provide(scope)(fs.openRead(await at(root, relative), 0)))
      return decoder.decode(await new Response(handle.readable).arrayBuffer())
    })
  const stat = async (root: string, relative: string) => await run(fs.stat(await at(root, relative)))
  const tree: TestTree = {
    options: { filesystem: fs, root: "memory:/", localHomes: false },
    makeRoot: () => Promise.resolve("memory:/"),
    removeRoot: () => Promise.resolve(),
    real: (root, relative) => `${root}${relative}`,
    writeFile: (root, relative, text) =>
      scoped(async (scope) => {
        const file = await run(Scope.provide(scope)(fs.openWrite(await at(root, relative), { mode: "truncate" })))
        await file.write(new TextEncoder().encode(text))
        await file.complete?.()
      }),
    mkdir: async (root, relative) => {
      let path = ""
      for (const name of relative.split("/")) {
        path = path === "" ? name : `${path}/${name}`
        if (!(await tree.exists(root, path))) await run(fs.mkdir(await at(root, path)))
      }
    },
    chmod: async (root, relative, mode) => await run(fs.chmod(await at(root, relative), mode)),
    utime: async (root, relative, mtime) => await run(fs.setMtime(await at(root, relative), mtime)),
    readText,
    exists: (root, relative) => stat(root, relative).then(() => true, () => false),
    isDirectory: async (root, relative) => (await stat(root, relative)).kind === "directory",
    mode: async (root, relative) => (await stat(root, relative)).mode! & 0o7777,
    mtime: async (root, relative) => (await stat(root, relative)).mtime,
    snapshot: async (root) => {
      const result: Record<string, string> = {}
      const walk = async (relative: string) =>
        await scoped(async (scope) => {
          const listing = await run(Scope.provide(scope)(fs.list(await at(root, relative))))
          for await (const batch of listing) {
            for (const info of batch) {
              const path = relative === "" ? info.name : `${relative}/${info.name}`
              const content = info.kind === "file" ? await readText(root, path) : ""
              result[path] = `${info.kind === "directory" ? "d" : "f"} ${info.size} ${
                (info.mode ?? 0).toString(8)
              } ${info.mtime?.getTime()} ${content}`
              if (info.kind === "directory") await walk(path)
            }
          }
        })
      await walk("")
      return result
    },
  }
  return tree
}

/** The trees the storage-neutral tests run on. */
export const TREES: ReadonlyArray<{ readonly name: string; readonly make: () => TestTree }> = [
  { name: "local disk", make: diskTree },
  { name: "memory", make: memoryTree },
]
