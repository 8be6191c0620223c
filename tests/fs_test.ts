import assert from "node:assert/strict"
import { Effect } from "effect"
import { FilesystemError, type FilesystemErrorReason } from "../src/errors.ts"
import type { FileInfo, FilesystemShape, FtpPath } from "../src/fs/filesystem.ts"
import { type JailMode, LocalFilesystem, UnixFilesystem } from "../src/fs/local.ts"

/**
 * A temporary tree: `root/home` (the user's home, with `a.txt` = "hello world" and `dir/`) and
 * `root/outside` (with `secret.txt`), removed after `f`. Paths are canonical.
 */
const withTree = async (f: (home: string, outside: string) => Promise<void>): Promise<void> => {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-fs-" }))
  try {
    const home = `${root}/home`
    const outside = `${root}/outside`
    await Deno.mkdir(`${home}/dir`, { recursive: true })
    await Deno.mkdir(outside)
    await Deno.writeTextFile(`${home}/a.txt`, "hello world")
    await Deno.writeTextFile(`${outside}/secret.txt`, "secret")
    await f(home, outside)
  } finally {
    await Deno.remove(root, { recursive: true })
  }
}

const run = <A>(effect: Effect.Effect<A, FilesystemError>): Promise<A> => Effect.runPromise(effect)

const failure = async (effect: Effect.Effect<unknown, FilesystemError>): Promise<FilesystemErrorReason> => {
  const error = await Effect.runPromise(Effect.flip(effect))
  assert.ok(error instanceof FilesystemError)
  return error.reason
}

const readAll = async (stream: ReadableStream<Uint8Array>): Promise<string> => await new Response(stream).text()

/** Every entry of a listing, batch by batch, read while its scope is open. */
const listAll = (fs: FilesystemShape, path: FtpPath): Promise<ReadonlyArray<FileInfo>[]> =>
  run(Effect.scoped(Effect.flatMap(fs.list(path), (listing) =>
    Effect.promise(async () => {
      const batches: ReadonlyArray<FileInfo>[] = []
      for await (const batch of listing) batches.push(batch)
      return batches
    }))))

