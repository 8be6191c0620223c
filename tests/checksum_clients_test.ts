/**
 * Checksums through real clients over TCP, compared with coreutils' sums of the same files:
 * lftp's `quote` sends HASH, OPTS HASH and the X commands as a user would; rclone's `md5sum` and
 * `sha1sum` run against the `:ftp:` backend. A missing client skips its test with a message
 * naming the Debian package.
 */
import assert from "node:assert/strict"
import { randomBytes, startServer, type TestServer } from "./helpers.ts"

const decoder = new TextDecoder()

const installed = (tool: string): boolean => {
  try {
    return new Deno.Command("sh", { args: ["-c", `command -v ${tool}`], stdout: "null" }).outputSync().success
  } catch {
    return false
  }
}

/** The output of `tool args` (or of a shell line); throws with its stderr when it fails and `check`. */
const run = async (tool: string, args: ReadonlyArray<string>, check = true) => {
  const out = await new Deno.Command(tool, { args: [...args], stdout: "piped", stderr: "piped", stdin: "null" })
    .output()
  const result = { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) }
  if (check && out.code !== 0) throw new Error(`${tool} ${args.join(" ")}: ${result.stderr}`)
  return result
}

/** coreutils' sum of `path`, or Python's zlib CRC-32. */
const sumOf = async (algorithm: string, path: string): Promise<string> => {
  if (algorithm === "CRC32") {
    return (await run("python3", [
      "-c",
      `import zlib; print('%08x' % zlib.crc32(open(${JSON.stringify(path)}, 'rb').read()))`,
    ]))
      .stdout.trim()
  }
  const tool = { MD5: "md5sum", "SHA-1": "sha1sum", "SHA-256": "sha256sum", "SHA-512": "sha512sum" }[algorithm]!
  return (await run(tool, [path])).stdout.split(" ")[0]
}

/** A server over TCP with a few files: random bytes of several sizes, a UTF-8 name with spaces, an empty file. */
const withFiles = async (f: (server: TestServer, files: ReadonlyArray<string>) => Promise<void>) => {
  const server = await startServer()
  try {
    const files = ["big.bin", "söme dätä.bin", "empty", "sub/small.txt"]
    await Deno.mkdir(`${server.root}/sub`)
    await Deno.writeFile(`${server.root}/big.bin`, randomBytes(3 * 1024 * 1024 + 17))
    await Deno.writeFile(`${server.root}/söme dätä.bin`, randomBytes(70_001))
    await Deno.writeFile(`${server.root}/empty`, new Uint8Array(0))
    await Deno.writeTextFile(`${server.root}/sub/small.txt`, "small\n")
    await f(server, files)
  } finally {
    await server.close()
  }
}

Deno.test({
  name: "lftp's quote HASH, OPTS HASH, XCRC, XMD5, XSHA1, XSHA256 and XSHA512 give coreutils' sums",
  ignore: !installed("lftp"),
  fn: () =>
    withFiles(async (server, files) => {
      const commands: string[] = ["set cmd:fail-exit yes"]
      const expected: string[] = []
      const quoted = (file: string) => `"${file}"`
      for (const file of files) {
        const path = `${server.root}/${file}`
        const size = (await Deno.stat(path)).size
        for (const algorithm of ["SHA-256", "SHA-512", "SHA-1", "MD5", "CRC32"]) {
          commands.push(`quote OPTS HASH ${algorithm}`, `quote HASH ${quoted(file)}`)
          expected.push(`200 ${algorithm}`, `213 ${algorithm} 0-${size} ${await sumOf(algorithm, path)} ${file}`)
        }
        const legacy = [["XCRC", "CRC32"], ["XMD5", "MD5"], ["XSHA1", "SHA-1"], ["XSHA256", "SHA-256"], [
          "XSHA512",
          "SHA-512",
        ]]
        for (const [command, algorithm] of legacy) {
          commands.push(`quote ${command} ${quoted(file)}`)
          expected.push(`250 ${await sumOf(algorithm, path)}`)
        }
      }
      commands.push("bye")
      const out = await run("lftp", [
        "-u",
        "user,pass",
        "-p",
        String(server.port),
        "-e",
        commands.join("; "),
        "127.0.0.1",
      ])
      assert.deepEqual(out.stdout.trimEnd().split("\n"), expected)
    }),
})

if (!installed("lftp")) console.warn("skipped: the lftp checksum test needs lftp (Debian package lftp)")

Deno.test({
  name: "rclone md5sum and sha1sum of the :ftp: remote match md5sum and sha1sum of the files",
  ignore: !installed("rclone"),
  fn: () =>
    withFiles(async (server, files) => {
      const pass = (await run("rclone", ["obscure", "pass"])).stdout.trim()
      const remote = [":ftp:", "--ftp-host", "127.0.0.1", "--ftp-port", String(server.port), "--ftp-user", "user"]
      for (const [command, algorithm] of [["md5sum", "MD5"], ["sha1sum", "SHA-1"]] as const) {
        const expected = new Map<string, string>()
        for (const file of files) expected.set(file, await sumOf(algorithm, `${server.root}/${file}`))
        /** rclone's `<sum>  <path>` lines as a map. */
        const sums = (stdout: string) =>
          new Map(stdout.trimEnd().split("\n").map((line) => [line.slice(line.indexOf("  ") + 2), line.split(" ")[0]]))
        // --download: rclone reads every file (RETR) and sums it itself.
        const downloaded = await run("rclone", [command, "--download", ...remote, "--ftp-pass", pass])
        assert.deepEqual(sums(downloaded.stdout), expected, command)
        // Asked of the remote, rclone 1.60's FTP backend declares no hash at all (its Hashes() is
        // empty, whatever FEAT says), so it reports every file unsupported and sends no HASH. A
        // later rclone that does ask must get the same sums.
        const asked = await run("rclone", [command, ...remote, "--ftp-pass", pass], false)
        if (asked.code === 0) assert.deepEqual(sums(asked.stdout), expected, `${command} through HASH`)
        else {
          for (const file of files) assert.match(asked.stderr, new RegExp(`${file}: hash unsupported`), asked.stderr)
        }
      }
    }),
})

if (!installed("rclone")) console.warn("skipped: the rclone checksum test needs rclone (Debian package rclone)")
