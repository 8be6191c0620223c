/**
 * curl, driven by its command line: listing, download and upload in passive (EPSV) and active
 * (`--ftp-port`, EPRT) mode, `-Q` quote commands before and after a transfer, and FTPS with
 * `--ssl-reqd` (passive: curl's active-mode FTPS hangs against every server, a curl bug).
 */
import assert from "node:assert/strict"
import { fileHash, installed, LARGE, randomFile, withTempDir } from "./clients.ts"
import { curl, makeCertificate, startServer, type TestServer } from "./helpers.ts"

const ignore = !installed("curl", "curl")
const decoder = new TextDecoder()

const url = (server: TestServer, path: string, scheme = "ftp") =>
  `${scheme}://user:pass@127.0.0.1:${server.port}/${path}`

/** List, download and upload through `server` with `args` added to every curl: byte for byte. */
const roundTrip = async (server: TestServer, args: ReadonlyArray<string>) => {
  await withTempDir(async (local) => {
    const remoteHash = await randomFile(`${server.root}/remote.bin`, LARGE)
    const uploadHash = await randomFile(`${local}/upload.bin`, LARGE)
    const listing = await curl(...args, url(server, ""))
    assert.equal(listing.code, 0, listing.stderr)
    assert.match(decoder.decode(listing.stdout), / remote\.bin\r?\n/)
    const names = await curl(...args, "--list-only", url(server, ""))
    assert.ok(decoder.decode(names.stdout).split(/\r?\n/).includes("remote.bin"), "NLST")
    const download = await curl(...args, "-o", `${local}/got.bin`, url(server, "remote.bin"))
    assert.equal(download.code, 0, download.stderr)
    assert.equal(await fileHash(`${local}/got.bin`), remoteHash)
    const upload = await curl(...args, "-T", `${local}/upload.bin`, url(server, "sent.bin"))
    assert.equal(upload.code, 0, upload.stderr)
    assert.equal(await fileHash(`${server.root}/sent.bin`), uploadHash)
  })
}

const withServer = async (options: Parameters<typeof startServer>[0], f: (server: TestServer) => Promise<void>) => {
  const server = await startServer(options)
  try {
    await f(server)
  } finally {
    await server.close()
  }
}

Deno.test({
  name: "curl: list, download and upload in passive mode (EPSV), byte for byte",
  ignore,
  fn: () =>
    withServer({ debug: true }, async (server) => {
      await roundTrip(server, [])
      assert.ok(server.logs.some((line) => line.endsWith(" <- EPSV")), "passive mode was used")
    }),
})

Deno.test({
  name: "curl: list, download and upload in active mode (--ftp-port), byte for byte",
  ignore,
  fn: () =>
    withServer({ debug: true }, async (server) => {
      await roundTrip(server, ["--ftp-port", "127.0.0.1"])
      assert.ok(server.logs.some((line) => / <- EPRT \|1\|127\.0\.0\.1\|\d+\|$/.test(line)), "active mode was used")
      assert.ok(!server.logs.some((line) => line.endsWith(" <- EPSV")))
    }),
})

Deno.test({
  name:
    "curl: -Q quote commands run before the transfer (and, with a leading '-', after it, in its directory); a refused one fails curl",
  ignore,
  fn: () =>
    withServer({}, async (server) => {
      await Deno.writeTextFile(`${server.root}/a.txt`, "quoted\n")
      const listed = await curl(
        ...["-Q", "MKD quoted", "-Q", "RNFR a.txt", "-Q", "RNTO quoted/b.txt", "-Q", "-DELE b.txt"],
        "--list-only",
        url(server, "quoted/"),
      )
      assert.equal(listed.code, 0, listed.stderr)
      assert.deepEqual(decoder.decode(listed.stdout).trim().split(/\r?\n/), ["b.txt"], "listed between the commands")
      assert.deepEqual([...Deno.readDirSync(`${server.root}/quoted`)], [], "the post-transfer DELE ran")
      const refused = await curl("-Q", "DELE no-such-file", url(server, ""))
      // CURLE_QUOTE_ERROR: the server's 550 stops curl.
      assert.equal(refused.code, 21, refused.stderr)
      assert.match(refused.stderr, /550/)
      const after = await curl("--list-only", url(server, ""))
      assert.equal(after.code, 0, "the server serves on")
    }),
})

Deno.test({
  name: "curl: FTPS with --ssl-reqd (AUTH TLS, PROT P) in passive mode: list, download, upload, byte for byte",
  ignore,
  fn: async () => {
    const cert = await makeCertificate()
    try {
      await withServer(
        { tls: { cert: cert.cert, key: cert.key }, tlsControlRequired: true, debug: true },
        async (server) => {
          await roundTrip(server, ["--ssl-reqd", "--cacert", cert.certFile])
          assert.ok(server.logs.some((line) => line.endsWith(" <- PROT P")), "data connections protected")
        },
      )
    } finally {
      await cert.remove()
    }
  },
})
