/**
 * The tools that copy whole trees, driven by their command lines: `wget -r` (recursive download)
 * and rclone's `:ftp:` backend (`copy`, `sync`, `check`, `lsl`, with modification times kept
 * through MFMT), on a tree with UTF-8 names, spaces, empty files and directories and a 10 MiB file.
 */
import assert from "node:assert/strict"
import { installed, makeTree, manifest, randomFile, runClient, withTempDir } from "./clients.ts"
import { startServer, type TestServer } from "./helpers.ts"

const withServer = async (f: (server: TestServer) => Promise<void>) => {
  const server = await startServer()
  try {
    await f(server)
  } finally {
    await server.close()
  }
}

Deno.test({
  name: "wget -r downloads a whole tree, byte for byte, empty directories and UTF-8 names included",
  ignore: !installed("wget", "wget"),
  fn: () =>
    withServer((server) =>
      withTempDir(async (local) => {
        await makeTree(`${server.root}/tree`)
        const run = await runClient("wget", [
          ...["-q", "-r", "-l", "inf", "-nH", "--cut-dirs=1", "--restrict-file-names=nocontrol"],
          ...["-P", `${local}/down`, `ftp://user:pass@127.0.0.1:${server.port}/tree/`],
        ])
        assert.equal(run.code, 0, run.stderr)
        assert.deepEqual(await manifest(`${local}/down`), await manifest(`${server.root}/tree`))
      })
    ),
})

const rcloneReady = installed("rclone", "rclone")

/** Distinct whole-second times in the past: FTP (MFMT, MLSD) carries seconds. */
const stamp = (i: number) => new Date(Date.UTC(2001, 1, 3, 4, 5, 6) + i * 3_600_000)

/** Every file's modification time under `root`, by relative path, as rclone lsl prints it (UTC). */
const mtimes = async (root: string): Promise<Record<string, string>> => {
  const out: Record<string, string> = {}
  for (const path of Object.keys((await manifest(root)).files)) {
    out[path] = lslTime((await Deno.stat(`${root}/${path}`)).mtime!)
  }
  return out
}

const lslTime = (date: Date) => `${date.toISOString().slice(0, 19).replace("T", " ")}.000000000`

Deno.test({
  name: "rclone :ftp: copy, sync and check keep a tree byte for byte, and lsl shows the modification times kept",
  ignore: !rcloneReady,
  fn: () =>
    withServer((server) =>
      withTempDir(async (local) => {
        const source = `${local}/source`
        await makeTree(source)
        const files = Object.keys((await manifest(source)).files)
        for (const [i, path] of files.entries()) await Deno.utime(`${source}/${path}`, stamp(i), stamp(i))
        const obscured = (await runClient("rclone", ["obscure", "pass"])).stdout.trim()
        const remote = `:ftp,host=127.0.0.1,port=${server.port},user=user,pass=${obscured}:backup`
        // No configuration file of the user's is read or written, and times print in UTC.
        const env = { RCLONE_CONFIG: `${local}/no-rclone.conf`, TZ: "UTC" }
        const rclone = async (...args: string[]) => {
          const run = await runClient("rclone", args, { env })
          assert.equal(run.code, 0, `rclone ${args.join(" ")}:\n${run.stdout}${run.stderr}`)
          return run.stdout
        }

        await rclone("copy", "--create-empty-src-dirs", source, remote)
        assert.deepEqual(await manifest(`${server.root}/backup`), await manifest(source), "copy")
        assert.deepEqual(await mtimes(`${server.root}/backup`), await mtimes(source), "MFMT set every time")
        const listed = Object.fromEntries(
          (await rclone("lsl", remote)).trim().split("\n").map((line) => {
            const [, date, time, path] = /^\s*\d+ (\S+) (\S+) (.*)$/.exec(line)!
            return [path, `${date} ${time}`]
          }),
        )
        assert.deepEqual(listed, await mtimes(source), "lsl")
        await rclone("check", "--download", source, remote)

        // A changed, a new and a removed file: sync makes the copy the same again.
        await randomFile(`${source}/big file.bin`, 3_000_000)
        await Deno.writeTextFile(`${source}/sub dir/new.txt`, "new\n")
        await Deno.remove(`${source}/empty.bin`)
        await rclone("sync", source, remote)
        assert.deepEqual((await manifest(`${server.root}/backup`)).files, (await manifest(source)).files, "sync")
        await rclone("check", "--download", source, remote)

        // check compares the bytes: one changed behind rclone's back (same size, same time) is found.
        const target = `${server.root}/backup/sub dir/a b c.txt`
        const { mtime } = await Deno.stat(target)
        await Deno.writeTextFile(target, "SPACES\n")
        await Deno.utime(target, mtime!, mtime!)
        const check = await runClient("rclone", ["check", "--download", source, remote], { env })
        assert.equal(check.code, 1, check.stderr)
        assert.match(check.stderr, /1 differences found/)
      })
    ),
})
