/**
 * lftp, driven by its command line (`-e`): `mirror -R` up and `mirror` down of a tree with UTF-8
 * names, spaces, empty files and directories and a 10 MiB file, over plain FTP and over FTPS
 * (`ftp:ssl-force`); and `get -c` resuming a download cut halfway.
 */
import assert from "node:assert/strict"
import { fileHash, installed, LARGE, makeTree, manifest, randomFile, runClient, withTempDir } from "./clients.ts"
import { eventually, makeCertificate, startServer, type TestServer } from "./helpers.ts"

const ignore = !installed("lftp", "lftp")

/** lftp's settings for a test: fail at the first error, no retries, no waiting. */
const SETTINGS = [
  "set cmd:fail-exit yes",
  "set net:max-retries 1",
  "set net:timeout 10",
  "set net:reconnect-interval-base 1",
  "set ftp:passive-mode on",
]

const lftp = (server: TestServer, commands: ReadonlyArray<string>, cwd: string) =>
  runClient(
    "lftp",
    ["-u", "user,pass", "-p", String(server.port), "127.0.0.1", "-e", [...commands, "quit"].join("; ")],
    {
      cwd,
      timeoutMs: 60_000,
    },
  )

const mirrorBothWays = async (server: TestServer, local: string, settings: ReadonlyArray<string>) => {
  await makeTree(`${local}/tree`)
  const run = await lftp(server, [...SETTINGS, ...settings, "mirror -R tree up", "mirror up down"], local)
  assert.equal(run.code, 0, run.stdout + run.stderr)
  const sent = await manifest(`${local}/tree`)
  assert.deepEqual(await manifest(`${server.root}/up`), sent, "mirror -R stored every file and directory intact")
  assert.deepEqual(await manifest(`${local}/down`), sent, "mirror brought every file and directory back intact")
  assert.ok(sent.files["big file.bin"] !== undefined && sent.dirs.includes("empty dir"))
}

Deno.test({
  name: "lftp: mirror -R and mirror of a tree with UTF-8 names, spaces, empty files and a 10 MiB file",
  ignore,
  fn: async () => {
    const server = await startServer()
    try {
      await withTempDir((local) => mirrorBothWays(server, local, []))
    } finally {
      await server.close()
    }
  },
})

Deno.test({
  name: "lftp: the same mirror both ways over FTPS with ftp:ssl-force and protected data connections",
  ignore,
  fn: async () => {
    const cert = await makeCertificate()
    const server = await startServer({ tls: { cert: cert.cert, key: cert.key }, debug: true })
    try {
      await withTempDir((local) =>
        mirrorBothWays(server, local, [
          "set ftp:ssl-force true",
          "set ftp:ssl-protect-data true",
          `set ssl:ca-file ${cert.certFile}`,
        ])
      )
      const commands = server.logs.filter((line) => / <- (AUTH|PROT|USER)/.test(line)).map((l) => l.split(" <- ")[1])
      assert.deepEqual(commands.slice(0, 2), ["AUTH TLS", "USER user"], "logged in over TLS")
      assert.ok(commands.includes("PROT P"), "data connections protected")
    } finally {
      await server.close()
      await cert.remove()
    }
  },
})

Deno.test({
  name: "lftp: get -c resumes a download cut halfway and the file is byte-identical",
  ignore,
  fn: () =>
    withTempDir(async (local) => {
      // The same files served twice: slowly (1 MiB/s, so that the first download can be cut
      // halfway), and at full speed for the resume.
      const slow = await startServer({ writeLimit: 1 << 20 })
      const fast = await startServer({ root: slow.root, debug: true })
      try {
        const hash = await randomFile(`${slow.root}/big.bin`, LARGE)
        const target = `${local}/big.bin`
        const first = new Deno.Command("lftp", {
          args: [
            "-u",
            "user,pass",
            "-p",
            String(slow.port),
            "127.0.0.1",
            "-e",
            `${SETTINGS.join("; ")}; get big.bin -o ${target}; quit`,
          ],
          stdin: "null",
          stdout: "null",
          stderr: "null",
        }).spawn()
        await eventually(() => Deno.stat(target).then((s) => s.size >= 1 << 20, () => false), 10_000, "1 MiB to arrive")
        first.kill("SIGKILL")
        await first.status
        const cut = (await Deno.stat(target)).size
        assert.ok(cut > 0 && cut < LARGE, `cut at ${cut} bytes`)
        const run = await lftp(fast, [...SETTINGS, `get -c big.bin -o ${target}`], local)
        assert.equal(run.code, 0, run.stdout + run.stderr)
        assert.equal(await fileHash(target), hash)
        assert.ok(
          fast.logs.some((line) => line.endsWith(` <- REST ${cut}`)),
          `no REST ${cut}:\n${fast.logs.join("\n")}`,
        )
        assert.ok(
          fast.logs.some((line) => line.includes(`RETR /big.bin completed=1 bytes=${LARGE - cut} `)),
          "only the missing bytes were sent",
        )
      } finally {
        await fast.close()
        await slow.close()
      }
    }),
})