// Every test below the jail's own runs against both jails: they must behave alike.
for (const mode of ["descriptor", "path"] as const satisfies ReadonlyArray<JailMode>) {
  const local: FilesystemShape = LocalFilesystem.make({ jail: mode })
  const resolve = (home: string, virtual: string): Promise<FtpPath> => run(local.resolve(home, virtual))
  const test = (name: string, f: () => Promise<void>) => Deno.test(`${mode} jail: ${name}`, f)

  test("plain paths map to home + virtual path, missing ones included", () =>
    withTree(async (home) => {
      assert.deepEqual(await resolve(home, "/"), { virtual: "/", real: home })
      assert.deepEqual(await resolve(home, "/a.txt"), { virtual: "/a.txt", real: `${home}/a.txt` })
      assert.deepEqual(await resolve(home, "/new.txt"), { virtual: "/new.txt", real: `${home}/new.txt` })
      assert.deepEqual(await resolve(home, "/no/such/dir/f"), {
        virtual: "/no/such/dir/f",
        real: `${home}/no/such/dir/f`,
      })
    }))

  test("a symlink to a file or directory outside home is refused", () =>
    withTree(async (home, outside) => {
      await Deno.symlink(`${outside}/secret.txt`, `${home}/secret-link`)
      await Deno.symlink(outside, `${home}/out`)
      assert.equal(await failure(local.resolve(home, "/secret-link")), "OutsideHome")
      assert.equal(await failure(local.resolve(home, "/out")), "OutsideHome")
      assert.equal(await failure(local.resolve(home, "/out/secret.txt")), "OutsideHome")
      assert.equal(await failure(local.resolve(home, "/out/new.txt")), "OutsideHome", "missing file below the link")
      assert.equal(await failure(local.resolve(home, "/out/x/y/z")), "OutsideHome", "missing parents below the link")
    }))

  test("a relative symlink climbing out of home is refused", () =>
    withTree(async (home) => {
      await Deno.symlink("../outside", `${home}/dir/up`)
      assert.equal(await failure(local.resolve(home, "/dir/up/secret.txt")), "OutsideHome")
    }))

  test("a symlink inside home to inside home is allowed; the real path resolves its directories and keeps the link", () =>
    withTree(async (home) => {
      await Deno.symlink(`${home}/a.txt`, `${home}/dir/a-link`)
      await Deno.symlink("../dir", `${home}/dir/self`)
      const link = await resolve(home, "/dir/a-link")
      assert.equal(link.real, `${home}/dir/a-link`)
      assert.equal((await run(local.lstat(link))).kind, "symlink")
      assert.equal((await run(local.stat(link))).kind, "file")
      // Operations run on the path as resolved when it was checked, never on home + virtual path again.
      assert.equal((await resolve(home, "/dir/self/self/new")).real, `${home}/dir/new`)
      await run(local.remove(link))
      assert.equal(await Deno.readTextFile(`${home}/a.txt`), "hello world", "DELE removes the link, not the target")
    }))

  test("a dangling symlink is refused, even one that would point inside", () =>
    withTree(async (home) => {
      await Deno.symlink(`${home}/not-yet`, `${home}/dangling-in`)
      await Deno.symlink("/nonexistent/ftpd-test", `${home}/dangling-out`)
      assert.equal(await failure(local.resolve(home, "/dangling-in")), "OutsideHome")
      assert.equal(await failure(local.resolve(home, "/dangling-out")), "OutsideHome")
      assert.equal(await failure(local.resolve(home, "/dangling-out/below")), "OutsideHome")
    }))

  test("a home given through a symlink resolves to canonical real paths", () =>
    withTree(async (home) => {
      const linkedHome = `${home}-link`
      await Deno.symlink(home, linkedHome)
      assert.equal((await resolve(linkedHome, "/a.txt")).real, `${home}/a.txt`)
      assert.equal((await resolve(linkedHome, "/")).real, home)
    }))

  test("non-normalized virtual paths are refused outright", () =>
    withTree(async (home) => {
      assert.equal(await failure(local.resolve(home, "/../outside/secret.txt")), "OutsideHome")
      assert.equal(await failure(local.resolve(home, "/missing/../../outside")), "OutsideHome")
      assert.equal(await failure(local.resolve(home, "a.txt")), "OutsideHome")
      assert.equal(await failure(local.resolve(home, "/a\0b")), "BadName")
    }))

  test("stat reports kind, size, mode and the last path component", () =>
    withTree(async (home) => {
      await Deno.chmod(`${home}/a.txt`, 0o640)
      const info = await run(local.stat(await resolve(home, "/a.txt")))
      assert.deepEqual([info.name, info.kind, info.size, info.mode], ["a.txt", "file", 11, 0o640])
      assert.ok(info.mtime instanceof Date)
      const root = await run(local.stat(await resolve(home, "/")))
      assert.deepEqual([root.name, root.kind], ["/", "directory"])
      assert.equal(await failure(local.stat(await resolve(home, "/missing"))), "NotFound")
    }))

  test("list streams every entry in batches of at most 256, symlinks as symlinks", () =>
    withTree(async (home) => {
      for (let i = 0; i < 600; i++) await Deno.writeTextFile(`${home}/dir/f${i}`, "x".repeat(i))
      await Deno.symlink("f1", `${home}/dir/link`)
      await Deno.mkdir(`${home}/dir/sub`)
      const batches = await listAll(local, await resolve(home, "/dir"))
      assert.ok(batches.every((b) => b.length > 0 && b.length <= 256))
      const entries = new Map(batches.flat().map((e) => [e.name, e]))
      assert.equal(entries.size, 602)
      assert.equal(entries.get("f599")?.size, 599)
      assert.equal(entries.get("link")?.kind, "symlink")
      assert.equal(entries.get("sub")?.kind, "directory")
    }))

  test("list of a directory whose names take many reads gives every entry once, with the facts lstat gives", () =>
    withTree(async (home) => {
      // 1,200 names of 150-odd bytes: several hundred KiB of directory entries, read in many steps;
      // half of them UTF-8 beyond ASCII.
      const names = Array.from(
        { length: 1200 },
        (_, i) => i % 2 === 0 ? `${"n".repeat(140)}-${i}` : `${"ñ".repeat(70)}-${i}`,
      )
      for (const [i, name] of names.entries()) await Deno.writeTextFile(`${home}/dir/${name}`, "x".repeat(i % 7))
      // A size above 4 GiB and a time before 1970 need the high 32 bits of statx's fields, the time's signed.
      const big = `${home}/dir/${names[0]}`
      await Deno.truncate(big, 5 * 2 ** 30 + 7)
      await Deno.utime(big, new Date(Date.UTC(1960, 0, 1, 12, 30, 15)), new Date(Date.UTC(1960, 0, 1, 12, 30, 15)))
      const entries = (await listAll(local, await resolve(home, "/dir"))).flat()
      assert.deepEqual(entries.map((e) => e.name).filter((n) => n.includes("-")).sort(), [...names].sort())
      for (const entry of entries) {
        const expected = await Deno.lstat(`${home}/dir/${entry.name}`)
        assert.deepEqual(
          [entry.size, entry.mtime?.getTime(), entry.mode, entry.nlink, entry.uid, entry.gid, entry.ino, entry.dev],
          [
            expected.size,
            expected.mtime?.getTime(),
            expected.mode! & 0o7777,
            expected.nlink,
            expected.uid,
            expected.gid,
            expected.ino,
            expected.dev,
          ],
          entry.name,
        )
      }
      const first = entries.find((e) => e.name === names[0])!
      assert.deepEqual([first.size, first.mtime?.toISOString()], [5 * 2 ** 30 + 7, "1960-01-01T12:30:15.000Z"])
    }))

  test("list of a file fails with NotADirectory and of a missing path with NotFound", () =>
    withTree(async (home) => {
      assert.equal(await failure(Effect.scoped(local.list(await resolve(home, "/a.txt")))), "NotADirectory")
      assert.equal(await failure(Effect.scoped(local.list(await resolve(home, "/missing")))), "NotFound")
    }))

  test("an empty directory lists as no batches", () =>
    withTree(async (home) => {
      assert.deepEqual(await listAll(local, await resolve(home, "/dir")), [])
    }))

  test("openRead streams from the offset and reports the full size", () =>
    withTree(async (home) => {
      const path = await resolve(home, "/a.txt")
      const [size, text] = await run(Effect.scoped(
        Effect.flatMap(local.openRead(path, 6), (h) => Effect.promise(async () => [h.size, await readAll(h.readable)])),
      ))
      assert.deepEqual([size, text], [11, "world"])
      const whole = await run(
        Effect.scoped(Effect.flatMap(local.openRead(path, 0), (h) => Effect.promise(() => readAll(h.readable)))),
      )
      assert.equal(whole, "hello world")
    }))

  test("openRead closes an unread file when its scope closes, and refuses directories and bad offsets", () =>
    withTree(async (home) => {
      const path = await resolve(home, "/a.txt")
      await run(Effect.scoped(local.openRead(path, 0)))
      assert.equal(await failure(Effect.scoped(local.openRead(await resolve(home, "/dir"), 0))), "IsADirectory")
      const error = await Effect.runPromise(Effect.flip(Effect.scoped(local.openRead(path, 12))))
      assert.deepEqual([error.reason, error.message], ["InvalidOffset", "Invalid REST parameter."])
    }))

  test("openRead refuses a FIFO instead of blocking on it", async () => {
    if (Deno.build.os === "windows") return
    await withTree(async (home) => {
      const { code } = await new Deno.Command("mkfifo", { args: [`${home}/fifo`] }).output()
      assert.equal(code, 0)
      assert.equal(await failure(Effect.scoped(local.openRead(await resolve(home, "/fifo"), 0))), "PermissionDenied")
      const write = local.openWrite(await resolve(home, "/fifo"), { mode: "truncate" })
      assert.equal(await failure(Effect.scoped(write)), "PermissionDenied")
    })
  })

  const store = (path: FtpPath, options: Parameters<FilesystemShape["openWrite"]>[1], text: string) =>
    Effect.scoped(
      Effect.flatMap(
        local.openWrite(path, options),
        (h) => Effect.promise(() => h.write(new TextEncoder().encode(text))),
      ),
    )

  test("openWrite truncates, appends and resumes at an offset", () =>
    withTree(async (home) => {
      const path = await resolve(home, "/a.txt")
      await run(store(path, { mode: "truncate" }, "fresh"))
      assert.equal(await Deno.readTextFile(path.real), "fresh")
      await run(store(path, { mode: "append" }, "+more"))
      assert.equal(await Deno.readTextFile(path.real), "fresh+more")
      await run(store(path, { mode: "resume", offset: 5 }, "-xy"))
      assert.equal(await Deno.readTextFile(path.real), "fresh-xyre")
      const fresh = await resolve(home, "/new.txt")
      await run(store(fresh, { mode: "append" }, "created"))
      assert.equal(await Deno.readTextFile(fresh.real), "created")
    }))

  test("openWrite refuses a REST offset beyond the end and a resume of a missing file", () =>
    withTree(async (home) => {
      const error = await Effect.runPromise(
        Effect.flip(store(await resolve(home, "/a.txt"), { mode: "resume", offset: 100 }, "x")),
      )
      assert.deepEqual([error.reason, error.message], ["InvalidOffset", "Invalid REST parameter."])
      assert.equal(await Deno.readTextFile(`${home}/a.txt`), "hello world")
      const missing = await resolve(home, "/missing.txt")
      assert.equal(await failure(store(missing, { mode: "resume", offset: 3 }, "x")), "NotFound")
      assert.equal(await failure(local.stat(missing)), "NotFound", "no empty file left behind")
    }))

  test("openWrite exclusive refuses an existing file; directories are refused", () =>
    withTree(async (home) => {
      assert.equal(
        await failure(store(await resolve(home, "/a.txt"), { mode: "truncate", exclusive: true }, "x")),
        "AlreadyExists",
      )
      assert.equal(await Deno.readTextFile(`${home}/a.txt`), "hello world")
      await run(store(await resolve(home, "/unique.txt"), { mode: "truncate", exclusive: true }, "u"))
      assert.equal(await Deno.readTextFile(`${home}/unique.txt`), "u")
      assert.equal(await failure(store(await resolve(home, "/dir"), { mode: "truncate" }, "x")), "IsADirectory")
    }))

  test("openWrite truncate keeps an existing file until its first byte, and empties it on a successful close without one", () =>
    withTree(async (home) => {
      const path = await resolve(home, "/a.txt")
      const aborted = new FilesystemError({ path: "/a.txt", reason: "PermissionDenied" })
      // Opened, nothing written (an empty write is no byte), then failed: the old file stays whole.
      const failed = Effect.scoped(Effect.flatMap(
        local.openWrite(path, { mode: "truncate" }),
        (h) => Effect.andThen(Effect.promise(() => h.write(new Uint8Array(0))), Effect.fail(aborted)),
      ))
      assert.equal(await failure(failed), "PermissionDenied")
      assert.equal(await Deno.readTextFile(path.real), "hello world")
      // Opened and still open: the old file stays whole until the first byte.
      await run(Effect.scoped(Effect.flatMap(
        local.openWrite(path, { mode: "truncate" }),
        () => Effect.promise(async () => assert.equal(await Deno.readTextFile(path.real), "hello world")),
      )))
      // ...but that successful close with no byte written was an empty upload: the file is empty.
      assert.equal(await Deno.readTextFile(path.real), "")
      await Deno.writeTextFile(path.real, "hello world")
      // A shorter content leaves nothing of the old one behind, and a failure after the first byte keeps what was written.
      await run(store(path, { mode: "truncate" }, "new"))
      assert.equal(await Deno.readTextFile(path.real), "new")
      await Deno.writeTextFile(path.real, "hello world")
      const cut = Effect.scoped(Effect.flatMap(
        local.openWrite(path, { mode: "truncate" }),
        (h) => Effect.andThen(Effect.promise(() => h.write(new TextEncoder().encode("par"))), Effect.fail(aborted)),
      ))
      assert.equal(await failure(cut), "PermissionDenied")
      assert.equal(await Deno.readTextFile(path.real), "par")
    }))

  test("openWrite writes large chunks completely", () =>
    withTree(async (home) => {
      const path = await resolve(home, "/big.bin")
      const chunk = new Uint8Array(4 * 1024 * 1024).fill(7)
      await run(Effect.scoped(Effect.flatMap(
        local.openWrite(path, { mode: "truncate" }),
        (h) =>
          Effect.promise(async () => {
            await h.write(chunk)
            await h.write(chunk)
          }),
      )))
      assert.equal((await Deno.stat(path.real)).size, 8 * 1024 * 1024)
    }))

  test("mkdir, rmdir, remove, rename, chmod and setMtime act on the real path", () =>
    withTree(async (home) => {
      const made = await resolve(home, "/made")
      await run(local.mkdir(made))
      assert.equal(await failure(local.mkdir(made)), "AlreadyExists")
      assert.equal(await failure(local.mkdir(await resolve(home, "/x/y"))), "NotFound", "not recursive")
      await Deno.writeTextFile(`${made.real}/f`, "")
      assert.equal(await failure(local.rmdir(made)), "NotEmpty")
      assert.equal(await failure(local.remove(made)), "IsADirectory")
      assert.equal(await failure(local.rmdir(await resolve(home, "/a.txt"))), "NotADirectory")
      await Deno.remove(`${made.real}/f`)
      await run(local.rmdir(made))
      assert.equal(await failure(local.stat(made)), "NotFound")

      const from = await resolve(home, "/a.txt")
      const to = await resolve(home, "/dir/b.txt")
      await run(local.rename(from, to))
      assert.equal(await Deno.readTextFile(`${home}/dir/b.txt`), "hello world")
      await run(local.chmod(to, 0o600))
      assert.equal((await Deno.stat(to.real)).mode! & 0o777, 0o600)
      const mtime = new Date("2020-01-02T03:04:05Z")
      await run(local.setMtime(to, mtime))
      assert.equal((await Deno.stat(to.real)).mtime?.getTime(), mtime.getTime())
      await run(local.remove(to))
      assert.equal(await failure(local.remove(to)), "NotFound")
    }))
}

Deno.test("UnixFilesystem follows symlinks anywhere", () =>
  withTree(async (home, outside) => {
    await Deno.symlink(outside, `${home}/out`)
    const unix = UnixFilesystem.make()
    const path = await run(unix.resolve(home, "/out/secret.txt"))
    assert.equal(path.real, `${home}/out/secret.txt`)
    assert.equal((await run(unix.stat(path))).size, "secret".length)
  }))

Deno.test("a path the process was not granted is PermissionDenied, not a crash", () =>
  withTree(async (home, outside) => {
    const probe = `${home}/../probe.ts`
    await Deno.writeTextFile(
      probe,
      `import { Effect } from "effect"
    import { LocalFilesystem } from ${JSON.stringify(new URL("../src/fs/local.ts", import.meta.url).href)}
    const fs = LocalFilesystem.make()
    const path = { virtual: "/secret.txt", real: ${JSON.stringify(`${outside}/secret.txt`)} }
    const stat = await Effect.runPromise(Effect.flip(fs.stat(path)))
    const resolve = await Effect.runPromise(Effect.flip(fs.resolve(${JSON.stringify(outside)}, "/")))
    console.log(stat.reason, resolve.reason)`,
    )
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        `--config=${new URL("../deno.json", import.meta.url).pathname}`,
        `--allow-read=${home}`,
        probe,
      ],
    }).output()
    const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes).trim()
    assert.equal(code, 0, decode(stderr))
    assert.equal(decode(stdout), "PermissionDenied PermissionDenied")
  }))
